//! What a partner declares for a service, checked and folded, and whether
//! the keyword router could ever deliver its keywords and code to it (issue 10
//! item 10): a keyword the router reads as a host command, a service code, or
//! another service's keyword would take users' money-free help or someone else's
//! subscription instead, so approval refuses it with the reason.

use serde::{Deserialize, Serialize};

use super::{FeeType, ServiceError};
use crate::commands::{self, Command};
use crate::text;

/// The terms a partner declares for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceTerms {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Words a user sends to subscribe (matched exactly after folding).
    pub keywords: Vec<String>,
    pub fee_type: FeeType,
    /// Per message for `per-message`, per month for `monthly`, 0 for `free`.
    pub price_fen: i64,
    /// Operators the service is registered with.
    pub operators: Vec<String>,
    /// Most pushes per subscriber per month (required for `monthly`).
    #[serde(default)]
    pub monthly_max_messages: Option<i64>,
    /// Digits after the platform short code: the service's own number.
    pub number_ext: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Highest prices the platform accepts (fen): 10 元 per message, 30 元 per month.
const MAX_PER_MESSAGE_FEN: i64 = 1000;
const MAX_MONTHLY_FEN: i64 = 3000;

/// Fold and check a service code: 2-12 ASCII letters or digits, not all digits (a
/// number is a `0000` menu reply) and not a host command.
pub fn normalize_code(code: &str) -> Result<String, ServiceError> {
    let folded = text::route_key(code);
    let ok = (2..=12).contains(&folded.len())
        && folded.chars().all(|c| c.is_ascii_alphanumeric())
        && !folded.chars().all(|c| c.is_ascii_digit());
    if !ok {
        return Err(invalid(
            "code",
            "2-12 letters or digits (not only digits), e.g. `XZ`",
        ));
    }
    if commands::is_host_command(&folded) {
        return Err(invalid("code", format!("`{folded}` is a platform command")));
    }
    Ok(folded)
}

/// Check and fold declared terms against the configured operators.
pub fn validate_terms(
    terms: &ServiceTerms,
    known_operators: &[String],
) -> Result<ServiceTerms, ServiceError> {
    let name = terms.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(invalid("name", "1-40 characters"));
    }
    if terms.description.chars().count() > 500 {
        return Err(invalid("description", "at most 500 characters"));
    }
    // Name and description reach phones in the platform's notices (issue 10 item 8).
    visible("name", &name)?;
    visible("description", &terms.description)?;
    if terms.keywords.is_empty() || terms.keywords.len() > 10 {
        return Err(invalid("keywords", "1-10 subscribe keywords"));
    }
    let mut keywords = Vec::new();
    for keyword in &terms.keywords {
        visible("keywords", keyword)?;
        let folded = text::route_key(keyword);
        if folded.is_empty() || folded.chars().count() > 20 || folded.contains(' ') {
            return Err(invalid(
                "keywords",
                format!("`{keyword}` must be one word of 1-20 characters"),
            ));
        }
        if folded.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(
                "keywords",
                format!("`{keyword}` is only digits, which are menu replies"),
            ));
        }
        if commands::is_host_command(&folded) {
            return Err(invalid(
                "keywords",
                format!("`{keyword}` is a platform command and cannot subscribe"),
            ));
        }
        if !keywords.contains(&folded) {
            keywords.push(folded);
        }
    }
    let price_ok = match terms.fee_type {
        FeeType::Free => terms.price_fen == 0,
        FeeType::PerMessage => (1..=MAX_PER_MESSAGE_FEN).contains(&terms.price_fen),
        FeeType::Monthly => (1..=MAX_MONTHLY_FEN).contains(&terms.price_fen),
    };
    if !price_ok {
        return Err(invalid(
            "price_fen",
            format!(
                "free services cost 0; per-message 1-{MAX_PER_MESSAGE_FEN} fen; monthly 1-{MAX_MONTHLY_FEN} fen"
            ),
        ));
    }
    match (terms.fee_type, terms.monthly_max_messages) {
        (FeeType::Monthly, None) => {
            return Err(invalid(
                "monthly_max_messages",
                "required for monthly services",
            ));
        }
        (_, Some(n)) if !(1..=1000).contains(&n) => {
            return Err(invalid("monthly_max_messages", "1-1000"));
        }
        _ => {}
    }
    if terms.operators.is_empty() {
        return Err(invalid("operators", "at least one operator"));
    }
    for operator in &terms.operators {
        if !known_operators.contains(operator) {
            return Err(invalid(
                "operators",
                format!("no operator named `{operator}`"),
            ));
        }
    }
    let ext = terms.number_ext.trim();
    if !(1..=6).contains(&ext.len()) || !ext.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid("number_ext", "1-6 digits"));
    }
    Ok(ServiceTerms {
        name,
        description: terms.description.trim().to_string(),
        keywords,
        fee_type: terms.fee_type,
        price_fen: terms.price_fen,
        operators: terms.operators.clone(),
        monthly_max_messages: terms.monthly_max_messages,
        number_ext: ext.to_string(),
    })
}

