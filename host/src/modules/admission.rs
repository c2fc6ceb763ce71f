//! Admission of an uploaded version (issue 17 item 1; ): before a
//! version may be activated, it runs a **conformance corpus** in the sandbox, with
//! nothing stored (a [`DryRun`] that sees no stored data), and every text it
//! produces goes through the content policy. The [`AdmissionReport`] (a pass or
//! fail per check, figures per call, policy hits with the text that hit) is stored
//! with the version.
//!
//! The corpus, for each service code the module declares:
//! - `bulletin` for today and fixed dates that break naive date code (a month end,
//!   a leap day, Spring Festival eve, the year end, National Day);
//! - `on-subscribe`, then `on-mo` with typical and edge-case texts (empty, very
//!   long, emoji, characters only GBK has, a TD-like word, digits, a quiz answer),
//!   and one `on-mo` per variant key the bulletins produced, from a subscriber
//!   whose attribute has that value; then `on-unsubscribe`.
//!
//! An export that faults is not called again in the corpus (a hostile loop costs
//! one CPU budget per export, not one per input); its other inputs are listed as
//! `skipped`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::quota::RegistryConfig;
use crate::compliance::Compliance;
use crate::partners::Partner;
use crate::runtime::limits::CallErrorBody;
use crate::runtime::{
    BulletinContent, BulletinRequest, CallError, CallOutcome, DryRun, LoadedModule, MoMessage,
    ModuleDescription, PartnerScope, Runtime, SubscriptionChange,
};
use crate::store::{Store, now_ms};

/// Whether a failed admission blocks activation (`[modules] admission`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AdmissionMode {
    /// A version that fails admission cannot be activated (the default).
    #[default]
    Enforce,
    /// The report is made and stored, and never blocks (for fixtures that test the
    /// sandbox's containment of hostile code at run time).
    Report,
}

/// Fixed dates of the corpus, each with why it is there.
const DATES: [(&str, &str); 5] = [
    ("2027-01-31", "month end"),
    ("2028-02-29", "leap day"),
    ("2027-02-05", "Spring Festival eve (除夕)"),
    ("2026-12-31", "year end"),
    ("2026-10-01", "National Day"),
];

/// Typical and edge-case MO texts, each with a label for the report.
fn mo_texts() -> Vec<(String, &'static str)> {
    vec![
        ("你好".into(), "typical greeting"),
        (String::new(), "empty"),
        ("长".repeat(700), "very long (700 characters)"),
        ("😀👍🎉 🇨🇳".into(), "emoji"),
        ("喆堃镕珺昇".into(), "GBK-only characters"),
        ("T D 一下".into(), "TD-like word"),
        ("13800138000".into(), "digits"),
        ("A".into(), "one letter (an answer)"),
        ("?".into(), "punctuation"),
        ("今天运势怎么样".into(), "a question"),
    ]
}

/// At most this many variant keys get an MO of their own.
const MAX_KEYED_MOS: usize = 16;

/// One check of the report.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdmissionCheck {
    /// `contract`, `faults`, `content-policy`, `cpu-time`.
    pub name: String,
    pub passed: bool,
    /// What was measured against what limit.
    pub detail: String,
}

/// One call of the corpus.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CorpusCall {
    /// `bulletin`, `on-mo`, `on-subscribe`, `on-unsubscribe`.
    pub export: String,
    /// The input, in words (`2028-02-29 leap day`, `emoji`, `sign=aries`).
    pub input: String,
    /// `ok`, `silent` (no text), `module-error:<kind>`, a fault kind (`trap`,
    /// `cpu-limit`, …) or `skipped` (its export faulted before).
    pub outcome: String,
    /// CPU time of the module's code, in microseconds.
    pub cpu_us: u64,
    /// Wall time of the call, in microseconds.
    pub wall_us: u64,
    /// Bytes of every text the call produced.
    pub output_bytes: usize,
    /// Texts it produced (a keyed bulletin: each variant and the fallback).
    pub texts: usize,
}

/// A produced text the content policy refused.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyHit {
    pub export: String,
    pub input: String,
    /// The policy rule (`prohibited-word`, `link`, `too-long`, …).
    pub rule: String,
    pub detail: String,
    /// The text that hit, as the module wrote it.
    pub text: String,
}

