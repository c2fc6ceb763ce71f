//! Entry points of the host's fuzz targets (`host/fuzz`, cargo-fuzz/libFuzzer), public
//! so the stable test `host/tests/fuzz_corpus.rs` replays the checked-in corpus through
//! exactly what the targets run (issue 18 item 3). Each function panics only when a
//! property named in its docs breaks, or when the code under test panics.
//!
//! The targets that need records run against a real SQLite store (a temporary file,
//! migrated, made once per process); each input works under names of its own (an
//! operator per input), so inputs never see each other's rows. The module upload
//! target runs the real wasmtime runtime.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use tongdao_link::{ConcatInfo, MoPdu};

use crate::billing::BillingError;
use crate::billing::calendar::Month;
use crate::compliance::ComplianceConfig;
use crate::compliance::policy::Policy;
use crate::compliance::settings::{ControlMode, OperatorPolicy, SignatureMode};
use crate::config::OperatorConfig;
use crate::mo::router::{ByWord, by_number, by_word, module_target};
use crate::relay::Routes;
use crate::relay::inbound::mo as intake;
use crate::relay::settings::{IncompleteMo, RelayConfig};
use crate::runtime::{Lane, Runtime, RuntimeConfig};
use crate::services::{FeeType, LiveService, Revision, ServiceStatus};
use crate::settlement::figures;
use crate::settlement::reconcile::FiguresInput;
use crate::store::Store;
use crate::{commands, text};

/// The platform short code of the router target.
const SHORT_CODE: &str = "10661234";

fn service(id: i64, partner_id: i64, code: &str, keywords: &[&str], ext: &str) -> LiveService {
    LiveService {
        id,
        partner_id,
        code: code.into(),
        module: Some(format!("m{id}")),
        status: ServiceStatus::Approved,
        revision: Revision {
            id,
            seq: 1,
            name: code.into(),
            description: String::new(),
            keywords: keywords.iter().map(|k| text::route_key(k)).collect(),
            fee_type: FeeType::Free,
            price_fen: 0,
            operators: vec!["mobile".into()],
            monthly_max_messages: None,
            number_ext: ext.into(),
            status: "approved".into(),
            created_at: 0,
            submitted_at: None,
            decided_at: None,
            decided_by: None,
            decision_reason: None,
        },
    }
}

/// Four live services of two partners (1: XZ, XH; 2: DT, JOKE), keywords stored
/// folded as approval stores them.
static LIVE: LazyLock<Vec<LiveService>> = LazyLock::new(|| {
    vec![
        service(1, 1, "XZ", &["订星座", "XINGZUO"], "01"),
        service(2, 1, "XH", &["笑话"], "02"),
        service(3, 2, "DT", &["答题", "QUIZ"], "03"),
        service(4, 2, "JOKE", &["ＪＯＫＥＳ"], "04"),
    ]
});

