//! SGIP 1.2 Result / ErrorCode values (the specification's "错误代码" table) and how the
//! relay treats them, in `tongdao-link`'s [`StatusClass`] terms.
//!
//! | class | codes | relay action |
//! | --- | --- | --- |
//! | [`StatusClass::Ok`] | 0 | accepted |
//! | [`StatusClass::Throttled`] | 11 node busy, 33 SMSC queue full | slow the link down, resend |
//! | [`StatusClass::Permanent`] | 1 illegal login, 4 Login Type, 5 parameter format, 6 illegal phone number, 8 message length, 24 invalid charge number, 27 phone does not support SMS, 29 unknown user, 30 feature not provided, 31 illegal device | final failure |
//! | [`StatusClass::Temporary`] | every other code (2 repeated login, 3 too many links, 7 message id, 9 illegal sequence, 10 GNS, 21–23 routing, 25, 26, 28, 32 system failure, unlisted) | retry with back-off |
//!
//! Unknown codes default to temporary, as in the SMPP table: a bounded retry costs less
//! than a wrongly final failure.

use tongdao_link::StatusClass;

/// Success.
pub const OK: u8 = 0;
/// 非法登录: bad login name or password.
pub const ILLEGAL_LOGIN: u8 = 1;
/// 重复登录: a second Bind on one connection.
pub const REPEATED_LOGIN: u8 = 2;
/// 连接过多: too many connections from one node.
pub const TOO_MANY_LINKS: u8 = 3;
/// 登录类型错: wrong Login Type.
pub const LOGIN_TYPE: u8 = 4;
/// 参数格式错: a field is malformed.
pub const PARAMETER_FORMAT: u8 = 5;
/// 非法手机号码.
pub const ILLEGAL_NUMBER: u8 = 6;
/// 消息ID错: unknown Command ID.
pub const MESSAGE_ID: u8 = 7;
/// 信息长度错.
pub const MESSAGE_LENGTH: u8 = 8;
/// 非法序列号 (also used for commands before Bind).
pub const ILLEGAL_SEQUENCE: u8 = 9;
/// 节点忙: the SMG is shedding load.
pub const NODE_BUSY: u8 = 11;
/// 目的地址不可达.
pub const UNREACHABLE: u8 = 21;
/// 计费号码无效.
pub const INVALID_CHARGE_NUMBER: u8 = 24;
/// 不知道的用户.
pub const UNKNOWN_USER: u8 = 29;
/// 系统失败.
pub const SYSTEM_FAILURE: u8 = 32;
/// 短信中心队列满.
pub const QUEUE_FULL: u8 = 33;

/// Classifies a Result (see the module table).
pub fn classify(result: u8) -> StatusClass {
    match result {
        OK => StatusClass::Ok,
        NODE_BUSY | QUEUE_FULL => StatusClass::Throttled,
        1 | 4 | 5 | 6 | 8 | 24 | 27 | 29 | 30 | 31 => StatusClass::Permanent,
        _ => StatusClass::Temporary,
    }
}

/// The name of a Result for logs and errors: `"5 (parameter format)"`.
pub fn name(result: u8) -> String {
    let text = match result {
        0 => "ok",
        1 => "illegal login",
        2 => "repeated login",
        3 => "too many links",
        4 => "login type",
        5 => "parameter format",
        6 => "illegal phone number",
        7 => "message id",
        8 => "message length",
        9 => "illegal sequence",
        10 => "illegal GNS operation",
        11 => "node busy",
        21 => "destination unreachable",
        22 => "routing error",
        23 => "no route",
        24 => "invalid charge number",
        25 => "user cannot communicate",
        26 => "phone memory full",
        27 => "phone does not support SMS",
        28 => "phone error receiving SMS",
        29 => "unknown user",
        30 => "feature not provided",
        31 => "illegal device",
        32 => "system failure",
        33 => "SMSC queue full",
        _ => "unlisted",
    };
    format!("{result} ({text})")
}
