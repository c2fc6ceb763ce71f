//! Billing and settlement against real stores (SQLite, and PostgreSQL when
//! `TONGDAO_TEST_DATABASE_URL` is set): charge events, the monthly
//! statement worked out by hand from the agreement's formula,
//! reconciliation with the partner's figures, reproducible documents
//! obligations and termination, and a per-message
//! charge driven by a real DLR from the SMSC simulator.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use jiff::civil::Date;
use tongdao::billing::agreement::{self, AgreementInput};
use tongdao::billing::calendar::{self, DayKind, Month, day_start_ms};
use tongdao::billing::charges::{self, Scan};
use tongdao::billing::terms::{
    self, ActivationRule, AgreementTerms, OperatorBilling, OperatorTerms, TierMode, TierRates,
};
use tongdao::config::{OperatorConfig, RelayConfig};
use tongdao::relay::{Basis, ChargePlan, NewMessage, Relay, Routes};
use tongdao::services::{FeeType, ServiceTerms};
use tongdao::settlement::SettlementConfig;
use tongdao::settlement::cases;
use tongdao::settlement::obligations::{self, BreachInput, PaymentInput, TerminationInput};
use tongdao::settlement::reconcile::{self, FiguresInput, PartnerLine};
use tongdao::settlement::render::{self, Format};
use tongdao::settlement::statement;
use tongdao::store::Store;

const HOUR: i64 = 3_600_000;

fn day(s: &str) -> Date {
    s.parse().unwrap()
}

/// Unix ms of `day` at `hour`:00 in Asia/Shanghai.
fn at(d: &str, hour: i64) -> i64 {
    day_start_ms(day(d)) + hour * HOUR
}

fn month(s: &str) -> Month {
    s.parse().unwrap()
}

fn operator(name: &str, address: &str, prefixes: &[&str]) -> OperatorConfig {
    OperatorConfig {
        name: name.into(),
        address: address.into(),
        system_id: format!("td-{name}"),
        password: "pw".into(),
        system_type: String::new(),
        binds: 1,
        window: 10,
        tps: 0,
        prefixes: prefixes.iter().map(|p| (*p).to_string()).collect(),
        source_addr: "10661234".into(),
        concat: tongdao::config::ConcatMode::Udh,
        ..Default::default()
    }
}

/// Mobile serves 138…, Unicom 130…: where monthly subscriptions are billed.
fn routes() -> Routes {
    Routes::new(&[
        operator("mobile", "127.0.0.1:1", &["138"]),
        operator("unicom", "127.0.0.1:1", &["130"]),
    ])
}

// ---- seeding the month's records ----
//
// The relay and the services of issue 4 write these rows in production; the relay
// path itself is tested in relay.rs (and by the real-DLR test at the end of this
// file). Here they are inserted with SQL, exactly as the contract of issue 4
// describes them: `messages` with status, charge plan, price, service and
// subscription; `subscriptions` with fee type, price and activation; `mo_messages`
// with the service the keyword router gave them.

async fn exec(store: &Store, sql: &str, args: &[Arg<'_>]) -> i64 {
    let mut q = sqlx::query_as::<_, (i64,)>(sql);
    for a in args {
        q = match a {
            Arg::I(v) => q.bind(*v),
            Arg::O(v) => q.bind(*v),
            Arg::S(v) => q.bind(*v),
        };
    }
    q.fetch_one(store.pool()).await.unwrap().0
}

enum Arg<'a> {
    I(i64),
    O(Option<i64>),
    S(&'a str),
}
use Arg::{I, O, S};

/// A service approved with its terms (one revision in force since the epoch), as
/// issue 4's approval leaves it.
async fn service(store: &Store, partner: i64, code: &str, fee_type: &str, price: i64) -> i64 {
    let id = exec(
        store,
        "INSERT INTO services (partner_id, code, status, created_at, updated_at)
         VALUES ($1, $2, 'approved', 0, 0) RETURNING id",
        &[I(partner), S(code)],
    )
    .await;
    let revision = exec(
        store,
        "INSERT INTO service_revisions (service_id, seq, name, description, keywords, fee_type, price_fen,
            operators, monthly_max_messages, number_ext, status, created_at, decided_at)
         VALUES ($1, 1, $2, '', '[]', $3, $4, '[\"mobile\",\"unicom\"]', 31, $5, 'approved', 0, 0)
         RETURNING id",
        &[I(id), S(code), S(fee_type), I(price), S(&id.to_string())],
    )
    .await;
    exec(
        store,
        "UPDATE services SET live_revision_id = $1 WHERE id = $2 RETURNING id",
        &[I(revision), I(id)],
    )
    .await;
    id
}

/// One MT row; `done_at` is when its final receipt arrived.
#[allow(clippy::too_many_arguments)]
async fn mt(
    store: &Store,
    partner: i64,
    service: (i64, &str),
    subscription: Option<i64>,
    recipient: &str,
    operator: &str,
    plan: &str,
    price: i64,
    status: &str,
    done_at: i64,
) -> i64 {
    exec(
        store,
        "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
            charge_plan, is_test, status, attempts, next_attempt_at, expires_at, created_at, updated_at,
            done_at, service_id, subscription_id, price_fen, basis)
         VALUES ($1, $2, $3, $4, 'text', 'sha', 1, $5, $6, $7, 1, $8, $8, $8, $8, $8, $9, $10, $11,
            'subscription') RETURNING id",
        &[
            I(partner),
            S(service.1),
            S(recipient),
            S(operator),
            S(plan),
            I(i64::from(plan == "test")),
            S(status),
            I(done_at),
            I(service.0),
            O(subscription),
            I(price),
        ],
    )
    .await
}

async fn mo(store: &Store, service: i64, operator: &str, received_at: i64) {
    exec(
        store,
        "INSERT INTO mo_messages (operator, source, destination, text, status, received_at, service_id)
         VALUES ($1, '13800000000', '10661234', 'TD', 'routed', $2, $3) RETURNING id",
        &[S(operator), I(received_at), I(service)],
    )
    .await;
}

/// Partner `alpha`, its approved per-message service `XZ` at 3 yuan on `mobile` and
/// an opted-in subscriber `13800138000`, and one MT to that subscriber queued through
/// `relay`: the partner and the MT's id.
async fn one_paid_mt(store: &Store, relay: &Relay) -> (tongdao::partners::Partner, i64) {
    let partner = common::partner(store, "alpha").await;
    let service_terms = ServiceTerms {
        name: "horoscope on demand".into(),
        description: String::new(),
        keywords: vec!["星座".into()],
        fee_type: FeeType::PerMessage,
        price_fen: 300,
        operators: vec!["mobile".into()],
        monthly_max_messages: None,
        number_ext: "01".into(),
    };
    let service_id = common::approved(store, partner.id, "XZ", None, &service_terms).await;
    let sub = subscription(
        store,
        partner.id,
        service_id,
        "13800138000",
        "per-message",
        300,
        "active",
        Some(0),
        None,
    )
    .await;
    let id = relay
        .enqueue(NewMessage {
            partner_id: Some(partner.id),
            service: Some("XZ".into()),
            service_id: Some(service_id),
            recipient: "13800138000".into(),
            text: "【星座】白羊座今日运势：宜出行。".into(),
            charge_plan: ChargePlan::PerMessage,
            price_fen: 300,
            basis: Basis::Subscription(sub),
            sender: None,
            module_version_id: None,
            input_sha256: None,
            operator: None,
        })
        .await
        .unwrap();
    (partner, id)
}