/// The MO text folding and the keyword router's decisions. The first octet picks the
/// number written to (the platform's, one of the four services', or another), the
/// second the services the user holds (a bit each); the rest is the text (lossy
/// UTF-8). Properties:
/// - folding is stable: the router key of a key is the key (a keyword stored folded
///   matches when typed as stored), and a command's fold of a fold is the fold;
/// - the key has no invisible format characters, no space at either end and no two
///   spaces in a row (a stop word and its code are two words, whatever separated them);
/// - a host command with a code names a live service's code when it was glued on;
/// - a service found by word has that code or keyword;
/// - the module that gets the text is of a service the user holds, and when the text
///   was sent to a service's own number, it is that service: never a service of
///   another partner than the number's.
pub fn mo_route(data: &[u8]) {
    let [pick, held, rest @ ..] = data else {
        return;
    };
    let typed = String::from_utf8_lossy(rest);
    let key = text::route_key(&typed);
    assert_eq!(
        text::route_key(&key),
        key,
        "route key of {typed:?} is not stable"
    );
    let folded = text::command(&typed);
    assert_eq!(text::command(&folded), folded, "command fold is not stable");
    assert!(
        !key.chars().any(text::is_format),
        "format character in {key:?}"
    );
    assert!(
        !key.starts_with(' ') && !key.ends_with(' ') && !key.contains("  "),
        "stray spaces in {key:?}"
    );
    let live: &[LiveService] = &LIVE;
    let codes: Vec<&str> = live.iter().map(|s| s.code.as_str()).collect();
    if let Some(commands::Command::Stop { code: Some(code) })
    | Some(commands::Command::Help { code: Some(code) }) = commands::parse(&key, &codes)
        && !key.contains(' ')
    {
        assert!(
            codes.contains(&code.as_str()),
            "glued code {code:?} is no service's"
        );
    }
    match by_word(&key, live) {
        Some(ByWord::Help(s)) => assert_eq!(s.code, key),
        Some(ByWord::Subscribe(s)) => assert!(s.revision.keywords.contains(&key)),
        None => {}
    }
    let destination = match pick % 6 {
        0 => SHORT_CODE.to_string(),
        n @ 1..=4 => live[usize::from(n - 1)].sender(SHORT_CODE),
        _ => format!("{SHORT_CODE}9"),
    };
    let number = by_number(&destination, live, SHORT_CODE);
    if let Some(s) = number {
        assert_eq!(s.sender(SHORT_CODE), destination);
    }
    let active: Vec<i64> = live
        .iter()
        .enumerate()
        .filter(|(i, _)| held & (1 << i) != 0)
        .map(|(_, s)| s.id)
        .collect();
    if let Some(target) = module_target(number, &active, live) {
        assert!(
            active.contains(&target.id),
            "a service the user does not hold"
        );
        if let Some(n) = number {
            assert_eq!(
                target.id, n.id,
                "text to {destination} went to {}",
                target.code
            );
            assert_eq!(target.partner_id, n.partner_id, "another partner's module");
        }
    }
}

/// Policies of the content policy target: signature required or appended, invisible
/// characters refused or stripped.
static POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    let mut policies = Vec::new();
    for signature in [SignatureMode::Append, SignatureMode::Require] {
        for control in [ControlMode::Refuse, ControlMode::Strip] {
            let mut config = ComplianceConfig {
                signature,
                control_characters: control,
                prohibited_words: vec!["赌博".into(), "viagra".into()],
                prohibited_patterns: vec![r"\d{3}元现金".into()],
                ..ComplianceConfig::default()
            };
            config.operators.insert(
                "unicom".into(),
                OperatorPolicy {
                    prohibited_words: vec!["彩票".into()],
                    prohibited_patterns: vec![],
                },
            );
            policies.push(Policy::compile(&config).expect("the fuzz policy compiles"));
        }
    }
    policies
});

/// Separators someone puts inside a prohibited word to slip it past a filter.
const SEPARATORS: [&str; 10] = [" ", ".", "。", "　", "-", "*", "！", "·", "_", "/"];

/// The content policy (R-3.1) on an MT text. The first octet picks the policy and the
/// operators, the second where a prohibited word is slipped in and the third with
/// which separators; the rest is the text (lossy UTF-8). Properties:
/// - a text it lets through has no control or invisible characters, and passes again
///   unchanged (checking twice never signs twice nor changes what goes out);
/// - it contains no prohibited word, however folded;
/// - the same text with `赌博` slipped in, spaced out by punctuation, is refused as a
///   prohibited word.
pub fn content_policy(data: &[u8]) {
    let [pick, at, seps, rest @ ..] = data else {
        return;
    };
    let policy = &POLICIES[usize::from(pick % 4)];
    let operators: Vec<String> = if pick & 4 != 0 {
        vec!["unicom".into()]
    } else {
        vec!["mobile".into()]
    };
    let typed = String::from_utf8_lossy(rest);
    let Ok(out) = policy.check(&typed, "星座", &operators) else {
        return;
    };
    assert!(
        text::invisible_chars(&out, true).is_empty(),
        "invisible characters let through in {out:?}"
    );
    assert_eq!(
        policy.check(&out, "星座", &operators).as_ref(),
        Ok(&out),
        "a text let through is not let through unchanged"
    );
    let squashed = text::squash(&out);
    for word in ["赌博", "viagra"] {
        assert!(!squashed.contains(word), "{word} let through in {out:?}");
    }
    let chars: Vec<char> = out.chars().collect();
    let split = usize::from(*at) % (chars.len() + 1);
    let separator: String = (0..(seps % 4))
        .map(|i| SEPARATORS[usize::from((seps >> (2 + i)) % 10)])
        .collect();
    let slipped: String = chars[..split].iter().collect::<String>()
        + "赌"
        + &separator
        + "博"
        + &chars[split..].iter().collect::<String>();
    match policy.check(&slipped, "星座", &operators) {
        Err(v) => assert_eq!(v.rule, "prohibited-word", "{slipped:?}: {v}"),
        Ok(sent) => panic!("a prohibited word went out: {sent:?}"),
    }
}

