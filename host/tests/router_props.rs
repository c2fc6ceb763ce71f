//! Issue 10 item 4, as a property: for every service the platform would approve,
//! every instruction ("…回复X…") in every text the platform sends (and in a
//! module's welcome, where the host appends the stop instruction) is read back by
//! the keyword router as exactly the command it names, also typed as users type
//! it: lower case, full-width, with punctuation around it.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tongdao::mo::commands::{self, Command};
use tongdao::mo::notices;
use tongdao::mo::router::{ByWord, by_word};
use tongdao::services::{
    self, FeeType, LiveService, Revision, Routable, ServiceStatus, ServiceTerms,
};
use tongdao::text::{is_punctuation, route_key};

/// One generated declaration: code, keywords, fee type and price.
type Declared = (String, Vec<String>, FeeType, i64);

fn keyword() -> impl Strategy<Value = String> {
    prop_oneof![
        "[星座笑话答题天气新闻体育运势游戏]{2,3}",
        "[A-Z]{2,5}",
        // Adversarial: words that start like commands, or glue them to codes.
        "(TD|QX|退订|取消|HELP)[A-Z]{1,3}",
    ]
}

fn declared() -> impl Strategy<Value = Declared> {
    (
        "[A-Z][A-Z0-9]{1,4}",
        prop::collection::vec(keyword(), 1..3),
        prop_oneof![
            Just((FeeType::Free, 0)),
            (1i64..=1000).prop_map(|p| (FeeType::PerMessage, p)),
            (1i64..=3000).prop_map(|p| (FeeType::Monthly, p)),
        ],
    )
        .prop_map(|(code, keywords, (fee, price))| (code, keywords, fee, price))
}

/// The services approval would let live together, in order, as the router sees them.
fn approve(declared: Vec<Declared>) -> Vec<LiveService> {
    let operators = vec!["mobile".to_string()];
    let mut live: Vec<LiveService> = Vec::new();
    for (i, (code, keywords, fee_type, price_fen)) in declared.into_iter().enumerate() {
        let Ok(code) = services::normalize_code(&code) else {
            continue;
        };
        let terms = ServiceTerms {
            name: format!("业务{i}"),
            description: String::new(),
            keywords,
            fee_type,
            price_fen,
            operators: operators.clone(),
            monthly_max_messages: Some(30),
            number_ext: format!("{i:02}"),
        };
        let Ok(terms) = services::validate_terms(&terms, &operators) else {
            continue;
        };
        if live.iter().any(|s| s.code == code) {
            continue;
        }
        let others: Vec<Routable<'_>> = live
            .iter()
            .map(|s| Routable {
                code: &s.code,
                keywords: &s.revision.keywords,
            })
            .collect();
        let own = Routable {
            code: &code,
            keywords: &terms.keywords,
        };
        if services::check_reachable(own, &others).is_err() {
            continue;
        }
        live.push(LiveService {
            id: i64::try_from(i).unwrap() + 1,
            partner_id: 1,
            code,
            module: Some("m".into()),
            status: ServiceStatus::Approved,
            revision: Revision {
                id: 1,
                seq: 1,
                name: terms.name,
                description: terms.description,
                keywords: terms.keywords,
                fee_type: terms.fee_type,
                price_fen: terms.price_fen,
                operators: terms.operators,
                monthly_max_messages: terms.monthly_max_messages,
                number_ext: terms.number_ext,
                status: "approved".into(),
                created_at: 0,
                submitted_at: None,
                decided_at: None,
                decided_by: None,
                decision_reason: None,
            },
        });
    }
    live
}

/// Every text the platform sends about `service` (and the generic ones).
fn texts(service: &LiveService) -> Vec<String> {
    let items = vec![(
        service.code.clone(),
        service.revision.name.clone(),
        service.revision.fee_type,
        service.revision.price_fen,
    )];
    vec![
        notices::confirm_request(service, "合作方", 24),
        notices::subscribed(service),
        notices::already_subscribed(service),
        notices::service_help(service),
        notices::not_subscribed(service),
        notices::unavailable(service),
        notices::no_such_service(&service.code),
        notices::menu(&items),
        notices::menu_bad_choice(7, 1),
        notices::platform_help(),
        notices::unknown(),
        notices::with_stop_instruction("欢迎订阅！每天一条", &service.code),
        notices::with_stop_instruction("欢迎", &service.code),
    ]
}