#[allow(clippy::too_many_arguments)]
async fn subscription(
    store: &Store,
    partner: i64,
    service: i64,
    msisdn: &str,
    fee_type: &str,
    price: i64,
    status: &str,
    activated_at: Option<i64>,
    ended_at: Option<i64>,
) -> i64 {
    let subscriber = format!("sub-{partner}-{msisdn}");
    exec(
        store,
        "INSERT INTO subscribers (id, partner_id, msisdn, created_at) VALUES ($1, $2, $3, 0)
         ON CONFLICT (id) DO UPDATE SET created_at = 0 RETURNING 0",
        &[S(&subscriber), I(partner), S(msisdn)],
    )
    .await;
    exec(
        store,
        "INSERT INTO subscriptions (partner_id, service_id, subscriber_id, msisdn, status, source, fee_type,
            price_fen, requested_at, activated_at, ended_at)
         VALUES ($1, $2, $3, $4, $5, 'sms', $6, $7, 0, $8, $9) RETURNING id",
        &[
            I(partner),
            I(service),
            S(&subscriber),
            S(msisdn),
            S(status),
            S(fee_type),
            I(price),
            O(activated_at),
            O(ended_at),
        ],
    )
    .await
}

/// What `seed_august` created that tests look at.
struct Seeded {
    xz: String,
    joke: String,
    unicom_xz_ids: Vec<i64>,
    unicom_failed_id: i64,
}

/// August 2026 of one partner, as in the worked example:
///
/// - mobile: 30 delivered per-message MTs of `XZ` at 200 fen (one at 1 Aug 00:00:00.000,
///   one at 31 Aug 23:59:59.999), plus one just before and one just after the month;
///   2 failed and 1 test MT (never charged, not traffic); 40 delivered MTs under the
///   monthly `JOKE` (500 fen/month); 20 MOs.
/// - unicom: 12 delivered `XZ` MTs, 1 failed; 10 monthly MTs; 15 MOs.
/// - `JOKE` subscriptions: s1 (mobile, since 10 Jul), s2 (mobile, activated 20 Aug
///   10:00), s3 (mobile, activated 1 Aug 00:00), s4 (mobile, 1 Jun – 20 Jul), s5
///   (pending, never active), s6 (unicom, since 15 Jul); one subscription to the free
///   service `FREE`.
async fn seed_august(store: &Store, partner: i64, suffix: &str) -> Seeded {
    let xz = format!("XZ{suffix}");
    let joke = format!("JOKE{suffix}");
    let free = format!("FREE{suffix}");
    let xz_id = service(store, partner, &xz, "per-message", 200).await;
    let joke_id = service(store, partner, &joke, "monthly", 500).await;
    let free_id = service(store, partner, &free, "free", 0).await;
    let sub = |n: u32| format!("138{n:08}");
    let s1 = subscription(
        store,
        partner,
        joke_id,
        &sub(1),
        "monthly",
        500,
        "active",
        Some(at("2026-07-10", 10)),
        None,
    )
    .await;
    subscription(
        store,
        partner,
        joke_id,
        &sub(2),
        "monthly",
        500,
        "active",
        Some(at("2026-08-20", 10)),
        None,
    )
    .await;
    subscription(
        store,
        partner,
        joke_id,
        &sub(3),
        "monthly",
        500,
        "active",
        Some(at("2026-08-01", 0)),
        None,
    )
    .await;
    subscription(
        store,
        partner,
        joke_id,
        &sub(4),
        "monthly",
        500,
        "cancelled",
        Some(at("2026-06-01", 9)),
        Some(at("2026-07-20", 9)),
    )
    .await;
    subscription(
        store,
        partner,
        joke_id,
        &sub(5),
        "monthly",
        500,
        "pending",
        None,
        None,
    )
    .await;
    let s6 = subscription(
        store,
        partner,
        joke_id,
        "13000000006",
        "monthly",
        500,
        "active",
        Some(at("2026-07-15", 10)),
        None,
    )
    .await;
    subscription(
        store,
        partner,
        free_id,
        &sub(7),
        "free",
        0,
        "active",
        Some(at("2026-07-01", 10)),
        None,
    )
    .await;

    let xz_s = (xz_id, xz.as_str());
    let joke_s = (joke_id, joke.as_str());
    let aug1 = at("2026-08-01", 0);
    let sep1 = at("2026-09-01", 0);
    // Mobile.
    mt(
        store,
        partner,
        xz_s,
        None,
        &sub(10),
        "mobile",
        "per-message",
        200,
        "delivered",
        aug1,
    )
    .await;
    mt(
        store,
        partner,
        xz_s,
        None,
        &sub(10),
        "mobile",
        "per-message",
        200,
        "delivered",
        sep1 - 1,
    )
    .await;
    for _ in 0..28 {
        mt(
            store,
            partner,
            xz_s,
            None,
            &sub(10),
            "mobile",
            "per-message",
            200,
            "delivered",
            at("2026-08-10", 12),
        )
        .await;
    }
    mt(
        store,
        partner,
        xz_s,
        None,
        &sub(10),
        "mobile",
        "per-message",
        200,
        "delivered",
        aug1 - 1,
    )
    .await;
    mt(
        store,
        partner,
        xz_s,
        None,
        &sub(10),
        "mobile",
        "per-message",
        200,
        "delivered",
        sep1,
    )
    .await;
    for _ in 0..2 {
        mt(
            store,
            partner,
            xz_s,
            None,
            &sub(10),
            "mobile",
            "per-message",
            200,
            "failed",
            at("2026-08-11", 12),
        )
        .await;
    }
    mt(
        store,
        partner,
        xz_s,
        None,
        &sub(10),
        "mobile",
        "test",
        0,
        "delivered",
        at("2026-08-11", 12),
    )
    .await;
    for _ in 0..40 {
        mt(
            store,
            partner,
            joke_s,
            Some(s1),
            &sub(1),
            "mobile",
            "monthly",
            0,
            "delivered",
            at("2026-08-12", 8),
        )
        .await;
    }
    for _ in 0..20 {
        mo(store, xz_id, "mobile", at("2026-08-05", 9)).await;
    }
    // Unicom.
    let mut unicom_xz_ids = Vec::new();
    for _ in 0..12 {
        unicom_xz_ids.push(
            mt(
                store,
                partner,
                xz_s,
                None,
                "13000000011",
                "unicom",
                "per-message",
                200,
                "delivered",
                at("2026-08-15", 20),
            )
            .await,
        );
    }
    let unicom_failed_id = mt(
        store,
        partner,
        xz_s,
        None,
        "13000000011",
        "unicom",
        "per-message",
        200,
        "failed",
        at("2026-08-15", 20),
    )
    .await;
    for _ in 0..10 {
        mt(
            store,
            partner,
            joke_s,
            Some(s6),
            "13000000006",
            "unicom",
            "monthly",
            0,
            "delivered",
            at("2026-08-16", 8),
        )
        .await;
    }
    for _ in 0..15 {
        mo(store, xz_id, "unicom", at("2026-08-06", 9)).await;
    }
    Seeded {
        xz,
        joke,
        unicom_xz_ids,
        unicom_failed_id,
    }
}