/// The real store the record targets share, and the runtime that drives it.
struct World {
    rt: tokio::runtime::Runtime,
    store: Store,
    routes: Routes,
    /// The partner whose figures are uploaded, and another one.
    partner: i64,
    _dir: tempfile::TempDir,
}

/// A fresh input's own operator name (the long-MO target's rows never meet another
/// input's).
static INPUTS: AtomicU64 = AtomicU64::new(0);

fn operator_config(name: &str, prefix: &str) -> OperatorConfig {
    OperatorConfig {
        name: name.into(),
        address: "127.0.0.1:1".into(),
        prefixes: vec![prefix.into()],
        ..OperatorConfig::default()
    }
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    let (store, partner) = rt.block_on(async {
        let store = Store::connect(&url, 2).await.expect("the fuzz store");
        store.migrate().await.expect("migrations");
        let (a, _) = crate::partners::create(&store, "alpha", "Alpha")
            .await
            .expect("partner alpha");
        let (b, _) = crate::partners::create(&store, "beta", "Beta")
            .await
            .expect("partner beta");
        for (partner, code, fee, price) in [
            (a.id, "XZ", "per-message", 200),
            (a.id, "JOKE", "monthly", 500),
            (a.id, "FREE", "free", 0),
            (b.id, "OTHER", "per-message", 100),
        ] {
            seed_service(&store, partner, code, fee, price).await;
        }
        (store, a.id)
    });
    World {
        rt,
        store,
        routes: Routes::new(&[
            operator_config("mobile", "138"),
            operator_config("unicom", "130"),
        ]),
        partner,
        _dir: dir,
    }
});

/// A service approved with its terms in force since the epoch on mobile and unicom, as
/// approval leaves it (written directly: the figures target reads terms, it does not
/// test approval).
async fn seed_service(store: &Store, partner: i64, code: &str, fee: &str, price: i64) {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO services (partner_id, code, status, created_at, updated_at)
         VALUES ($1, $2, 'approved', 0, 0) RETURNING id",
    )
    .bind(partner)
    .bind(code)
    .fetch_one(store.pool())
    .await
    .expect("service");
    let (revision,): (i64,) = sqlx::query_as(
        "INSERT INTO service_revisions (service_id, seq, name, description, keywords, fee_type, price_fen,
            operators, monthly_max_messages, number_ext, status, created_at, decided_at)
         VALUES ($1, 1, $2, '', '[]', $3, $4, '[\"mobile\",\"unicom\"]', 31, $5, 'approved', 0, 0)
         RETURNING id",
    )
    .bind(id)
    .bind(code)
    .bind(fee)
    .bind(price)
    .bind(id.to_string())
    .fetch_one(store.pool())
    .await
    .expect("revision");
    sqlx::query("UPDATE services SET live_revision_id = $1 WHERE id = $2")
        .bind(revision)
        .bind(id)
        .execute(store.pool())
        .await
        .expect("live revision");
}

/// The statement figures upload (R-4.2): the partner's JSON body for a closed month,
/// admitted against real records (partner alpha: `XZ` 200 fen a message, `JOKE` 500
/// fen a month, `FREE`; partner beta: `OTHER`). Properties of an admitted upload:
/// - every line is one of the caller's own paid services, on a platform operator,
///   once per service and operator;
/// - counts are in range, and amounts are what the counts could charge: per message
///   exactly `count × 200`, monthly between `count × 1` and `count × 500`.
///
/// A refusal is a 400 or 409 naming why, never a store failure.
pub fn statement_figures(data: &[u8]) {
    let Ok(mut input) = serde_json::from_slice::<FiguresInput>(data) else {
        return;
    };
    let world = &*WORLD;
    let month = Month::new(2026, 8).expect("a month");
    let now = month.end_ms() + 1;
    let admitted = world.rt.block_on(figures::admit(
        &world.store,
        &world.routes,
        world.partner,
        month,
        &mut input,
        now,
    ));
    match admitted {
        Ok(()) => {}
        Err(BillingError::Invalid { .. } | BillingError::Conflict { .. }) => return,
        Err(e) => panic!("an upload failed other than as refused: {e:?}"),
    }
    let mut seen = HashSet::new();
    for line in &input.lines {
        assert!(
            seen.insert((line.service.clone(), line.operator.clone())),
            "a service and operator twice"
        );
        assert!(
            ["mobile", "unicom"].contains(&line.operator.as_str()),
            "operator {:?} admitted",
            line.operator
        );
        assert!((0..=figures::MAX_COUNT).contains(&line.count));
        let (low, high) = match line.service.as_str() {
            "XZ" => (200, 200),
            "JOKE" => (1, 500),
            other => panic!("line of service {other:?} admitted for alpha"),
        };
        assert!(
            (line.count * low..=line.count * high).contains(&line.amount_fen),
            "{} × {low}..{high} admitted as {} fen",
            line.count,
            line.amount_fen
        );
    }
}

