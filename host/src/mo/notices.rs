//! The platform's own texts to users, one function per text (every one is free).
//!
//! Every instruction a text gives ("退订回复TDXZ", "回复Y确认订购", "回复0000查询…")
//! is written by [`instruction`] from the command lists in [`super::commands`], so
//! what the platform tells a user to send is what the router understands; a property
//! test renders every text for generated services and parses each instruction back
//! (issue 10 item 4).

use super::commands::{CONFIRM, HELP, MENU, STOP, STOP_ALL};
use crate::services::{FeeType, LiveService};
use crate::subscriptions::price_text;

/// What an instruction asks the user to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Stop the service with this code.
    Stop(&'a str),
    /// Subscribe with this keyword.
    Subscribe(&'a str),
    /// Confirm a pending subscription.
    Confirm,
    /// List subscriptions (`0000`).
    Menu,
    /// End every subscription (`00000`).
    StopAll,
    /// Ask for help.
    Help,
}

/// The instruction for `action`, e.g. `退订回复TDXZ`. The word is the first of the
/// command's list, so it is always one the router reads as that command.
pub fn instruction(action: Action<'_>) -> String {
    match action {
        Action::Stop(code) => format!("退订回复{}{code}", STOP[0]),
        Action::Subscribe(keyword) => format!("订购回复{keyword}"),
        Action::Confirm => format!("回复{}确认订购", CONFIRM[0]),
        Action::Menu => format!("回复{}查询或退订业务", MENU[0]),
        Action::StopAll => format!("回复{}退订全部业务", STOP_ALL[0]),
        Action::Help => format!("回复{}获取帮助", HELP[0]),
    }
}

fn price(service: &LiveService) -> String {
    price_text(service.revision.fee_type, service.revision.price_fen)
}

fn name(service: &LiveService) -> &str {
    &service.revision.name
}

/// The double-confirmation request of a paid service (MIIT Order 31: who, what,
/// price, how to confirm, how to stop; no reply, no charge).
pub fn confirm_request(service: &LiveService, partner_display_name: &str, hours: u64) -> String {
    format!(
        "【通道】您将订购{partner_display_name}的“{}”，资费{}，由运营商代收。{}（{hours}小时内有效），不回复不订购、不收费。{}。",
        name(service),
        price(service),
        instruction(Action::Confirm),
        instruction(Action::Stop(&service.code)),
    )
}

/// The subscription is active.
pub fn subscribed(service: &LiveService) -> String {
    format!(
        "【通道】您已成功订购“{}”，资费{}。{}，{}。",
        name(service),
        price(service),
        instruction(Action::Stop(&service.code)),
        instruction(Action::Menu).replace("或退订业务", ""),
    )
}

/// The user asked for a service they already hold.
pub fn already_subscribed(service: &LiveService) -> String {
    format!(
        "【通道】您已订购“{}”，无需重复订购。{}。",
        name(service),
        instruction(Action::Stop(&service.code))
    )
}

/// The service takes no subscriptions now (suspended, or its partner is).
pub fn unavailable(service: &LiveService) -> String {
    format!("【通道】“{}”暂停订购。", name(service))
}

/// A confirmation arrived while the service may not send: nothing is charged.
pub fn confirm_refused(service: &LiveService) -> String {
    format!("【通道】“{}”暂停订购，未扣费。", name(service))
}

/// The service was stopped.
pub fn stopped(service_name: &str) -> String {
    format!("【通道】您已退订“{service_name}”，将不再收到该业务消息，也不再收费。")
}

/// A stop for a service the user does not hold.
pub fn not_subscribed(service: &LiveService) -> String {
    format!("【通道】您未订购“{}”，无需退订。", name(service))
}

/// A stop naming a code no service has.
pub fn no_such_service(code: &str) -> String {
    format!(
        "【通道】没有代码为{code}的业务。{}。",
        instruction(Action::Menu).replace("或退订业务", "您订购的业务")
    )
}

/// Everything was stopped.
pub fn stopped_all(count: usize) -> String {
    format!("【通道】您已退订全部{count}项业务，将不再收到这些业务的消息，也不再收费。")
}

/// The user holds nothing.
pub fn no_subscriptions() -> String {
    "【通道】您当前没有订购任何业务。本消息免费。".into()
}

/// The `0000` menu: "cancel all" first, then each subscription with its price.
pub fn menu(items: &[(String, String, FeeType, i64)]) -> String {
    let mut text = String::from("【通道】回复序号退订：1.全部退订");
    for (i, (code, name, fee, price_fen)) in items.iter().enumerate() {
        text.push_str(&format!(
            " {}.{code} {name}({})",
            i + 2,
            price_text(*fee, *price_fen)
        ));
    }
    text.push_str("。本消息免费。");
    text
}

/// A number that is not in the open menu.
pub fn menu_bad_choice(n: u32, items: usize) -> String {
    format!(
        "【通道】序号{n}不在列表中，请回复1到{}之间的序号。",
        items + 1
    )
}

/// What a menu choice ended.
pub fn menu_done(cancelled: usize) -> String {
    if cancelled == 0 {
        "【通道】所选业务已不在订购中。".into()
    } else {
        format!("【通道】已为您退订{cancelled}项业务，不再收费。")
    }
}

/// The platform's help.
pub fn platform_help() -> String {
    format!(
        "【通道】{}，{}，回复业务代码获取该业务说明。本消息免费。",
        instruction(Action::Menu),
        instruction(Action::StopAll)
    )
}

/// One service's help: what it is, price, how to subscribe and stop.
pub fn service_help(service: &LiveService) -> String {
    let r = &service.revision;
    let about = if r.description.is_empty() {
        &r.name
    } else {
        &r.description
    };
    let subscribe = r
        .keywords
        .first()
        .map(|k| format!("{}，", instruction(Action::Subscribe(k))))
        .unwrap_or_default();
    format!(
        "【通道】{}：{about}。资费{}。{subscribe}{}。本消息免费。",
        r.name,
        price(service),
        instruction(Action::Stop(&service.code))
    )
}

/// The module could not answer.
pub fn module_unavailable(service: &LiveService) -> String {
    format!("【通道】“{}”暂时无法回复，请稍后再试。", name(service))
}

/// The default `[dialogue] unknown_reply`.
pub fn unknown() -> String {
    format!(
        "【通道】未能识别您的指令。{}，{}。本消息免费。",
        instruction(Action::Menu),
        instruction(Action::Help)
    )
}

/// What the host appends to a module's welcome (the WIT's promise: "the host
/// appends how to unsubscribe"), unless the text already says it.
pub fn with_stop_instruction(welcome: &str, code: &str) -> String {
    let stop = instruction(Action::Stop(code));
    if welcome.contains(&stop) {
        return welcome.to_string();
    }
    let welcome = welcome.trim_end();
    let sep = if welcome.ends_with(['。', '！', '!', '.', '？', '?']) {
        ""
    } else {
        "。"
    };
    format!("{welcome}{sep}{stop}。")
}
