//! The 64-bit `Msg_Id` (CMPP 3.0 §8.4.3.2 and §8.4.5.1; the same in 2.0).
//!
//! | bits (64 = most significant) | width | field |
//! | --- | --- | --- |
//! | 64–61 | 4 | month (1–12) |
//! | 60–56 | 5 | day (1–31) |
//! | 55–51 | 5 | hour (0–23) |
//! | 50–45 | 6 | minute (0–59) |
//! | 44–39 | 6 | second (0–59) |
//! | 38–17 | 22 | ISMG (gateway) code, e.g. 001001 for Beijing gateway 1 |
//! | 16–1 | 16 | sequence, cycling |
//!
//! The ISMG assigns it in `CMPP_SUBMIT_RESP`; the status report's `Msg_Content` carries
//! it again, which is how a report finds its MT.

use std::fmt;

/// A `Msg_Id` split into its fields. [`MsgId::from_u64`] and [`MsgId::to_u64`] are exact
/// inverses for every `u64` (fields are not range-checked: peers send zeros and junk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsgId {
    /// Month, 4 bits.
    pub month: u8,
    /// Day, 5 bits.
    pub day: u8,
    /// Hour, 5 bits.
    pub hour: u8,
    /// Minute, 6 bits.
    pub minute: u8,
    /// Second, 6 bits.
    pub second: u8,
    /// ISMG code, 22 bits (at most 4,194,303).
    pub gateway: u32,
    /// Sequence, 16 bits.
    pub sequence: u16,
}

impl MsgId {
    /// Splits a wire `Msg_Id`.
    pub fn from_u64(v: u64) -> Self {
        Self {
            month: ((v >> 60) & 0xF) as u8,
            day: ((v >> 55) & 0x1F) as u8,
            hour: ((v >> 50) & 0x1F) as u8,
            minute: ((v >> 44) & 0x3F) as u8,
            second: ((v >> 38) & 0x3F) as u8,
            gateway: ((v >> 16) & 0x3F_FFFF) as u32,
            sequence: (v & 0xFFFF) as u16,
        }
    }

    /// The wire value. Each field is masked to its width.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.month & 0xF) << 60)
            | (u64::from(self.day & 0x1F) << 55)
            | (u64::from(self.hour & 0x1F) << 50)
            | (u64::from(self.minute & 0x3F) << 44)
            | (u64::from(self.second & 0x3F) << 38)
            | (u64::from(self.gateway & 0x3F_FFFF) << 16)
            | u64::from(self.sequence)
    }

    /// A new id for `time` (China Standard Time, UTC+8, as the ISMG stamps it).
    pub fn new(time: jiff::Timestamp, gateway: u32, sequence: u16) -> Self {
        let dt = crate::time::china(time);
        Self {
            month: dt.month() as u8,
            day: dt.day() as u8,
            hour: dt.hour() as u8,
            minute: dt.minute() as u8,
            second: dt.second() as u8,
            gateway,
            sequence,
        }
    }
}

/// The decimal `u64`: the form this crate uses as the message id string of an MT, in
/// both the submit outcome and the report, so the two match.
impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec_bits() {
        // 12-31 23:59:59, gateway 001001, sequence 65535: every field at its maximum
        // (except the gateway) lands in its own bits.
        let id = MsgId {
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 59,
            gateway: 1001,
            sequence: 0xFFFF,
        };
        let v = id.to_u64();
        assert_eq!(v >> 60, 12);
        assert_eq!((v >> 55) & 0x1F, 31);
        assert_eq!((v >> 50) & 0x1F, 23);
        assert_eq!((v >> 44) & 0x3F, 59);
        assert_eq!((v >> 38) & 0x3F, 59);
        assert_eq!((v >> 16) & 0x3F_FFFF, 1001);
        assert_eq!(v & 0xFFFF, 0xFFFF);
        assert_eq!(MsgId::from_u64(v), id);
    }
}