/// Long-MO intake and re-assembly (R-2.5) on the real store. The input is a run of
/// `deliver_sm` MOs, each `[source, number, reference, total, seq, flags, length,
/// text…]` (`total` 0: not concatenated; `flags` bit 0: the first copy's session is
/// still up, bit 1: which session). A model of what was accepted is kept. Properties:
/// - a copy is dropped as a redelivery only when the same octets came before;
/// - a message stored complete is made of parts numbered exactly `1..=total`, in
///   order; a part whose number does not fit its total is stored at once, as itself;
/// - a part that reuses an open message's number, or comes to another service number,
///   closes the open message as incomplete with exactly the parts it had;
/// - nothing is lost or made up: the bytes of the MOs stored plus the parts still
///   open are the bytes of the parts accepted.
pub fn long_mo(data: &[u8]) {
    let world = &*WORLD;
    let operator = format!("fuzz{}", INPUTS.fetch_add(1, Ordering::Relaxed));
    let relay = RelayConfig {
        mo_dedup_window_secs: 3600,
        mo_part_window_secs: 3600,
        incomplete_mo: IncompleteMo::Route,
        ..RelayConfig::default()
    };
    // (source, reference, total) of a long MO.
    type Group = (String, u16, u8);
    // (source, number, text, reference/total/seq) of an MO as it came.
    type Delivery = (String, String, String, Option<(u16, u8, u8)>);
    let mut open: BTreeMap<Group, Vec<(u8, String, String)>> = BTreeMap::new();
    let mut fed: HashSet<Delivery> = HashSet::new();
    let (mut accepted_bytes, mut stored_bytes) = (0usize, 0usize);
    let mut rest = data;
    world.rt.block_on(async {
        while let [src, number, reference, total, seq, flags, len, tail @ ..] = rest {
            let n = usize::from(*len).min(tail.len());
            let (octets, after) = tail.split_at(n);
            rest = after;
            let source = ["8613800138000", "8613900139000"][usize::from(src % 2)].to_string();
            let destination = format!("{SHORT_CODE}0{}", number % 3);
            let text = String::from_utf8_lossy(octets).into_owned();
            // What the store keeps of the text (a NUL becomes U+FFFD).
            let kept = intake::storable(&text).into_owned();
            let concat = (*total > 0).then_some(ConcatInfo {
                reference: u16::from(*reference),
                total: *total,
                seq: *seq,
            });
            let pdu = MoPdu {
                source_addr: source.clone(),
                destination_addr: destination.clone(),
                service_type: String::new(),
                data_coding: 8,
                esm_class: 0,
                short_message: octets.to_vec(),
                concat,
                text: text.clone(),
                link_id: None,
            };
            let alive = flags & 1 != 0;
            let session = format!("s{}", (flags >> 1) & 1);
            // Keyed on the decoded text: equal octets decode to equal texts, and the
            // intake also knows a part again by its text.
            let fingerprint = (
                source.clone(),
                destination.clone(),
                text.clone(),
                concat.map(|c| (c.reference, c.total, c.seq)),
            );
            let got = intake::mo(
                &world.store,
                &relay,
                (&operator, &session),
                &move |_: &str| alive,
                &pdu,
            )
            .await
            .expect("MO intake on the fuzz store");
            let copy = !fed.insert(fingerprint);
            if got.duplicate {
                assert!(copy, "a first MO was dropped as a redelivery: {pdu:?}");
                assert!(got.stored.is_empty(), "a redelivery stored something");
                continue;
            }
            accepted_bytes += kept.len();
            let mut stored = Vec::new();
            for record in &got.stored {
                let (missing,): (Option<String>,) =
                    sqlx::query_as("SELECT missing_parts FROM mo_messages WHERE id = $1")
                        .bind(record.id)
                        .fetch_one(world.store.pool())
                        .await
                        .expect("the stored MO");
                stored_bytes += record.text.len();
                stored.push((record.text.clone(), missing));
            }
            let numbered = concat.filter(|c| c.total > 1 && (1..=c.total).contains(&c.seq));
            let Some(c) = numbered else {
                assert_eq!(
                    stored,
                    [(kept.clone(), None)],
                    "a single MO ({concat:?}) not stored at once as itself"
                );
                continue;
            };
            let group = (source.clone(), c.reference, c.total);
            let parts = open.entry(group.clone()).or_default();
            let mut expected = Vec::new();
            if parts
                .iter()
                .any(|(s, _, d)| *s == c.seq || *d != destination)
            {
                let had: String = parts.iter().map(|(_, t, _)| t.as_str()).collect();
                expected.push((had, true));
                parts.clear();
            }
            parts.push((c.seq, kept.clone(), destination.clone()));
            parts.sort_by_key(|(s, _, _)| *s);
            if parts.len() == usize::from(c.total) {
                let all: String = parts.iter().map(|(_, t, _)| t.as_str()).collect();
                let seqs: Vec<u8> = parts.iter().map(|(s, _, _)| *s).collect();
                assert_eq!(seqs, (1..=c.total).collect::<Vec<_>>());
                expected.push((all, false));
                parts.clear();
            }
            let got: Vec<(String, bool)> = stored
                .into_iter()
                .map(|(t, missing)| (t, missing.is_some()))
                .collect();
            assert_eq!(
                got, expected,
                "stored (text, incomplete) after part {}/{} of {group:?}",
                c.seq, c.total
            );
        }
        let open_parts: Vec<(String,)> =
            sqlx::query_as("SELECT text FROM mo_parts WHERE operator = $1")
                .bind(&operator)
                .fetch_all(world.store.pool())
                .await
                .expect("open parts");
        let open_bytes: usize = open_parts.iter().map(|(t,)| t.len()).sum();
        assert_eq!(
            stored_bytes + open_bytes,
            accepted_bytes,
            "stored {stored_bytes} + open {open_bytes} bytes from {accepted_bytes} accepted"
        );
    });
}

