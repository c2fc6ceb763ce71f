//! Outcome classes: how the relay treats the answer to a submit, whatever the protocol.
//! Each protocol maps its own result codes onto these (SMPP `command_status` in
//! `tongdao_smpp::status`, CMPP `Result`, SGIP `Result`).

/// How the outcome of one submit should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// Accepted by the operator.
    Ok,
    /// The operator is shedding load: back the whole bind off, then resend (no
    /// duplicate risk: it was not accepted).
    Throttled,
    /// Failed now, may succeed later: retry with back-off until the validity ends.
    Temporary,
    /// Will never succeed as sent: final failure.
    Permanent,
    /// Sent without an answer (timeout, link lost, unreadable response): the message may
    /// or may not have reached the operator. Resending may duplicate, not resending may
    /// lose; the relay's unknown-outcome rule decides.
    UnknownOutcome,
}
