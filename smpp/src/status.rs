//! `command_status` values and how the relay should treat them (the SMPP mapping onto
//! the protocol-neutral [`StatusClass`] of `tongdao-link`).
//!
//! | class | statuses | relay action |
//! | --- | --- | --- |
//! | [`StatusClass::Ok`] | `ESME_ROK` 0x00 | accepted |
//! | [`StatusClass::Throttled`] | `ESME_RMSGQFUL` 0x14, `ESME_RTHROTTLED` 0x58 | not accepted; slow the whole bind down, resend (no duplicate risk) |
//! | [`StatusClass::Temporary`] | `ESME_RINVBNDSTS` 0x04, `ESME_RALYBND` 0x05, `ESME_RSYSERR` 0x08, `ESME_RBINDFAIL` 0x0D, `ESME_RSUBMITFAIL` 0x45, `ESME_RX_T_APPN` 0x64, `ESME_RDELIVERYFAILURE` 0xFE, `ESME_RUNKNOWNERR` 0xFF, and every code not listed (incl. vendor 0x400–0x4FF) | not accepted; retry with back-off until the validity period ends |
//! | [`StatusClass::Permanent`] | `ESME_RINVMSGLEN` 0x01, `ESME_RINVCMDLEN` 0x02, `ESME_RINVCMDID` 0x03, `ESME_RINVPRTFLG` 0x06, `ESME_RINVREGDLVFLG` 0x07, `ESME_RINVSRCADR` 0x0A, `ESME_RINVDSTADR` 0x0B, `ESME_RINVMSGID` 0x0C, `ESME_RINVPASWD` 0x0E, `ESME_RINVSYSID` 0x0F, `ESME_RINVSERTYP` 0x15, `ESME_RINVNUMDESTS` 0x33, `ESME_RINVDLNAME` 0x34, `ESME_RINVDESTFLAG` 0x40, `ESME_RINVSUBREP` 0x42, `ESME_RINVESMCLASS` 0x43, `ESME_RCNTSUBDL` 0x44, `ESME_RINVSRCTON` 0x48, `ESME_RINVSRCNPI` 0x49, `ESME_RINVDSTTON` 0x50, `ESME_RINVDSTNPI` 0x51, `ESME_RINVSYSTYP` 0x53, `ESME_RINVREPFLAG` 0x54, `ESME_RINVNUMMSGS` 0x55, `ESME_RINVSCHED` 0x61, `ESME_RINVEXPIRY` 0x62, `ESME_RINVDFTMSGID` 0x63, `ESME_RX_P_APPN` 0x65, `ESME_RX_R_APPN` 0x66, `ESME_RINVOPTPARSTREAM` 0xC0, `ESME_ROPTPARNOTALLWD` 0xC1, `ESME_RINVPARLEN` 0xC2, `ESME_RMISSINGOPTPARAM` 0xC3, `ESME_RINVOPTPARAMVAL` 0xC4 | final failure: resending the same PDU cannot succeed |
//!
//! Unknown codes default to *temporary*: the platform promises not to lose messages, and a
//! retry bounded by the validity period costs less than a wrongly final failure.

pub use tongdao_link::StatusClass;

/// `ESME_ROK`.
pub const ESME_ROK: u32 = 0x00;
/// `ESME_RINVCMDLEN`: command length invalid.
pub const ESME_RINVCMDLEN: u32 = 0x02;
/// `ESME_RINVCMDID`: invalid command id.
pub const ESME_RINVCMDID: u32 = 0x03;
/// `ESME_RINVBNDSTS`: incorrect bind status for the command.
pub const ESME_RINVBNDSTS: u32 = 0x04;
/// `ESME_RSYSERR`: system error.
pub const ESME_RSYSERR: u32 = 0x08;
/// `ESME_RINVDSTADR`: invalid destination address.
pub const ESME_RINVDSTADR: u32 = 0x0B;
/// `ESME_RBINDFAIL`: bind failed.
pub const ESME_RBINDFAIL: u32 = 0x0D;
/// `ESME_RINVPASWD`: invalid password.
pub const ESME_RINVPASWD: u32 = 0x0E;
/// `ESME_RINVSYSID`: invalid system id.
pub const ESME_RINVSYSID: u32 = 0x0F;
/// `ESME_RMSGQFUL`: message queue full.
pub const ESME_RMSGQFUL: u32 = 0x14;
/// `ESME_RTHROTTLED`: throttling error (the ESME exceeded its allowed rate).
pub const ESME_RTHROTTLED: u32 = 0x58;
/// `ESME_RX_T_APPN`: ESME receiver temporary application error; the SMSC redelivers.
pub const ESME_RX_T_APPN: u32 = 0x64;
/// `ESME_RX_P_APPN`: ESME receiver permanent application error.
pub const ESME_RX_P_APPN: u32 = 0x65;