/// The platform-wide settings of the example: two operators with their imbalance
/// ranges on the `cn` calendar, its National Day holiday (1–7 October 2026) and the
/// make-up working Saturday 10 October, and both operators' bad-debt ratios.
async fn platform_settings(store: &Store) {
    for (op, min, max) in [("mobile", 3, 8), ("unicom", 1, 5)] {
        terms::set_operator_billing(
            store,
            &routes(),
            &OperatorBilling {
                operator: op.into(),
                imbalance_min_fen: min,
                imbalance_max_fen: max,
                calendar: "cn".into(),
            },
        )
        .await
        .unwrap();
    }
    for d in 1..=7 {
        calendar::set_day(
            store,
            "cn",
            &format!("2026-10-{d:02}"),
            DayKind::Holiday,
            "国庆节",
        )
        .await
        .unwrap();
    }
    calendar::set_day(store, "cn", "2026-10-10", DayKind::Workday, "国庆节调休")
        .await
        .unwrap();
    for (op, bp) in [("mobile", 250), ("unicom", 175)] {
        terms::record_bad_debt(store, &routes(), op, month("2026-08"), bp, None, "admin")
            .await
            .unwrap();
    }
}

fn example_terms(t1: i64, t2: i64, mode: TierMode) -> AgreementTerms {
    AgreementTerms {
        effective_from: month("2026-08"),
        tier_mode: mode,
        t1_fen: t1,
        t2_fen: t2,
        tiers: [
            TierRates {
                platform_bp: 5000,
                partner_bp: 5000,
            },
            TierRates {
                platform_bp: 4000,
                partner_bp: 6000,
            },
            TierRates {
                platform_bp: 3000,
                partner_bp: 7000,
            },
        ],
        tax_bp: 600,
        discrepancy_bp: 200,
        payment_days: 5,
        activation_rule: ActivationRule::ProRata,
    }
}

/// A partner with the example's agreement: mobile 15 % collection, 5 fen imbalance,
/// balanced up to 2 MT per MO, settled `M+2 day 15`; unicom 12 %, 3 fen, 1:1,
/// `end of M+2`.
async fn example_partner(store: &Store, name: &str, t1: i64, t2: i64) -> i64 {
    let p = common::partner(store, name).await.id;
    agreement::set(
        store,
        p,
        &AgreementInput {
            start_date: "2026-07-01".into(),
            term_months: 24,
            notice_months: 3,
            remedy_days: 10,
        },
    )
    .await
    .unwrap();
    terms::add_terms(store, p, &example_terms(t1, t2, TierMode::Whole))
        .await
        .unwrap();
    for (op, c, rate, mt, mo_, schedule) in [
        ("mobile", 1500, 5, 2, 1, "M+2 day 15"),
        ("unicom", 1200, 3, 1, 1, "end of M+2"),
    ] {
        terms::add_operator_terms(
            store,
            p,
            &OperatorTerms {
                operator: op.into(),
                effective_from: month("2026-08"),
                collection_bp: c,
                imbalance_rate_fen: rate,
                balance_mt: mt,
                balance_mo: mo_,
                schedule: schedule.parse().unwrap(),
            },
        )
        .await
        .unwrap();
    }
    p
}

/// 31 August 2026, 23:00 in Shanghai: the charge pass covers July and August.
fn end_of_august() -> i64 {
    at("2026-08-31", 23)
}

