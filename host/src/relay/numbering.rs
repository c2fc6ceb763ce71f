//! The national numbering plan's mobile number blocks (号段) and the operator each
//! was assigned to: which operator a subscriber "is" when a bulletin is worded per
//! operator (`tongdao:partner@1.1.0`, issue 17 item 9). A number keeps the
//! operator of its block: a number ported to another operator (携号转网) cannot be
//! told from its digits, and neither can the blocks of virtual operators
//! (162, 165, 167, 170, 171), which belong to no operator here.

/// 中国移动, as the contract names it.
pub const CHINA_MOBILE: &str = "china-mobile";
/// 中国联通.
pub const CHINA_UNICOM: &str = "china-unicom";
/// 中国电信.
pub const CHINA_TELECOM: &str = "china-telecom";

/// Every operator with its three-digit number blocks.
pub const BLOCKS: &[(&str, &[&str])] = &[
    (
        CHINA_MOBILE,
        &[
            "134", "135", "136", "137", "138", "139", "147", "150", "151", "152", "157", "158",
            "159", "172", "178", "182", "183", "184", "187", "188", "195", "197", "198",
        ],
    ),
    (
        CHINA_UNICOM,
        &[
            "130", "131", "132", "145", "155", "156", "166", "175", "176", "185", "186", "196",
        ],
    ),
    (
        CHINA_TELECOM,
        &[
            "133", "149", "153", "173", "177", "180", "181", "189", "190", "191", "193", "199",
        ],
    ),
];

/// The blocks of `operator` (empty for a name not in [`BLOCKS`]).
pub fn blocks(operator: &str) -> &'static [&'static str] {
    BLOCKS
        .iter()
        .find(|(name, _)| *name == operator)
        .map_or(&[], |(_, blocks)| blocks)
}

/// The operator whose block `msisdn` (national form, 11 digits) is in, if any.
pub fn operator_of(msisdn: &str) -> Option<&'static str> {
    let block = msisdn.get(..3)?;
    BLOCKS
        .iter()
        .find(|(_, blocks)| blocks.contains(&block))
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_block_belongs_to_one_operator() {
        let mut seen = std::collections::HashSet::new();
        for (_, blocks) in BLOCKS {
            for block in *blocks {
                assert!(block.len() == 3 && block.bytes().all(|b| b.is_ascii_digit()));
                assert!(seen.insert(*block), "{block} listed twice");
            }
        }
        assert_eq!(operator_of("13800000000"), Some(CHINA_MOBILE));
        assert_eq!(operator_of("18600000000"), Some(CHINA_UNICOM));
        assert_eq!(operator_of("18900000000"), Some(CHINA_TELECOM));
        assert_eq!(operator_of("17000000000"), None);
        assert_eq!(blocks("nobody"), &[] as &[&str]);
    }
}