/// Figures over the whole corpus.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdmissionFigures {
    /// Calls made (skipped ones not counted).
    pub calls: usize,
    pub skipped: usize,
    /// Calls that ended in a fault (trap, limit).
    pub faults: usize,
    /// Calls that returned a `module-error` on purpose (not a failure).
    pub module_errors: usize,
    pub texts: usize,
    /// Calls with at least one text the policy refused.
    pub violating_calls: usize,
    /// `violating_calls` per thousand calls.
    pub violation_permille: u32,
    /// `faults` per thousand calls.
    pub fault_permille: u32,
    pub cpu_us_p50: u64,
    pub cpu_us_max: u64,
    pub wall_us_max: u64,
    pub output_bytes_max: usize,
    /// Wall time of the whole admission, in milliseconds.
    pub took_ms: u64,
}

/// The limits the verdict used (`[modules] admission_*`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdmissionThresholds {
    pub max_violation_permille: u32,
    pub max_fault_permille: u32,
    pub max_cpu_ms: u64,
    /// `enforce` or `report`.
    pub mode: String,
}

/// The admission report of one version: stored with it, returned by the upload
/// and by `GET /v1/modules/{name}/versions/{v}/admission`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdmissionReport {
    /// Every check passed; only then may the version be activated (in `enforce`).
    pub passed: bool,
    /// The contract version the component was built against.
    pub contract: String,
    pub checks: Vec<AdmissionCheck>,
    pub figures: AdmissionFigures,
    pub thresholds: AdmissionThresholds,
    pub policy_hits: Vec<PolicyHit>,
    pub calls: Vec<CorpusCall>,
    /// When it ran, RFC 3339 UTC.
    #[serde(with = "crate::api::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
}

/// What the admission needs from the registry.
pub(super) struct Admission<'a> {
    pub runtime: &'a Runtime,
    pub store: &'a Store,
    pub compliance: &'a Compliance,
    pub config: &'a RegistryConfig,
}

enum Input {
    Bulletin(BulletinRequest),
    Mo(MoMessage),
    Subscription(SubscriptionChange),
}

impl Input {
    fn export(&self) -> &'static str {
        match self {
            Self::Bulletin(_) => "bulletin",
            Self::Mo(_) => "on-mo",
            Self::Subscription(c) if c.joined => "on-subscribe",
            Self::Subscription(_) => "on-unsubscribe",
        }
    }
}

/// What one corpus call produced, before the policy.
struct Ran {
    outcome: String,
    texts: Vec<String>,
    bulletin: Option<BulletinContent>,
    cpu: Duration,
    wall: Duration,
    fault: bool,
}

fn ran<T>(outcome: CallOutcome<T>, texts: impl FnOnce(&T) -> Vec<String>) -> (Ran, Option<T>) {
    let (label, texts, value, fault) = match outcome.result {
        Ok(value) => {
            let texts = texts(&value);
            let label = if texts.is_empty() { "silent" } else { "ok" };
            (label.to_string(), texts, Some(value), false)
        }
        // A business error returned on purpose is an answer, not a failure.
        Err(CallError::Module { kind, .. }) => {
            (format!("module-error:{kind}"), Vec::new(), None, false)
        }
        // A fault, or the host could not run it (queue full, shutting down): the
        // corpus is incomplete either way, so it counts.
        Err(error) => (
            CallErrorBody::from(&error).kind.to_string(),
            Vec::new(),
            None,
            true,
        ),
    };
    (
        Ran {
            outcome: label,
            texts,
            bulletin: None,
            cpu: outcome.cpu,
            wall: outcome.wall,
            fault,
        },
        value,
    )
}