/// the worked example, every figure computed by
/// hand from the agreement's formula (clause 3.3) and compared to the fen.
#[tokio::test]
async fn worked_example_two_operators_every_figure_to_the_fen_r_4_3_r_4_4_r_4_6() {
    for db in common::stores().await {
        let store = &db.store;
        platform_settings(store).await;
        let p = example_partner(store, "alpha", 5_000, 10_000).await;
        let seeded = seed_august(store, p, "").await;
        let report = charges::charge(store, &routes(), end_of_august(), Scan::Full)
            .await
            .unwrap();
        // Per-message: 30 + 2 just outside August (July 31, Sept 1) on mobile, 12 on
        // unicom. Monthly: July s1, s4, s6; August s1, s2, s3, s6.
        assert_eq!(report.per_message, 44, "{}", db.name);
        assert_eq!(report.monthly, 7, "{}", db.name);
        assert_eq!(report.unroutable, 0);

        let aug = month("2026-08");
        let events = charges::list(store, p, aug).await.unwrap();
        let monthly: Vec<(String, i64, String)> = events
            .iter()
            .filter(|e| e.kind == "monthly")
            .map(|e| (e.operator.clone(), e.amount_fen, e.basis.clone()))
            .collect();
        // s1 full; s2 from 20 Aug: 500 × 12/31 = 193.55 → 194; s3 from 1 Aug: 31/31;
        // s6 full. s4 ended in July, s5 never started, FREE charges nothing.
        assert_eq!(
            monthly,
            vec![
                ("mobile".into(), 500, "full".into()),
                ("mobile".into(), 194, "pro-rata 12/31 days".into()),
                ("mobile".into(), 500, "pro-rata 31/31 days".into()),
                ("unicom".into(), 500, "full".into()),
            ]
        );

        let s = statement::generate(store, p, "alpha", aug).await.unwrap();
        assert!(!s.provisional);
        assert_eq!(s.period.from, "2026-08-01 00:00");
        assert_eq!(s.period.until, "2026-09-01 00:00");
        let [m, u] = [&s.operators[0], &s.operators[1]];
        assert_eq!(
            (m.operator.as_str(), u.operator.as_str()),
            ("mobile", "unicom")
        );

        // Mobile: XZ 30 × 200 = 6,000; JOKE 500 + 194 + 500 = 1,194.
        let lines: Vec<(&str, i64, i64)> = m
            .lines
            .iter()
            .map(|l| (l.service.as_str(), l.settled_count, l.settled_fen))
            .collect();
        assert_eq!(
            lines,
            vec![
                (seeded.joke.as_str(), 3, 1_194),
                (seeded.xz.as_str(), 30, 6_000)
            ]
        );
        assert_eq!(m.gross_fen, 7_194);
        assert_eq!(m.collection_fen, 1_079); // 7,194 × 15 % = 1,079.10
        assert_eq!((m.mt_count, m.mo_count), (70, 20)); // 30 XZ + 40 JOKE; 20 MOs
        assert_eq!((m.balanced_mt, m.imbalanced_mt), (40, 30)); // 2 × 20 balanced
        assert_eq!(m.imbalance_fen, 150); // 30 × 5 fen
        assert_eq!(m.bad_debt_fen, 180); // 7,194 × 2.50 % = 179.85
        assert_eq!(m.received_fen, 5_785); // 7,194 − 1,079 − 150 − 180
        assert_eq!(m.tax_fen, 347); // 5,785 × 6 % = 347.10
        assert_eq!(m.distributable_fen, 5_438);

        // Unicom: XZ 12 × 200 = 2,400; JOKE 500.
        assert_eq!(u.gross_fen, 2_900);
        assert_eq!(u.collection_fen, 348); // 2,900 × 12 %
        assert_eq!(
            (u.mt_count, u.mo_count, u.balanced_mt, u.imbalanced_mt),
            (22, 15, 15, 7)
        );
        assert_eq!(u.imbalance_fen, 21); // 7 × 3 fen
        assert_eq!(u.bad_debt_fen, 51); // 2,900 × 1.75 % = 50.75
        assert_eq!(u.received_fen, 2_480); // 2,900 − 348 − 21 − 51
        assert_eq!(u.tax_fen, 149); // 2,480 × 6 % = 148.80
        assert_eq!(u.distributable_fen, 2_331);

        // Month: 5,438 + 2,331 = 7,769: from T1 (5,000) below T2 (10,000): tier 2,
        // whole mode: partner 60 % = 4,661.4 → 4,661; platform 3,108.
        assert_eq!(s.totals.gross_fen, 10_094);
        assert_eq!(s.totals.received_fen, 8_265);
        assert_eq!(s.totals.tax_fen, 496);
        assert_eq!(s.totals.distributable_fen, 7_769);
        assert_eq!(
            (s.split.tier, s.split.partner_fen, s.split.platform_fen),
            (2, 4_661, 3_108)
        );
        // Over the operators by largest remainder: 4,661 × 5,438 / 7,769 = 3,262.52,
        // 4,661 × 2,331 / 7,769 = 1,398.48: the leftover fen goes to mobile.
        assert_eq!((m.partner_fen, u.partner_fen), (3_263, 1_398));
        assert_eq!((m.platform_fen, u.platform_fen), (2_175, 933));

        // Due dates on the `cn` calendar. Mobile: 15 Oct (Thursday). Unicom:
        // end of October is Saturday the 31st → Monday 2 November. Grace of 5
        // working days: to 22 Oct and 9 Nov.
        assert_eq!(s.due[0].due_on, "2026-10-15");
        assert_eq!(s.due[0].breach_after, "2026-10-22");
        assert_eq!(s.due[1].due_on, "2026-11-02");
        assert_eq!(s.due[1].breach_after, "2026-11-09");
        assert_eq!((s.due[0].amount_fen, s.due[1].amount_fen), (3_263, 1_398));
        // Mobile's money arrives Wednesday 30 September: 5 working days skip the
        // holiday (1–7 Oct) and count the make-up Saturday: 8, 9, 10, 12, 13 Oct.
        obligations::record_operator_payment(store, &routes(), "mobile", aug, "2026-09-30")
            .await
            .unwrap();
        let s = statement::generate(store, p, "alpha", aug).await.unwrap();
        assert_eq!(s.due[0].pay_by.as_deref(), Some("2026-10-13"));
        assert_eq!(s.due[1].pay_by, None);

        // The same split in marginal mode: 5,000 × 50 % + 2,769 × 60 % = 4,161.4 → 4,161.
        let marginal = example_terms(5_000, 10_000, TierMode::Marginal)
            .split(7_769)
            .unwrap();
        assert_eq!(
            (marginal.partner_fen, marginal.platform_fen),
            (4_161, 3_608)
        );

        // the partner's figures. Mobile XZ agrees with ours: ours stands.
        // Unicom XZ 13 messages × 200 = 2,600 is 8.33 % over 2,400: beyond X = 2 %
        // (and within the 50 % hard bound), the line settles on the mean (2,400 +
        // 2,600) / 2 = 2,500, and a case opens with the message ids they list that
        // we did not charge. (Each line is count × price: a per-message amount that
        // is not is refused, issue 10 item 1.)
        let mut their_ids = seeded.unicom_xz_ids.clone();
        their_ids.push(seeded.unicom_failed_id);
        their_ids.push(999_999_999);
        let outcome = reconcile::upload(
            store,
            &routes(),
            SettlementConfig::default(),
            p,
            aug,
            FiguresInput {
                lines: vec![
                    PartnerLine {
                        service: seeded.xz.clone(),
                        operator: "mobile".into(),
                        count: 30,
                        amount_fen: 6_000,
                        message_ids: None,
                    },
                    PartnerLine {
                        service: seeded.xz.clone(),
                        operator: "unicom".into(),
                        count: 13,
                        amount_fen: 2_600,
                        message_ids: Some(their_ids),
                    },
                ],
                objection: None,
            },
        )
        .await
        .unwrap();
        let case_id = outcome.case_id.expect("a case is opened beyond X%");
        let flags: Vec<(String, bool, i64)> = outcome
            .lines
            .iter()
            .map(|l| {
                let (op, l) = (&l.operator, &l.line);
                (format!("{op}/{}", l.service), l.on_mean, l.settled_fen)
            })
            .collect();
        assert!(
            flags.contains(&(format!("mobile/{}", seeded.xz), false, 6_000)),
            "{flags:?}"
        );
        assert!(
            flags.contains(&(format!("unicom/{}", seeded.xz), true, 2_500)),
            "{flags:?}"
        );
        let (_, case) = cases::case(store, case_id, Some(p)).await.unwrap().unwrap();
        assert_eq!(case.status, "open");
        let diffs = &case.detail["message_differences"][0];
        assert_eq!(diffs["operator"], "unicom");
        let partner_only = diffs["partner_only"].as_array().unwrap();
        assert_eq!(partner_only.len(), 2);
        assert_eq!(partner_only[0]["message_id"], seeded.unicom_failed_id);
        assert_eq!(partner_only[0]["platform_knows"], "not delivered: failed");
        assert_eq!(
            partner_only[1]["platform_knows"],
            "no such message of this partner"
        );

        // Unicom again with the mean line: gross 2,500 + 500 = 3,000; collection
        // 360; imbalance 21; bad debt 52.5 → 53; received 2,566; tax 153.96 → 154;
        // distributable 2,412. Month 5,438 + 2,412 = 7,850, tier 2: partner 4,710,
        // platform 3,140; mobile 3,262.8 → 3,263, unicom 1,447.2 → 1,447.
        let s = statement::generate(store, p, "alpha", aug).await.unwrap();
        let u = &s.operators[1];
        assert_eq!(
            (
                u.gross_fen,
                u.collection_fen,
                u.bad_debt_fen,
                u.received_fen,
                u.tax_fen,
                u.distributable_fen
            ),
            (3_000, 360, 53, 2_566, 154, 2_412)
        );
        assert_eq!(
            s.operators[0].distributable_fen, 5_438,
            "mobile stays on our figures"
        );
        assert_eq!((s.split.partner_fen, s.split.platform_fen), (4_710, 3_140));
        assert_eq!((s.due[0].amount_fen, s.due[1].amount_fen), (3_263, 1_447));
        let rec = s.reconciliation.as_ref().unwrap();
        assert_eq!((rec.lines_on_mean, rec.case_id), (1, Some(case_id)));

        // The readable documents carry the same figures.
        let csv = render::render(&s, Format::Csv);
        assert!(
            csv.contains("unicom,= 可分配收入 distributable income,received - tax,2412,24.12\r\n"),
            "{csv}"
        );
        assert!(csv.contains("mobile,3263,32.63,M+2 day 15,2026-10-15,2026-10-22,2026-09-30,2026-10-13,0,3263\r\n"), "{csv}");
        let html = render::render(&s, Format::Html);
        assert!(html.contains(
            "<td>= 可分配收入 distributable income</td><td>received - tax</td><td class=\"n\">24.12</td>"
        ));

        // The case is resolved later; the settlement on the mean stands.
        let resolved = cases::resolve(store, case_id, "partner counted a failed MT", "admin")
            .await
            .unwrap();
        assert_eq!(resolved.status, "resolved");
        assert!(matches!(
            cases::resolve(store, case_id, "again", "admin").await,
            Err(tongdao::billing::BillingError::Conflict {
                code: "case-resolved",
                ..
            })
        ));
    }
}