/// No control or invisible characters (issue 10 item 8): they would hide or reorder
/// what users read in the platform's texts.
fn visible(field: &'static str, value: &str) -> Result<(), ServiceError> {
    let hidden = text::invisible_chars(value, false);
    if hidden.is_empty() {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "control or invisible characters are not allowed ({})",
            text::describe_chars(&hidden)
        ),
    ))
}

/// One service as the keyword router finds it: its code and subscribe keywords
/// (both folded).
#[derive(Debug, Clone, Copy)]
pub struct Routable<'a> {
    pub code: &'a str,
    pub keywords: &'a [String],
}

fn command_name(command: &Command) -> String {
    match command {
        Command::Stop { code: None } => "a stop command".into(),
        Command::Stop { code: Some(code) } => format!("the stop command for service {code}"),
        Command::StopAll => "the command that cancels every subscription".into(),
        Command::Menu => "the subscription menu command".into(),
        Command::Help { code: None } => "a help request".into(),
        Command::Help { code: Some(code) } => format!("the help request for service {code}"),
        Command::Confirm => "a confirming reply".into(),
        Command::Choice(_) => "a menu choice".into(),
    }
}

/// Whether the router would deliver every keyword of `own` to it, and its code to
/// its help, among the live services `others`, without making any of theirs
/// unreachable. The router reads a message in this order: host commands (with
/// every live code, so `TDXZ` stops XZ), service codes (help), then keywords; so a
/// keyword equal to a command, a code or another service's keyword, and a code that
/// reads as a command, are never delivered. `Err` names the first such word and why.
pub fn check_reachable(own: Routable<'_>, others: &[Routable<'_>]) -> Result<(), String> {
    let others_codes: Vec<&str> = others.iter().map(|s| s.code).collect();
    let mut codes = others_codes.clone();
    codes.push(own.code);
    if let Some(command) = commands::parse(own.code, &codes) {
        return Err(format!(
            "the code `{}` reads as {}, so users could never reach the service's help",
            own.code,
            command_name(&command)
        ));
    }
    for other in others {
        if other.keywords.iter().any(|k| k == own.code) {
            return Err(format!(
                "the code `{}` is a subscribe keyword of service {}",
                own.code, other.code
            ));
        }
    }
    for keyword in own.keywords {
        if let Some(command) = commands::parse(keyword, &codes) {
            return Err(format!(
                "the keyword `{keyword}` reads as {}, so nobody could subscribe with it",
                command_name(&command)
            ));
        }
        if keyword == own.code {
            return Err(format!(
                "the keyword `{keyword}` is this service's code: texting it gets the service's help, never a subscription"
            ));
        }
        if let Some(other) = others.iter().find(|o| o.code == keyword) {
            return Err(format!(
                "the keyword `{keyword}` is the code of service {}: texting it gets that service's help",
                other.code
            ));
        }
        if let Some(other) = others.iter().find(|o| o.keywords.contains(keyword)) {
            return Err(format!(
                "the keyword `{keyword}` is used by service {}",
                other.code
            ));
        }
    }
    // A new code can turn another service's keyword into a glued command (`TDYB`).
    for other in others {
        for keyword in other.keywords {
            if commands::parse(keyword, &others_codes).is_none()
                && let Some(command) = commands::parse(keyword, &codes)
            {
                return Err(format!(
                    "the code `{}` would make the keyword `{keyword}` of service {} read as {}",
                    own.code,
                    other.code,
                    command_name(&command)
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(code: &str, keywords: &[&str], others: &[(&str, &[&str])]) -> Result<(), String> {
        let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        let others: Vec<(String, Vec<String>)> = others
            .iter()
            .map(|(c, ks)| (c.to_string(), ks.iter().map(|k| k.to_string()).collect()))
            .collect();
        let others: Vec<Routable<'_>> = others
            .iter()
            .map(|(code, keywords)| Routable { code, keywords })
            .collect();
        check_reachable(
            Routable {
                code,
                keywords: &keywords,
            },
            &others,
        )
    }

    /// Issue 10 item 10: every keyword the router would never deliver is refused.
    #[test]
    fn item10_unreachable_keywords_are_named() {
        assert!(
            reach("YB", &["YB"], &[])
                .unwrap_err()
                .contains("this service's code")
        );
        assert!(
            reach("YB", &["TDYB"], &[])
                .unwrap_err()
                .contains("stop command for service YB")
        );
        assert!(
            reach("YB", &["帮助YB"], &[])
                .unwrap_err()
                .contains("help request")
        );
        assert!(
            reach("YB", &["XZ"], &[("XZ", &["星座"])])
                .unwrap_err()
                .contains("code of service XZ")
        );
        assert!(
            reach("YB", &["星座"], &[("XZ", &["星座"])])
                .unwrap_err()
                .contains("used by service XZ")
        );
        assert!(
            reach("YB", &["QXXZ"], &[("XZ", &["星座"])])
                .unwrap_err()
                .contains("stop command for service XZ")
        );
        assert!(
            reach("TDXZ", &["运势"], &[("XZ", &["星座"])])
                .unwrap_err()
                .contains("code `TDXZ`")
        );
        assert!(
            reach("YB", &["运势"], &[("XZ", &["TDYB"])])
                .unwrap_err()
                .contains("would make the keyword `TDYB`")
        );
        assert!(
            reach("XZ", &["运势"], &[("DT", &["XZ"])])
                .unwrap_err()
                .contains("keyword of service DT")
        );
        assert_eq!(reach("YB", &["游戏", "TDK"], &[("XZ", &["星座"])]), Ok(()));
    }

    fn terms() -> ServiceTerms {
        ServiceTerms {
            name: "星座运势".into(),
            description: "每日星座".into(),
            keywords: vec!["ｘｚ".into(), " 星座 ".into()],
            fee_type: FeeType::Monthly,
            price_fen: 200,
            operators: vec!["mobile".into()],
            monthly_max_messages: Some(31),
            number_ext: "01".into(),
        }
    }

    #[test]
    fn terms_are_folded_and_checked() {
        let ops = vec!["mobile".to_string()];
        let t = validate_terms(&terms(), &ops).unwrap();
        assert_eq!(t.keywords, vec!["XZ", "星座"]);
        let bad = [
            ServiceTerms {
                keywords: vec!["TD".into()],
                ..terms()
            },
            ServiceTerms {
                keywords: vec!["0000".into()],
                ..terms()
            },
            ServiceTerms {
                keywords: vec!["a b".into()],
                ..terms()
            },
            ServiceTerms {
                price_fen: 0,
                ..terms()
            },
            ServiceTerms {
                monthly_max_messages: None,
                ..terms()
            },
            ServiceTerms {
                fee_type: FeeType::Free,
                ..terms()
            },
            ServiceTerms {
                operators: vec!["nope".into()],
                ..terms()
            },
            ServiceTerms {
                number_ext: "1x".into(),
                ..terms()
            },
        ];
        for t in bad {
            assert!(validate_terms(&t, &ops).is_err(), "{t:?}");
        }
        assert_eq!(normalize_code(" xz ").unwrap(), "XZ");
        assert!(normalize_code("STOP").is_err());
        assert!(normalize_code("123").is_err());
    }
}
