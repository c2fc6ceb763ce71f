//! A statement as documents: JSON for programs, CSV and printable HTML for a
//! finance person who checks every figure by hand. Amounts show in yuan with two
//! decimals (and in fen in JSON and CSV); nothing in them depends on the clock, so
//! the same records give the same bytes.

use std::fmt::Write as _;

use super::statement::Statement;
use crate::billing::money::{percent, yuan};

/// The formats a statement is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Html,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "html" => Some(Self::Html),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Html => "text/html; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Html => "html",
        }
    }
}

/// Render in one format.
pub fn render(statement: &Statement, format: Format) -> String {
    match format {
        Format::Json => json(statement),
        Format::Csv => csv(statement),
        Format::Html => html(statement),
    }
}

pub fn json(statement: &Statement) -> String {
    let mut out = serde_json::to_string_pretty(statement).unwrap_or_default();
    out.push('\n');
    // The statistics the statement was computed from (issue 15: MT and MO per operator).
    out.replacen(
        '{',
        &format!("{{\n  \"statistics\": \"{}\",", statistics_url(statement)),
        1,
    )
}

/// `GET /v1/stats` of the statement's month per operator: the MT and MO counts
/// behind its imbalance fee, and the revenue behind its lines.
pub fn statistics_url(s: &Statement) -> String {
    format!("/v1/stats?granularity=month&from={m}&to={m}", m = s.month)
}

/// The steps of one operator's computation: (label, rule, fen).
fn steps(o: &super::statement::OperatorStatement, s: &Statement) -> Vec<(String, String, i64)> {
    let tax_bp = s.terms.tax_bp;
    vec![
        (
            "gross information fee".into(),
            "sum of settled lines".into(),
            o.gross_fen,
        ),
        (
            "- collection fee".into(),
            format!("{} x {}", yuan(o.gross_fen), percent(o.collection_bp)),
            o.collection_fen,
        ),
        (
            "- imbalance fee".into(),
            format!(
                "max(0, {} MT - {} balanced [{} MO at {} MT:MO]) = {} x {} fen",
                o.mt_count,
                o.balanced_mt,
                o.mo_count,
                o.balance,
                o.imbalanced_mt,
                o.imbalance_rate_fen
            ),
            o.imbalance_fen,
        ),
        (
            "- bad debt".into(),
            match o.bad_debt_bp {
                Some(bp) => format!("{} x {}", yuan(o.gross_fen), percent(bp)),
                None => "ratio not reported yet: 0".into(),
            },
            o.bad_debt_fen,
        ),
        (
            "= actual received fee".into(),
            "gross - collection - imbalance - bad debt".into(),
            o.received_fen,
        ),
        (
            "- tax".into(),
            format!("{} x {}", yuan(o.received_fen.max(0)), percent(tax_bp)),
            o.tax_fen,
        ),
        (
            "= distributable income".into(),
            "received - tax".into(),
            o.distributable_fen,
        ),
        (
            "partner share".into(),
            format!(
                "{} x {} / {} (month's share by distributable income, largest remainder)",
                yuan(s.split.partner_fen),
                yuan(o.distributable_fen.max(0)),
                // The weights' sum, in i128: positive parts can add up past i64.
                yuan(
                    s.operators
                        .iter()
                        .map(|x| i128::from(x.distributable_fen.max(0)))
                        .sum::<i128>()
                )
            ),
            o.partner_fen,
        ),
        (
            "platform share".into(),
            "distributable - partner share".into(),
            o.platform_fen,
        ),
    ]
}