/// the tier boundaries on the same month of records (distributable 7,769):
/// just below T1 (T1 = 7,770) → tier 1, 50 % = 3,884.5 → 3,885; at T1 (T1 = 7,769)
/// → tier 2, 60 % = 4,661; at T2 (T2 = 7,769) → tier 3, 70 % = 5,438.3 → 5,438.
#[tokio::test]
async fn tier_boundaries_just_below_t1_at_t1_at_t2_r_4_4() {
    for db in common::stores().await {
        let store = &db.store;
        platform_settings(store).await;
        let cases = [
            ("below-t1", 7_770, 10_000, 1, 3_885),
            ("at-t1", 7_769, 10_000, 2, 4_661),
            ("at-t2", 5_000, 7_769, 3, 5_438),
        ];
        let mut ids = Vec::new();
        for (i, (name, t1, t2, _, _)) in cases.iter().enumerate() {
            let p = example_partner(store, name, *t1, *t2).await;
            seed_august(store, p, &i.to_string()).await;
            ids.push(p);
        }
        charges::charge(store, &routes(), end_of_august(), Scan::Full)
            .await
            .unwrap();
        for ((name, _, _, tier, partner), p) in cases.iter().zip(ids) {
            let s = statement::generate(store, p, name, month("2026-08"))
                .await
                .unwrap();
            assert_eq!(s.totals.distributable_fen, 7_769, "{name}");
            assert_eq!(s.split.tier, *tier, "{name}");
            assert_eq!(s.split.partner_fen, *partner, "{name}");
            assert_eq!(s.split.partner_fen + s.split.platform_fen, 7_769, "{name}");
        }
    }
}

/// a statement generated again from the same records is the same document
/// to the byte, in every format; the CLI prints the same bytes.
#[tokio::test]
async fn statement_regenerated_is_byte_identical_json_csv_html_r_4_9() {
    // A SQLite file of our own, so the CLI can open it too.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    platform_settings(&store).await;
    let p = example_partner(&store, "alpha", 5_000, 10_000).await;
    seed_august(&store, p, "").await;
    charges::charge(&store, &routes(), end_of_august(), Scan::Full)
        .await
        .unwrap();
    let aug = month("2026-08");
    let first = statement::generate(&store, p, "alpha", aug).await.unwrap();
    // A second pass over the same records adds nothing, and changes nothing.
    charges::charge(&store, &routes(), end_of_august(), Scan::Full)
        .await
        .unwrap();
    let second = statement::generate(&store, p, "alpha", aug).await.unwrap();
    for format in [Format::Json, Format::Csv, Format::Html] {
        assert_eq!(
            render::render(&first, format),
            render::render(&second, format)
        );
    }
    let json = render::render(&first, Format::Json);
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back["split"]["partner_fen"], 4_661);
    // Issue 15: the statement links the statistics it was computed from.
    assert_eq!(
        back["statistics"],
        "/v1/stats?granularity=month&from=2026-08&to=2026-08"
    );
    store.close().await;

    for (format, expected) in [
        ("csv", Format::Csv),
        ("html", Format::Html),
        ("json", Format::Json),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tongdao"))
            .args([
                "statement",
                "--partner",
                "alpha",
                "--month",
                "2026-08",
                "--format",
                format,
            ])
            .env("TONGDAO_STORE__URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            render::render(&first, expected)
        );
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_tongdao"))
        .args(["statement", "--partner", "alpha", "--month", "2026-8"])
        .env("TONGDAO_STORE__URL", &url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a month"));
}

/// The (kind, subject) of each alert the obligations check raises on `date`.
async fn alert_kinds(store: &Store, date: &str) -> Vec<(String, String)> {
    obligations::check(store, day(date))
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.kind, a.subject))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
        .collect()
}

async fn count_events(store: &Store) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM charge_events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    n
}

/// a second pass, full or incremental, creates no second event, and
/// the unique keys refuse a duplicate written by anyone else.
#[tokio::test]
async fn charge_pass_twice_creates_no_second_event_r_2_2() {
    for db in common::stores().await {
        let store = &db.store;
        platform_settings(store).await;
        let p = example_partner(store, "alpha", 5_000, 10_000).await;
        seed_august(store, p, "").await;
        let first = charges::charge(store, &routes(), end_of_august(), Scan::Full)
            .await
            .unwrap();
        let n = count_events(store).await;
        assert_eq!(n, 51);
        for scan in [Scan::Full, Scan::Incremental, Scan::Full] {
            let again = charges::charge(store, &routes(), end_of_august(), scan)
                .await
                .unwrap();
            assert_eq!(
                again,
                charges::ChargeReport::default(),
                "{scan:?} on {}",
                db.name
            );
        }
        assert_eq!(count_events(store).await, n);
        assert_eq!(first.per_message + first.monthly, 51);
        // A duplicate insert of a monthly charge violates the unique key.
        let dup = sqlx::query(
            "INSERT INTO charge_events (partner_id, service, operator, kind, subscription_id, month,
                list_price_fen, amount_fen, basis, occurred_at, created_at)
             SELECT partner_id, service, operator, kind, subscription_id, month, list_price_fen,
                amount_fen, basis, occurred_at, created_at FROM charge_events WHERE kind = 'monthly' LIMIT 1",
        )
        .execute(store.pool())
        .await;
        assert!(
            dup.is_err(),
            "a second monthly charge for the same month must be refused"
        );
    }
}

