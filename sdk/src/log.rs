//! The module's log, which the partner reads on the platform.
//!
//! Lines over 1 KiB are cut, and the host keeps only a limited number of lines per
//! call (the rest are dropped and counted), so log what helps to understand a
//! decision, not every step. Never log what the user wrote verbatim if it may be
//! personal.
//!
//! ```no_run
//! use tongdao_sdk::log;
//!
//! log::info("bulletin built");
//! log::warn(format!("unknown sign {:?}, sending the fallback", "ophiuchus"));
//! ```

use crate::bindings::tongdao::partner::log as host;

pub use host::Level;

/// Write one line at `level`.
pub fn write(level: Level, message: impl AsRef<str>) {
    host::write(level, message.as_ref());
}

/// Write one line at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    write(Level::Debug, message);
}

/// Write one line at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    write(Level::Info, message);
}

/// Write one line at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    write(Level::Warn, message);
}

/// Write one line at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    write(Level::Error, message);
}
