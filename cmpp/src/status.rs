//! `Result` of `CMPP_SUBMIT_RESP` (CMPP 3.0 §8.4.3.2; the same codes in 2.0) and how the
//! relay treats each.
//!
//! | class | `Result` | relay action |
//! | --- | --- | --- |
//! | [`StatusClass::Ok`] | 0 | accepted |
//! | [`StatusClass::Throttled`] | 8 流量控制错 (flow control) | not accepted; slow the link down, resend (no duplicate risk) |
//! | [`StatusClass::Permanent`] | 1 bad structure, 2 bad command id, 4 bad message length, 5 bad FeeCode, 6 message too long, 7 bad Service_Id, 9 this ISMG does not serve the charged number, 10 bad Src_Id, 11 bad Msg_src, 12 bad Fee_terminal_Id, 13 bad Dest_terminal_Id | final failure: the same packet cannot succeed |
//! | [`StatusClass::Temporary`] | 3 duplicate sequence (a resend gets a new one), and every code not listed (the spec leaves "……" open) | retry with back-off until the validity ends |
//!
//! Unknown codes default to *temporary*, as for SMPP: a retry bounded by the validity
//! costs less than a wrongly final failure.

pub use tongdao_link::StatusClass;

/// `Result` 0: accepted.
pub const RESULT_OK: u32 = 0;
/// `Result` 1: bad message structure (also what we answer an undecodable request with).
pub const RESULT_BAD_STRUCTURE: u32 = 1;
/// `Result` 2: bad command id.
pub const RESULT_BAD_COMMAND: u32 = 2;
/// `Result` 8: flow control (the SP exceeded its rate).
pub const RESULT_FLOW_CONTROL: u32 = 8;
/// `Result` 13: bad `Dest_terminal_Id`.
pub const RESULT_BAD_DEST: u32 = 13;

/// `CMPP_CONNECT_RESP` `Status` 3: authentication failed (§8.4.1.2).
pub const CONNECT_AUTH_FAILED: u32 = 3;
/// `CMPP_CONNECT_RESP` `Status` 2: bad source address.
pub const CONNECT_BAD_SOURCE: u32 = 2;
/// `CMPP_CONNECT_RESP` `Status` 4: version too high.
pub const CONNECT_VERSION_TOO_HIGH: u32 = 4;

/// Classifies a `CMPP_SUBMIT_RESP` `Result` (see the module table).
pub fn classify(result: u32) -> StatusClass {
    match result {
        RESULT_OK => StatusClass::Ok,
        RESULT_FLOW_CONTROL => StatusClass::Throttled,
        1 | 2 | 4 | 5 | 6 | 7 | 9..=13 => StatusClass::Permanent,
        _ => StatusClass::Temporary,
    }
}

/// The spec's meaning of a `CMPP_SUBMIT_RESP` `Result`.
pub fn result_name(result: u32) -> &'static str {
    match result {
        0 => "ok",
        1 => "bad message structure",
        2 => "bad command id",
        3 => "duplicate sequence",
        4 => "bad message length",
        5 => "bad FeeCode",
        6 => "message too long",
        7 => "bad Service_Id",
        8 => "flow control",
        9 => "charged number not served by this ISMG",
        10 => "bad Src_Id",
        11 => "bad Msg_src",
        12 => "bad Fee_terminal_Id",
        13 => "bad Dest_terminal_Id",
        _ => "other error",
    }
}

/// The spec's meaning of a `CMPP_CONNECT_RESP` `Status`.
pub fn connect_status_name(status: u32) -> &'static str {
    match status {
        0 => "ok",
        1 => "bad message structure",
        2 => "bad source address",
        3 => "authentication failed",
        4 => "version too high",
        _ => "other error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(classify(0), StatusClass::Ok);
        assert_eq!(classify(8), StatusClass::Throttled);
        for r in [1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13] {
            assert_eq!(classify(r), StatusClass::Permanent, "{r}");
        }
        assert_eq!(classify(3), StatusClass::Temporary);
        assert_eq!(classify(14), StatusClass::Temporary);
        assert_eq!(classify(u32::MAX), StatusClass::Temporary);
    }
}