/// the activation month follows the configured rule (full, pro-rata, free
/// first month), and the next month is charged in full.
#[tokio::test]
async fn activation_month_rule_full_pro_rata_free_first_month_r_4_5() {
    for db in common::stores().await {
        let store = &db.store;
        for (i, rule) in [
            ActivationRule::Full,
            ActivationRule::ProRata,
            ActivationRule::FreeFirstMonth,
        ]
        .into_iter()
        .enumerate()
        {
            let p = common::partner(store, &format!("rule-{i}")).await.id;
            let mut t = example_terms(5_000, 10_000, TierMode::Whole);
            t.activation_rule = rule;
            terms::add_terms(store, p, &t).await.unwrap();
            let s = service(store, p, &format!("M{i}"), "monthly", 1_000).await;
            subscription(
                store,
                p,
                s,
                &format!("1380000010{i}"),
                "monthly",
                1_000,
                "active",
                Some(at("2026-08-20", 10)),
                None,
            )
            .await;
        }
        charges::charge(store, &routes(), at("2026-09-02", 9), Scan::Full)
            .await
            .unwrap();
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT e.service, e.month, e.amount_fen, e.basis FROM charge_events e ORDER BY e.service, e.month",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let expected: Vec<(String, String, i64, String)> = vec![
            ("M0".into(), "2026-08".into(), 1_000, "full".into()),
            ("M0".into(), "2026-09".into(), 1_000, "full".into()),
            // 1,000 × 12 / 31 = 387.10 → 387
            (
                "M1".into(),
                "2026-08".into(),
                387,
                "pro-rata 12/31 days".into(),
            ),
            ("M1".into(), "2026-09".into(), 1_000, "full".into()),
            ("M2".into(), "2026-08".into(), 0, "free-first-month".into()),
            ("M2".into(), "2026-09".into(), 1_000, "full".into()),
        ];
        assert_eq!(rows, expected, "{}", db.name);
    }
}

/// unpaid settlements raise alerts once: overdue after the due day, late
/// after N working days from the operator's money, breach after the grace; paid
/// ones raise nothing.
#[tokio::test]
async fn overdue_settlements_and_payment_deadlines_raise_alerts_once_r_4_6() {
    for db in common::stores().await {
        let store = &db.store;
        platform_settings(store).await;
        let p = example_partner(store, "alpha", 5_000, 10_000).await;
        seed_august(store, p, "").await;
        charges::charge(store, &routes(), end_of_august(), Scan::Full)
            .await
            .unwrap();
        let aug = month("2026-08");
        obligations::record_operator_payment(store, &routes(), "mobile", aug, "2026-09-30")
            .await
            .unwrap();

        // 13 October: mobile may still be paid (pay by 13 Oct, due 15 Oct): nothing.
        // July was charged (subscriptions since July) but has no terms in force: its
        // statement cannot be made, and that is raised too.
        let kinds = alert_kinds(store, "2026-10-13").await;
        assert_eq!(kinds, owned(&[("statement-blocked", "2026-07")]));
        // 14 October: mobile is late after the operator's money (pay by 13 Oct).
        let kinds = alert_kinds(store, "2026-10-14").await;
        assert_eq!(kinds, owned(&[("payment-late", "2026-08/mobile")]));
        // 16 October: overdue (due 15 Oct); the late alert is not raised again.
        let kinds = alert_kinds(store, "2026-10-16").await;
        assert_eq!(kinds, owned(&[("settlement-overdue", "2026-08/mobile")]));
        // Mobile is paid in full on 20 October: no breach on 23 October.
        obligations::record_partner_payment(
            store,
            &routes(),
            p,
            &PaymentInput {
                month: aug,
                operator: "mobile".into(),
                amount_fen: 3_263,
                paid_on: "2026-10-20".into(),
                reference: "BANK-0001".into(),
            },
        )
        .await
        .unwrap();
        let alerts = obligations::check(store, day("2026-10-23")).await.unwrap();
        assert!(alerts.is_empty(), "{alerts:?}");
        // Unicom (due 2 Nov, grace to 9 Nov) is never paid.
        let mut kinds = alert_kinds(store, "2026-11-10").await;
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            owned(&[
                ("settlement-breach", "2026-08/unicom"),
                ("settlement-overdue", "2026-08/unicom")
            ])
        );
        let s = statement::generate(store, p, "alpha", aug).await.unwrap();
        assert_eq!((s.due[0].paid_fen, s.due[0].outstanding_fen), (3_263, 0));
        assert_eq!(obligations::alerts(store, Some(p)).await.unwrap().len(), 5);
    }
}