impl Admission<'_> {
    /// Run the corpus on `module` for `partner` and judge it.
    pub(super) async fn run(
        &self,
        partner: &Partner,
        module: &LoadedModule,
        description: &ModuleDescription,
    ) -> AdmissionReport {
        let started = Instant::now();
        let dry = DryRun::isolated().with_subscriber("admission-1", []);
        let services = if description.services.is_empty() {
            vec!["TEST".to_string()]
        } else {
            description.services.clone()
        };
        let mut calls: Vec<CorpusCall> = Vec::new();
        let mut hits: Vec<PolicyHit> = Vec::new();
        let mut faulted: Vec<&'static str> = Vec::new();
        let mut violating = 0usize;
        let operators: Vec<String> = self.compliance.config().operators.keys().cloned().collect();

        for service in &services {
            // Bulletins first: their variant keys pick the keyed MOs.
            let mut dates: Vec<(String, String)> = vec![(crate::clock::today(), "today".into())];
            dates.extend(
                DATES
                    .iter()
                    .map(|(d, why)| ((*d).to_string(), (*why).to_string())),
            );
            let mut keys: Vec<(String, String)> = Vec::new();
            let mut inputs: Vec<(Input, String)> = dates
                .into_iter()
                .map(|(date, why)| {
                    (
                        Input::Bulletin(BulletinRequest {
                            service: service.clone(),
                            push_id: format!("admission-{date}"),
                            date: date.clone(),
                        }),
                        format!("{date} {why}"),
                    )
                })
                .collect();
            inputs.push((
                Input::Subscription(SubscriptionChange {
                    subscriber: "admission-1".into(),
                    service: service.clone(),
                    joined: true,
                }),
                "admission-1".into(),
            ));
            let mut pending: std::collections::VecDeque<(Input, String)> = inputs.into();
            let mut mos_added = false;
            while let Some((input, label)) = pending.pop_front() {
                let export = input.export();
                if faulted.contains(&export) {
                    calls.push(CorpusCall {
                        export: export.into(),
                        input: label,
                        outcome: "skipped".into(),
                        cpu_us: 0,
                        wall_us: 0,
                        output_bytes: 0,
                        texts: 0,
                    });
                } else {
                    let result = self.call(partner, module, &dry, &input).await;
                    if let Some(BulletinContent::Keyed {
                        attribute,
                        variants,
                        ..
                    }) = &result.bulletin
                    {
                        for (key, _) in variants {
                            let pair = (attribute.clone(), key.clone());
                            if !keys.contains(&pair) {
                                keys.push(pair);
                            }
                        }
                    }
                    if result.fault {
                        faulted.push(export);
                    }
                    let mut hit = false;
                    for text in &result.texts {
                        if let Err(v) =
                            self.compliance
                                .judge_text(text, &partner.display_name, &operators)
                        {
                            hit = true;
                            hits.push(PolicyHit {
                                export: export.into(),
                                input: label.clone(),
                                rule: v.rule.into(),
                                detail: v.detail,
                                text: text.clone(),
                            });
                        }
                    }
                    violating += usize::from(hit);
                    calls.push(CorpusCall {
                        export: export.into(),
                        input: label,
                        outcome: result.outcome,
                        cpu_us: micros(result.cpu),
                        wall_us: micros(result.wall),
                        output_bytes: result.texts.iter().map(String::len).sum(),
                        texts: result.texts.len(),
                    });
                }
                // After the subscription: the messages, then the leaving.
                if !mos_added && matches!(input, Input::Subscription(ref c) if c.joined) {
                    mos_added = true;
                    let received_at_ms = now_ms();
                    for (text, why) in mo_texts() {
                        pending.push_back((
                            Input::Mo(MoMessage {
                                subscriber: "admission-1".into(),
                                service: service.clone(),
                                text,
                                received_at_ms,
                            }),
                            why.to_string(),
                        ));
                    }
                    for (i, (attribute, key)) in keys.iter().take(MAX_KEYED_MOS).enumerate() {
                        let subscriber = format!("admission-k{i}");
                        dry.add_subscriber(&subscriber, [(attribute.as_str(), key.as_str())]);
                        pending.push_back((
                            Input::Mo(MoMessage {
                                subscriber,
                                service: service.clone(),
                                text: "今天".into(),
                                received_at_ms,
                            }),
                            format!("{attribute}={key}"),
                        ));
                    }
                    pending.push_back((
                        Input::Subscription(SubscriptionChange {
                            subscriber: "admission-1".into(),
                            service: service.clone(),
                            joined: false,
                        }),
                        "admission-1".into(),
                    ));
                }
            }
        }
        let mut report = self.judge(calls, hits, violating, &module.wit_version);
        report.figures.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        report
    }

    async fn call(
        &self,
        partner: &Partner,
        module: &LoadedModule,
        dry: &DryRun,
        input: &Input,
    ) -> Ran {
        let scope = PartnerScope {
            store: self.store.clone(),
            partner_id: partner.id,
            dry: Some(dry.clone()),
        };
        match input {
            Input::Bulletin(request) => {
                let outcome = self.runtime.bulletin(module, scope, request).await;
                let (mut ran, content) = ran(outcome, |b| b.texts().map(str::to_string).collect());
                ran.bulletin = content;
                ran
            }
            Input::Mo(message) => {
                let outcome = self.runtime.on_mo(module, scope, message).await;
                ran(outcome, |r| r.iter().cloned().collect()).0
            }
            Input::Subscription(change) => {
                let outcome = self.runtime.on_subscription(module, scope, change).await;
                ran(outcome, |r| r.iter().cloned().collect()).0
            }
        }
    }

    fn judge(
        &self,
        calls: Vec<CorpusCall>,
        policy_hits: Vec<PolicyHit>,
        violating_calls: usize,
        contract: &str,
    ) -> AdmissionReport {
        let c = self.config;
        let ran: Vec<&CorpusCall> = calls.iter().filter(|c| c.outcome != "skipped").collect();
        let faults = ran
            .iter()
            .filter(|c| {
                !matches!(c.outcome.as_str(), "ok" | "silent")
                    && !c.outcome.starts_with("module-error:")
            })
            .count();
        let mut cpu: Vec<u64> = ran.iter().map(|c| c.cpu_us).collect();
        cpu.sort_unstable();
        let permille = |n: usize| -> u32 {
            if ran.is_empty() {
                return 0;
            }
            u32::try_from(n.saturating_mul(1000) / ran.len()).unwrap_or(u32::MAX)
        };
        let figures = AdmissionFigures {
            calls: ran.len(),
            skipped: calls.len() - ran.len(),
            faults,
            module_errors: ran
                .iter()
                .filter(|c| c.outcome.starts_with("module-error:"))
                .count(),
            texts: ran.iter().map(|c| c.texts).sum(),
            violating_calls,
            violation_permille: permille(violating_calls),
            fault_permille: permille(faults),
            cpu_us_p50: cpu.get(cpu.len() / 2).copied().unwrap_or(0),
            cpu_us_max: cpu.last().copied().unwrap_or(0),
            wall_us_max: ran.iter().map(|c| c.wall_us).max().unwrap_or(0),
            output_bytes_max: ran.iter().map(|c| c.output_bytes).max().unwrap_or(0),
            took_ms: 0,
        };
        // A share over the limit fails; with a limit of 0, any hit fails.
        let within =
            |share: u32, count: usize, limit: u32| count == 0 || (limit > 0 && share <= limit);
        let checks = vec![
            AdmissionCheck {
                name: "contract".into(),
                passed: true,
                detail: format!(
                    "built against tongdao:partner@{contract}, which this platform serves"
                ),
            },
            AdmissionCheck {
                name: "faults".into(),
                passed: within(
                    figures.fault_permille,
                    faults,
                    c.admission_max_fault_permille,
                ),
                detail: format!(
                    "{faults} of {} calls faulted ({}‰; at most {}‰, [modules] admission_max_fault_permille){}",
                    figures.calls,
                    figures.fault_permille,
                    c.admission_max_fault_permille,
                    if figures.skipped > 0 {
                        format!(
                            "; {} calls skipped after their export faulted",
                            figures.skipped
                        )
                    } else {
                        String::new()
                    }
                ),
            },
            AdmissionCheck {
                name: "content-policy".into(),
                passed: within(
                    figures.violation_permille,
                    violating_calls,
                    c.admission_max_violation_permille,
                ),
                detail: format!(
                    "{violating_calls} of {} calls wrote a text the content policy refuses ({}‰; at most {}‰, [modules] admission_max_violation_permille)",
                    figures.calls, figures.violation_permille, c.admission_max_violation_permille
                ),
            },
            AdmissionCheck {
                name: "cpu-time".into(),
                passed: figures.cpu_us_max <= c.admission_max_cpu_ms.saturating_mul(1000),
                detail: format!(
                    "the longest call used {} µs of CPU (median {} µs; at most {} ms, [modules] admission_max_cpu_ms)",
                    figures.cpu_us_max, figures.cpu_us_p50, c.admission_max_cpu_ms
                ),
            },
        ];
        AdmissionReport {
            passed: checks.iter().all(|c| c.passed),
            contract: contract.to_string(),
            checks,
            figures,
            thresholds: AdmissionThresholds {
                max_violation_permille: c.admission_max_violation_permille,
                max_fault_permille: c.admission_max_fault_permille,
                max_cpu_ms: c.admission_max_cpu_ms,
                mode: match c.admission {
                    AdmissionMode::Enforce => "enforce".into(),
                    AdmissionMode::Report => "report".into(),
                },
            },
            policy_hits,
            calls,
            at: now_ms(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
