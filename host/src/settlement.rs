//! Settlement: from charge events to what the partner
//! is owed and when.
//!
//! - [`statement`]: the monthly statement, computed only from stored records.
//! - [`render`]: the statement as JSON, CSV and printable HTML.
//! - [`reconcile`]: the partner's own figures, the mean rule, discrepancy cases.
//! - [`obligations`]: payments, due dates, breach notices, termination, alerts.

pub mod obligations;
pub mod reconcile;
pub mod render;
pub mod statement;