/// a breach notice gives the remedy period; termination for an
/// unremedied breach stops the partner (partners.status) but its months still
/// settle; termination on notice takes effect when the notice months run out.
#[tokio::test]
async fn breach_notice_termination_stops_sending_but_settles_r_5_2_r_5_3() {
    for db in common::stores().await {
        let store = &db.store;
        platform_settings(store).await;
        let p = example_partner(store, "alpha", 5_000, 10_000).await;
        seed_august(store, p, "").await;
        let notice = obligations::issue_breach_notice(
            store,
            p,
            &BreachInput {
                breaching: "partner".into(),
                issued_on: "2026-09-01".into(),
                reason: "bulk sending outside subscriptions (7.4)".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(notice.remedy_by, "2026-09-11");
        let terminate = |given: &str| TerminationInput {
            kind: "breach".into(),
            given_on: given.into(),
            reason: "breach not remedied".into(),
            breach_notice_id: Some(notice.id),
        };
        let early = obligations::terminate(store, p, &terminate("2026-09-11")).await;
        assert!(matches!(
            early,
            Err(tongdao::billing::BillingError::Conflict {
                code: "remedy-period-running",
                ..
            })
        ));
        let lapsed = obligations::check(store, day("2026-09-12")).await.unwrap();
        assert!(
            lapsed.iter().any(|a| a.kind == "remedy-lapsed"),
            "{lapsed:?}"
        );
        // An MT of the partner still waiting in the outbox (queued by issue 4's gate).
        let xz_id: (i64,) = sqlx::query_as("SELECT id FROM services WHERE code = 'XZ'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let waiting = mt(
            store,
            p,
            (xz_id.0, "XZ"),
            None,
            "13800000010",
            "mobile",
            "per-message",
            200,
            "queued",
            at("2026-09-12", 8),
        )
        .await;
        let a = obligations::terminate(store, p, &terminate("2026-09-12"))
            .await
            .unwrap();
        let (status, reason): (String, Option<String>) =
            sqlx::query_as("SELECT status, failure_reason FROM messages WHERE id = $1")
                .bind(waiting)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(status, "failed", "nothing of a terminated partner leaves");
        assert_eq!(
            reason.as_deref(),
            Some("the agreement was terminated on 2026-09-12")
        );
        assert_eq!(a.status, agreement::AgreementStatus::Terminated);
        assert_eq!(a.terminated_on.as_deref(), Some("2026-09-12"));
        let partner = tongdao::partners::get(store, "alpha").await.unwrap();
        assert_eq!(
            partner.status, "terminated",
            "sending stops (issue 4/5 refuse non-active partners)"
        );

        // Billing goes on: August and September are charged, October is not.
        charges::charge(store, &routes(), at("2026-09-30", 12), Scan::Full)
            .await
            .unwrap();
        charges::charge(store, &routes(), at("2026-10-15", 12), Scan::Full)
            .await
            .unwrap();
        let months: Vec<(String, i64)> = sqlx::query_as(
            "SELECT month, COUNT(*) FROM charge_events WHERE kind = 'monthly' AND partner_id = $1
             GROUP BY month ORDER BY month",
        )
        .bind(p)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            months,
            vec![("2026-08".into(), 4), ("2026-09".into(), 4)],
            "{}",
            db.name
        );
        let s = statement::generate(store, p, "alpha", month("2026-08"))
            .await
            .unwrap();
        assert_eq!(
            s.split.partner_fen, 4_661,
            "the last months still settle (R-5.3)"
        );

        // Termination on notice: 3 months from 1 September, effective 1 December.
        let q = example_partner(store, "beta", 5_000, 10_000).await;
        let a = obligations::terminate(
            store,
            q,
            &TerminationInput {
                kind: "notice".into(),
                given_on: "2026-09-01".into(),
                reason: "the partner asked to end the cooperation".into(),
                breach_notice_id: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(a.status, agreement::AgreementStatus::InNotice);
        assert_eq!(a.ends_on.as_deref(), Some("2026-12-01"));
        obligations::check(store, day("2026-11-30")).await.unwrap();
        assert_eq!(
            tongdao::partners::get(store, "beta").await.unwrap().status,
            "active"
        );
        let ended = obligations::check(store, day("2026-12-01")).await.unwrap();
        assert!(
            ended
                .iter()
                .any(|a| a.kind == "notice-ended" && a.partner_id == q)
        );
        assert_eq!(
            tongdao::partners::get(store, "beta").await.unwrap().status,
            "terminated"
        );
        let a = agreement::require(store, q).await.unwrap();
        assert_eq!(a.status, agreement::AgreementStatus::Terminated);
    }
}

/// terms change from a month on; the months before keep theirs.
#[tokio::test]
async fn new_terms_apply_from_their_month_old_months_keep_old_terms_r_4_8() {
    for db in common::stores().await {
        let store = &db.store;
        platform_settings(store).await;
        let p = example_partner(store, "alpha", 5_000, 10_000).await;
        seed_august(store, p, "").await;
        charges::charge(store, &routes(), end_of_august(), Scan::Full)
            .await
            .unwrap();
        let before = statement::generate(store, p, "alpha", month("2026-08"))
            .await
            .unwrap();
        let mut t = example_terms(1_000, 2_000, TierMode::Whole);
        t.effective_from = month("2026-09");
        terms::add_terms(store, p, &t).await.unwrap();
        let after = statement::generate(store, p, "alpha", month("2026-08"))
            .await
            .unwrap();
        assert_eq!(before, after);
        let sept = terms::terms_for(store, p, month("2026-09"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sept.t1_fen, 1_000);
        // Rewriting August's terms is refused.
        let again = terms::add_terms(store, p, &example_terms(1, 2, TierMode::Whole)).await;
        assert!(matches!(
            again,
            Err(tongdao::billing::BillingError::Conflict {
                code: "terms-exist",
                ..
            })
        ));
    }
}

/// a per-message charge from a real DLR. The MT goes through the relay to
/// the SMSC simulator over SMPP; nothing is charged while it is only submitted; the
/// receipt makes it delivered and the pass charges it once; the same receipt
/// replayed charges nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_charge_follows_a_real_dlr_and_a_replayed_dlr_charges_nothing_r_1_2() {
    for db in common::stores().await {
        let store = &db.store;
        let sim = tongdao_smpp::sim::Sim::start(tongdao_smpp::sim::SimConfig {
            dlr_delay: Duration::from_millis(1500),
            ..tongdao_smpp::sim::SimConfig::default()
        })
        .await
        .unwrap();
        let mobile = operator("mobile", &sim.local_addr().to_string(), &["138"]);
        let relay = Relay::start(
            store.clone(),
            RelayConfig {
                retry_initial_ms: 50,
                retry_max_ms: 500,
                lease_secs: 5,
                ..RelayConfig::default()
            },
            std::slice::from_ref(&mobile),
            common::relay_compliance(store),
        );
        // A per-message service at 3 yuan, approved through issue 4's workflow, and a
        // subscriber who opted in.
        let (partner, id) = one_paid_mt(store, &relay).await;
        let status = |store: Store| async move {
            let (s,): (String,) = sqlx::query_as("SELECT status FROM messages WHERE id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
            s
        };
        let started = Instant::now();
        while status(store.clone()).await != "submitted" {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never submitted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let routes = Routes::new(std::slice::from_ref(&mobile));
        let report = charges::charge(store, &routes, tongdao::store::now_ms(), Scan::Full)
            .await
            .unwrap();
        assert_eq!(
            report.per_message, 0,
            "submitted is not delivered: nothing charged yet"
        );
        while status(store.clone()).await != "delivered" {
            assert!(started.elapsed() < Duration::from_secs(30), "no receipt");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let report = charges::charge(store, &routes, tongdao::store::now_ms(), Scan::Incremental)
            .await
            .unwrap();
        assert_eq!(report.per_message, 1, "{}", db.name);
        let now_month = Month::of_ms(tongdao::store::now_ms());
        let events = charges::list(store, partner.id, now_month).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].message_id, events[0].amount_fen),
            (Some(id), 300)
        );
        assert_eq!(
            (events[0].service.as_str(), events[0].operator.as_str()),
            ("XZ", "mobile")
        );

        // The SMSC sends the same receipt again.
        let (operator_id,): (String,) = sqlx::query_as(
            "SELECT operator_message_id FROM message_segments WHERE message_id = $1",
        )
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        let replay = tongdao_smpp::Receipt {
            message_id: operator_id.clone(),
            state: tongdao_smpp::ReceiptState::Delivered,
            error_code: Some("000".into()),
            submit_date: None,
            done_date: None,
            source_addr: "13800138000".into(),
            destination_addr: "10661234".into(),
            raw: format!("id:{operator_id} sub:001 dlvrd:001 stat:DELIVRD err:000"),
        };
        let matched = tongdao::relay::inbound::receipts(
            store,
            "mobile",
            tongdao::config::ReceiptIds::Auto,
            &[replay],
        )
        .await
        .unwrap();
        assert_eq!(matched, 1, "the replayed receipt matches its MT");
        for scan in [Scan::Incremental, Scan::Full] {
            let again = charges::charge(store, &routes, tongdao::store::now_ms(), scan)
                .await
                .unwrap();
            assert_eq!(again.per_message, 0);
        }
        assert_eq!(
            charges::list(store, partner.id, now_month)
                .await
                .unwrap()
                .len(),
            1
        );
        relay.stop();
    }
}

/// A hostile SMSC on loopback speaking just enough SMPP 3.4 by hand: it accepts any
/// bind, answers `enquire_link` and `unbind`, and sends a delivery receipt
/// (`deliver_sm`, `esm_class` 0x04) for each `(message id, handset, stat)` given on
/// its channel, counting the ESME's `deliver_sm_resp`s with status 0.
struct HostileSmsc {
    addr: std::net::SocketAddr,
    forge: tokio::sync::mpsc::UnboundedSender<(String, String, &'static str)>,
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bound: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HostileSmsc {
    async fn start() -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (forge, mut forged) =
            tokio::sync::mpsc::unbounded_channel::<(String, String, &'static str)>();
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bound = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (acks, binds) = (acked.clone(), bound.clone());
        tokio::spawn(async move {
            // One ESME link is all the relay opens (binds = 1).
            let (stream, _) = listener.accept().await.unwrap();
            let (mut read, mut write) = stream.into_split();
            let (out, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            tokio::spawn(async move {
                while let Some(bytes) = out_rx.recv().await {
                    if write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            });
            let pdu = |id: u32, status: u32, seq: u32, body: &[u8]| {
                let mut b = Vec::with_capacity(16 + body.len());
                b.extend_from_slice(&u32::try_from(16 + body.len()).unwrap().to_be_bytes());
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&status.to_be_bytes());
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(body);
                b
            };
            let sender = out.clone();
            tokio::spawn(async move {
                let mut seq = 1000u32;
                while let Some((id, handset, stat)) = forged.recv().await {
                    seq += 1;
                    let text = format!(
                        "id:{id} sub:001 dlvrd:001 submit date:2611301200 done date:2611301201 stat:{stat} err:000 text:"
                    );
                    let mut body = vec![0u8, 1, 1];
                    body.extend_from_slice(handset.as_bytes());
                    body.extend_from_slice(&[0, 0, 1]);
                    body.extend_from_slice(b"10661234\0");
                    // esm_class (receipt), protocol_id, priority, two empty times,
                    // registered_delivery, replace_if_present, data_coding,
                    // sm_default_msg_id, sm_length, short_message.
                    body.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 0, 0, 0]);
                    body.push(u8::try_from(text.len()).unwrap());
                    body.extend_from_slice(text.as_bytes());
                    let _ = sender.send(pdu(0x0000_0005, 0, seq, &body));
                }
            });
            loop {
                let mut head = [0u8; 16];
                if read.read_exact(&mut head).await.is_err() {
                    return;
                }
                let length = u32::from_be_bytes(head[0..4].try_into().unwrap()) as usize;
                let id = u32::from_be_bytes(head[4..8].try_into().unwrap());
                let status = u32::from_be_bytes(head[8..12].try_into().unwrap());
                let seq = u32::from_be_bytes(head[12..16].try_into().unwrap());
                let mut body = vec![0u8; length.saturating_sub(16)];
                if read.read_exact(&mut body).await.is_err() {
                    return;
                }
                match id {
                    // bind_receiver, bind_transmitter, bind_transceiver
                    0x1 | 0x2 | 0x9 => {
                        let _ = out.send(pdu(0x8000_0000 | id, 0, seq, b"hostile\0"));
                        binds.store(true, Ordering::SeqCst);
                    }
                    // enquire_link, unbind
                    0x15 | 0x6 => {
                        let _ = out.send(pdu(0x8000_0000 | id, 0, seq, &[]));
                    }
                    0x8000_0005 if status == 0 => {
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    // submit_sm: accepted with an id of its own
                    0x4 => {
                        let _ = out.send(pdu(0x8000_0004, 0, seq, format!("{seq}\0").as_bytes()));
                    }
                    _ => {}
                }
            }
        });
        Self {
            addr,
            forge,
            acked,
            bound,
        }
    }
}

/// SECURITY.md section 4 (issue 18 item 4, gap 9; issue 18 item 1's "unknown
/// receipts"), R-1.2, R-1.3: a peer's receipts reach only that peer's MTs. A
/// per-message MT (3 yuan) is submitted to Mobile's SMSC (the simulator) and waits
/// for its receipt. Another peer, Unicom's SMSC (a hostile one on a real socket),
/// sends `DELIVRD` receipts for that MT's id (and its handset) and for an id nobody
/// issued; the relay stores them (it acknowledges them) and applies neither: the MT
/// stays `submitted` with no new event, no charge is made, nothing is counted as
/// delivered. Mobile's own receipt then delivers and charges it once. (Receipts are
/// walled per operator: the binds of one operator share them, as SMPP allows a
/// receipt on any receiving bind of the account.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_receipts_for_unknown_or_another_peers_ids_change_nothing() {
    use std::sync::atomic::Ordering;
    for db in common::stores().await {
        let store = &db.store;
        let sim = tongdao_smpp::sim::Sim::start(tongdao_smpp::sim::SimConfig {
            dlr_delay: Duration::from_secs(4),
            ..tongdao_smpp::sim::SimConfig::default()
        })
        .await
        .unwrap();
        let hostile = HostileSmsc::start().await;
        let mobile = operator("mobile", &sim.local_addr().to_string(), &["138"]);
        let unicom = operator("unicom", &hostile.addr.to_string(), &["130"]);
        let operators = [mobile, unicom];
        let relay = Relay::start(
            store.clone(),
            RelayConfig {
                retry_initial_ms: 50,
                retry_max_ms: 500,
                lease_secs: 5,
                ..RelayConfig::default()
            },
            &operators,
            common::relay_compliance(store),
        );
        let (_, id) = one_paid_mt(store, &relay).await;
        let status = async || {
            let (s,): (String,) = sqlx::query_as("SELECT status FROM messages WHERE id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
            s
        };
        common::wait_until("the MT submitted", Duration::from_secs(20), || async {
            status().await == "submitted"
        })
        .await;
        common::wait_until("Unicom's link bound", Duration::from_secs(20), || async {
            hostile.bound.load(Ordering::SeqCst)
        })
        .await;
        let events = async || {
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM message_events WHERE message_id = $1")
                    .bind(id)
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            n
        };
        let events_before = events().await;
        let (operator_id,): (String,) = sqlx::query_as(
            "SELECT operator_message_id FROM message_segments WHERE message_id = $1",
        )
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap();

        // Unicom's SMSC claims Mobile's MT was delivered, and an MT nobody sent.
        for (forged_id, handset) in [
            (operator_id.clone(), "13800138000"),
            ("7777777777".to_string(), "13800138000"),
            ("7777777777".to_string(), "13000000001"),
        ] {
            hostile
                .forge
                .send((forged_id, handset.to_string(), "DELIVRD"))
                .unwrap();
        }
        common::wait_until(
            "the forged receipts stored",
            Duration::from_secs(20),
            || async { hostile.acked.load(Ordering::SeqCst) == 3 },
        )
        .await;
        let (stored, matched): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(message_id) FROM receipts WHERE operator = 'unicom'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((stored, matched), (3, 0), "{}", db.name);
        assert_eq!(
            status().await,
            "submitted",
            "{}: a forged receipt applied",
            db.name
        );
        assert_eq!(events().await, events_before, "{}", db.name);
        let routes = Routes::new(&operators);
        for scan in [Scan::Incremental, Scan::Full] {
            let report = charges::charge(store, &routes, tongdao::store::now_ms(), scan)
                .await
                .unwrap();
            assert_eq!(
                report.per_message, 0,
                "{}: charged on a forged receipt",
                db.name
            );
        }
        let (delivered,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM message_segments WHERE status = 'delivered'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(delivered, 0);

        // Mobile's own receipt delivers it and charges it once.
        common::wait_until("Mobile's receipt", Duration::from_secs(30), || async {
            status().await == "delivered"
        })
        .await;
        let report = charges::charge(store, &routes, tongdao::store::now_ms(), Scan::Incremental)
            .await
            .unwrap();
        assert_eq!(report.per_message, 1, "{}", db.name);
        relay.stop();
        sim.shutdown();
    }
}