/// Classifies a `command_status` (see the module table).
pub fn classify(status: u32) -> StatusClass {
    match status {
        ESME_ROK => StatusClass::Ok,
        ESME_RMSGQFUL | ESME_RTHROTTLED => StatusClass::Throttled,
        0x01
        | 0x02
        | 0x03
        | 0x06
        | 0x07
        | 0x0A
        | 0x0B
        | 0x0C
        | 0x0E
        | 0x0F
        | 0x15
        | 0x33
        | 0x34
        | 0x40
        | 0x42
        | 0x43
        | 0x44
        | 0x48
        | 0x49
        | 0x50
        | 0x51
        | 0x53
        | 0x54
        | 0x55
        | 0x61
        | 0x62
        | 0x63
        | 0x65
        | 0x66
        | 0xC0..=0xC4 => StatusClass::Permanent,
        _ => StatusClass::Temporary,
    }
}

/// The SMPP name of a status (`"ESME_RTHROTTLED"`), or `"0x…"` for codes without one; for
/// failure reasons a partner can read.
pub fn status_name(status: u32) -> String {
    let name = match status {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x06 => "ESME_RINVPRTFLG",
        0x07 => "ESME_RINVREGDLVFLG",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x11 => "ESME_RCANCELFAIL",
        0x13 => "ESME_RREPLACEFAIL",
        0x14 => "ESME_RMSGQFUL",
        0x15 => "ESME_RINVSERTYP",
        0x33 => "ESME_RINVNUMDESTS",
        0x34 => "ESME_RINVDLNAME",
        0x40 => "ESME_RINVDESTFLAG",
        0x42 => "ESME_RINVSUBREP",
        0x43 => "ESME_RINVESMCLASS",
        0x44 => "ESME_RCNTSUBDL",
        0x45 => "ESME_RSUBMITFAIL",
        0x48 => "ESME_RINVSRCTON",
        0x49 => "ESME_RINVSRCNPI",
        0x50 => "ESME_RINVDSTTON",
        0x51 => "ESME_RINVDSTNPI",
        0x53 => "ESME_RINVSYSTYP",
        0x54 => "ESME_RINVREPFLAG",
        0x55 => "ESME_RINVNUMMSGS",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x63 => "ESME_RINVDFTMSGID",
        0x64 => "ESME_RX_T_APPN",
        0x65 => "ESME_RX_P_APPN",
        0x66 => "ESME_RX_R_APPN",
        0x67 => "ESME_RQUERYFAIL",
        0xC0 => "ESME_RINVOPTPARSTREAM",
        0xC1 => "ESME_ROPTPARNOTALLWD",
        0xC2 => "ESME_RINVPARLEN",
        0xC3 => "ESME_RMISSINGOPTPARAM",
        0xC4 => "ESME_RINVOPTPARAMVAL",
        0xFE => "ESME_RDELIVERYFAILURE",
        0xFF => "ESME_RUNKNOWNERR",
        other => return format!("0x{other:08X}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(classify(0), StatusClass::Ok);
        assert_eq!(classify(ESME_RTHROTTLED), StatusClass::Throttled);
        assert_eq!(classify(ESME_RMSGQFUL), StatusClass::Throttled);
        assert_eq!(classify(ESME_RSYSERR), StatusClass::Temporary);
        assert_eq!(classify(ESME_RINVDSTADR), StatusClass::Permanent);
        assert_eq!(classify(0x0000_0400), StatusClass::Temporary);
        assert_eq!(status_name(0x58), "ESME_RTHROTTLED");
        assert_eq!(status_name(0x401), "0x00000401");
    }
}