/// What an instruction names, read from the words around `回复X`.
#[derive(Debug, Clone, PartialEq)]
enum Named {
    Stop,
    Subscribe,
    Confirm,
    Menu,
    StopAll,
    Help,
    Choice,
    /// Not a literal word to send (`回复序号`, `回复业务代码`, `不回复…`).
    Placeholder,
}

/// Every `回复X` of a text: (what the words around it name, X).
fn instructions(text: &str) -> Vec<(Named, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut before = String::new();
    while let Some(at) = rest.find("回复") {
        before.push_str(&rest[..at]);
        let after = &rest[at + "回复".len()..];
        let token: String = if after.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            after
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect()
        } else {
            after
                .chars()
                .take_while(|c| !c.is_whitespace() && !is_punctuation(*c))
                .collect()
        };
        let following = &after[token.len()..];
        // `不回复不订购` ("no reply, no subscription") tells what not to do.
        let named =
            if token.starts_with("序号") || token.starts_with("业务代码") || before.ends_with('不')
            {
                Named::Placeholder
            } else if before.ends_with("退订") {
                Named::Stop
            } else if before.ends_with("订购") {
                Named::Subscribe
            } else if following.starts_with("确认") {
                Named::Confirm
            } else if following.starts_with("查询") {
                Named::Menu
            } else if following.starts_with("退订全部") {
                Named::StopAll
            } else if following.starts_with("获取帮助") {
                Named::Help
            } else if following.starts_with('到') {
                Named::Choice
            } else {
                panic!("an instruction the platform should not send: `回复{token}` in {text}");
            };
        out.push((named, token.clone()));
        before.push_str("回复");
        before.push_str(&token);
        rest = following;
    }
    out
}

/// The token as users type it: lower case, full-width, or with punctuation around.
fn typed(token: &str, how: u8) -> String {
    match how % 5 {
        0 => token.to_string(),
        1 => token.to_lowercase(),
        2 => token
            .chars()
            .map(|c| match c {
                '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).unwrap(),
                other => other,
            })
            .collect(),
        3 => format!("{token}。"),
        _ => format!(" “{}”！ ", token.to_lowercase()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn item4_unsubscribe_instruction_is_parsed_back(
        declared in prop::collection::vec(declared(), 1..6),
        how in any::<u8>(),
    ) {
        let live = approve(declared);
        let codes: Vec<&str> = live.iter().map(|s| s.code.as_str()).collect();
        for service in &live {
            for text in texts(service) {
                for (named, token) in instructions(&text) {
                    let key = route_key(&typed(&token, how));
                    let command = commands::parse(&key, &codes);
                    match named {
                        Named::Placeholder => {}
                        Named::Stop => prop_assert_eq!(
                            command,
                            Some(Command::Stop { code: Some(service.code.clone()) }),
                            "{} in {}", token, text
                        ),
                        Named::Confirm => prop_assert_eq!(command, Some(Command::Confirm)),
                        Named::Menu => prop_assert_eq!(command, Some(Command::Menu)),
                        Named::StopAll => prop_assert_eq!(command, Some(Command::StopAll)),
                        Named::Help => prop_assert_eq!(command, Some(Command::Help { code: None })),
                        Named::Choice => prop_assert_eq!(command, Some(Command::Choice(1))),
                        Named::Subscribe => {
                            prop_assert_eq!(command, None, "{} in {}", token, text);
                            let reached = by_word(&key, &live);
                            prop_assert!(
                                matches!(reached, Some(ByWord::Subscribe(s)) if s.id == service.id),
                                "`{}` in {} reaches {:?}", token, text, reached.map(|r| match r {
                                    ByWord::Help(s) | ByWord::Subscribe(s) => s.code.clone(),
                                })
                            );
                        }
                    }
                }
            }
        }
    }
}