fn split_rule(s: &Statement) -> String {
    let sp = &s.split;
    let mode = match sp.tier_mode {
        crate::billing::terms::TierMode::Whole => "whole amount at the tier's rates",
        crate::billing::terms::TierMode::Marginal => "each band at its tier's rates",
    };
    format!(
        "tier {} (T1 {}, T2 {}); {mode}; partner {} / platform {}",
        sp.tier,
        yuan(sp.t1_fen),
        yuan(sp.t2_fen),
        percent(sp.partner_bp),
        percent(sp.platform_bp)
    )
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(out: &mut String, fields: &[String]) {
    let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

fn opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// CSV with a UTF-8 byte-order mark, so spreadsheet programs read Chinese service
/// names right; lines end in CRLF (RFC 4180).
pub fn csv(s: &Statement) -> String {
    let mut out = String::from("\u{feff}");
    let r = |out: &mut String, f: &[&str]| {
        csv_row(out, &f.iter().map(|x| (*x).to_string()).collect::<Vec<_>>())
    };
    r(&mut out, &["Tongdao monthly statement"]);
    r(&mut out, &["partner", &s.partner]);
    r(&mut out, &["month", &s.month.to_string()]);
    r(
        &mut out,
        &[
            "period",
            &format!(
                "{} to {} ({})",
                s.period.from, s.period.until, s.period.time_zone
            ),
        ],
    );
    r(
        &mut out,
        &[
            "status",
            if s.provisional {
                "provisional"
            } else {
                "final"
            },
        ],
    );
    out.push_str("\r\n");
    r(
        &mut out,
        &[
            "operator",
            "service",
            "fee type",
            "platform count",
            "platform fen",
            "partner count",
            "partner fen",
            "count difference bp",
            "amount difference bp",
            "settled on",
            "settled count",
            "settled fen",
            "settled yuan",
        ],
    );
    for o in &s.operators {
        for l in &o.lines {
            csv_row(
                &mut out,
                &[
                    o.operator.clone(),
                    l.service.clone(),
                    l.fee_type.clone(),
                    l.platform_count.to_string(),
                    l.platform_fen.to_string(),
                    opt(l.partner_count),
                    opt(l.partner_fen),
                    opt(l.count_difference_bp),
                    opt(l.amount_difference_bp),
                    if l.on_mean { "mean" } else { "platform" }.into(),
                    l.settled_count.to_string(),
                    l.settled_fen.to_string(),
                    yuan(l.settled_fen),
                ],
            );
        }
    }
    out.push_str("\r\n");
    r(&mut out, &["operator", "step", "rule", "fen", "yuan"]);
    for o in &s.operators {
        for (label, rule, fen) in steps(o, s) {
            csv_row(
                &mut out,
                &[o.operator.clone(), label, rule, fen.to_string(), yuan(fen)],
            );
        }
    }
    let t = &s.totals;
    for (label, fen) in [
        ("gross information fee", t.gross_fen),
        ("collection fee", t.collection_fen),
        ("imbalance fee", t.imbalance_fen),
        ("bad debt", t.bad_debt_fen),
        ("actual received fee", t.received_fen),
        ("tax", t.tax_fen),
        ("distributable income", t.distributable_fen),
    ] {
        csv_row(
            &mut out,
            &[
                "total".into(),
                label.into(),
                String::new(),
                fen.to_string(),
                yuan(fen),
            ],
        );
    }
    csv_row(
        &mut out,
        &[
            "split".into(),
            "partner share".into(),
            split_rule(s),
            s.split.partner_fen.to_string(),
            yuan(s.split.partner_fen),
        ],
    );
    csv_row(
        &mut out,
        &[
            "split".into(),
            "platform share".into(),
            "distributable - partner share".into(),
            s.split.platform_fen.to_string(),
            yuan(s.split.platform_fen),
        ],
    );
    out.push_str("\r\n");
    r(
        &mut out,
        &[
            "due to partner",
            "fen",
            "yuan",
            "schedule",
            "due on",
            "breach after",
            "operator paid on",
            "pay by",
            "paid fen",
            "outstanding fen",
        ],
    );
    for d in &s.due {
        csv_row(
            &mut out,
            &[
                d.operator.clone(),
                d.amount_fen.to_string(),
                yuan(d.amount_fen),
                d.schedule.to_string(),
                d.due_on.clone(),
                d.breach_after.clone(),
                d.operator_paid_on.clone().unwrap_or_default(),
                d.pay_by.clone().unwrap_or_default(),
                d.paid_fen.to_string(),
                d.outstanding_fen.to_string(),
            ],
        );
    }
    if let Some(rec) = &s.reconciliation {
        out.push_str("\r\n");
        csv_row(
            &mut out,
            &[
                "reconciliation".into(),
                format!("partner figures #{}", rec.figures_id),
                format!("{} line(s) settled on the mean", rec.lines_on_mean),
                rec.case_id
                    .map(|c| format!("case #{c}"))
                    .unwrap_or_default(),
                rec.case_status.clone().unwrap_or_default(),
            ],
        );
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn html(s: &Statement) -> String {
    let mut h = String::new();
    let title = format!("Statement {} {}", esc(&s.partner), s.month);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #999;padding:3px 8px}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
         @media print{{body{{margin:0}}}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        h,
        "<p>Period: {} to {} ({}). Status: <b>{}</b>. Amounts in yuan (CNY).</p>",
        s.period.from,
        s.period.until,
        s.period.time_zone,
        if s.provisional {
            "provisional (a bad-debt ratio is not reported yet)"
        } else {
            "final"
        }
    );
    let _ = writeln!(
        h,
        "<p>Statistics: <a href=\"{0}\">{0}</a></p>",
        esc(&statistics_url(s))
    );
    let _ = writeln!(
        h,
        "<p>Terms from {}: T1 {}, T2 {}, tier mode {}, tax {}, discrepancy threshold {}, payment within {} working days.</p>",
        s.terms.effective_from,
        yuan(s.terms.t1_fen),
        yuan(s.terms.t2_fen),
        match s.terms.tier_mode {
            crate::billing::terms::TierMode::Whole => "whole",
            crate::billing::terms::TierMode::Marginal => "marginal",
        },
        percent(s.terms.tax_bp),
        percent(s.terms.discrepancy_bp),
        s.terms.payment_days
    );
    for o in &s.operators {
        let _ = writeln!(
            h,
            "<h2>Operator {} (terms from {})</h2>",
            esc(&o.operator),
            o.terms_from
        );
        h.push_str("<table>\n<tr><th>service</th><th>fee type</th><th>platform count</th><th>platform</th><th>partner count</th><th>partner</th><th>difference</th><th>settled on</th><th>settled</th></tr>\n");
        for l in &o.lines {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&l.service),
                esc(&l.fee_type),
                l.platform_count,
                yuan(l.platform_fen),
                opt(l.partner_count),
                l.partner_fen.map(yuan).unwrap_or_default(),
                match (l.partner_fen, l.amount_difference_bp) {
                    (Some(_), Some(bp)) => percent(bp),
                    (Some(_), None) => "n/a".into(),
                    _ => String::new(),
                },
                if l.on_mean {
                    "mean of both"
                } else {
                    "platform"
                },
                yuan(l.settled_fen)
            );
        }
        h.push_str("</table>\n<table>\n<tr><th>step</th><th>rule</th><th>yuan</th></tr>\n");
        for (label, rule, fen) in steps(o, s) {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&label),
                esc(&rule),
                yuan(fen)
            );
        }
        h.push_str("</table>\n");
    }
    let t = &s.totals;
    h.push_str("<h2>Month</h2>\n<table>\n");
    for (label, fen) in [
        ("gross information fee", t.gross_fen),
        ("collection fee", t.collection_fen),
        ("imbalance fee", t.imbalance_fen),
        ("bad debt", t.bad_debt_fen),
        ("actual received fee", t.received_fen),
        ("tax", t.tax_fen),
        ("distributable income", t.distributable_fen),
        ("partner share", s.split.partner_fen),
        ("platform share", s.split.platform_fen),
    ] {
        let _ = writeln!(
            h,
            "<tr><td>{label}</td><td class=\"n\">{}</td></tr>",
            yuan(fen)
        );
    }
    let _ = writeln!(h, "</table>\n<p>Split: {}.</p>", esc(&split_rule(s)));
    h.push_str("<h2>Due to the partner</h2>\n<table>\n<tr><th>operator</th><th>amount</th><th>schedule</th><th>due on</th><th>breach after</th><th>operator paid on</th><th>pay by</th><th>paid</th><th>outstanding</th></tr>\n");
    for d in &s.due {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&d.operator),
            yuan(d.amount_fen),
            d.schedule,
            d.due_on,
            d.breach_after,
            d.operator_paid_on.as_deref().unwrap_or(""),
            d.pay_by.as_deref().unwrap_or(""),
            yuan(d.paid_fen),
            yuan(d.outstanding_fen)
        );
    }
    h.push_str("</table>\n");
    if let Some(rec) = &s.reconciliation {
        let _ = writeln!(
            h,
            "<p>Reconciled with the partner's figures #{}: {} line(s) settled on the mean of both{}{}.</p>",
            rec.figures_id,
            rec.lines_on_mean,
            rec.case_id
                .map(|c| format!("; discrepancy case #{c}"))
                .unwrap_or_default(),
            rec.case_status
                .as_deref()
                .map(|st| format!(" ({})", esc(st)))
                .unwrap_or_default()
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}