/// The runtime of the module upload target, with its own tokio runtime.
struct Upload {
    rt: tokio::runtime::Runtime,
    runtime: Arc<Runtime>,
}

static UPLOAD: LazyLock<Upload> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let limits = RuntimeConfig {
        call_timeout_ms: 200,
        max_concurrent_calls: 4,
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::new(limits, None).expect("the wasmtime runtime"));
    Upload { rt, runtime }
});

/// The module upload validator (R-8.1): the bytes a partner uploads, as the upload
/// route validates them (compile, link against the platform's imports, call
/// `describe`, check its answer). Seeded with real compiled guest components; the
/// fuzzer mutates them. Properties: whatever the bytes, a verdict (never a panic, a
/// hang is libFuzzer's timeout); what is not a component (wrong magic, a core module)
/// is refused before compiling; an admitted one speaks a supported contract version.
pub fn module_upload(data: &[u8]) {
    let upload = &*UPLOAD;
    let header_ok = data.len() >= 8 && &data[..4] == b"\0asm" && data[6..8] == [1, 0];
    let verdict = upload.rt.block_on(crate::modules::validate(
        &upload.runtime,
        data.to_vec(),
        Lane::Local,
    ));
    match verdict {
        Ok((loaded, _description)) => {
            assert!(header_ok, "a non-component was admitted");
            assert!(
                crate::runtime::bindings::SUPPORTED_WIT_VERSIONS
                    .contains(&loaded.wit_version.as_str()),
                "admitted contract version {}",
                loaded.wit_version
            );
        }
        Err(e) => {
            if !header_ok {
                assert!(
                    matches!(
                        e,
                        crate::runtime::ValidationError::NotWasm
                            | crate::runtime::ValidationError::CoreModule
                            | crate::runtime::ValidationError::Invalid(_)
                    ),
                    "a non-component refused late: {e}"
                );
            }
        }
    }
}
