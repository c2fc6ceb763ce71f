//! A statement as documents: JSON for programs, CSV and printable HTML for a
//! finance person who checks every figure by hand. Amounts show in yuan with two
//! decimals (and in fen in JSON and CSV); nothing in them depends on the clock, so
//! the same records give the same bytes.
//!
//! They speak the reader's language (issue 14): every label in Chinese then English
//! (`应收信息费 gross information fee`), the partner's display name beside its login
//! (`乐游 (leyou)`), each service's name, fee type and unit price beside its code,
//! and the count and amount differences (partner − platform) in their own columns
//! beside the differences in basis points.

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
            "应收信息费 gross information fee".into(),
            "sum of settled lines".into(),
            o.gross_fen,
        ),
        (
            "- 代收服务费 collection fee".into(),
            format!("{} x {}", yuan(o.gross_fen), percent(o.collection_bp)),
            o.collection_fen,
        ),
        (
            "- 不均衡通道费 imbalance fee".into(),
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
            "- 坏账 bad debt".into(),
            match o.bad_debt_bp {
                Some(bp) => format!("{} x {}", yuan(o.gross_fen), percent(bp)),
                None => "ratio not reported yet: 0".into(),
            },
            o.bad_debt_fen,
        ),
        (
            "= 实收信息费 actual received fee".into(),
            "gross - collection - imbalance - bad debt".into(),
            o.received_fen,
        ),
        (
            "- 税金 tax".into(),
            format!("{} x {}", yuan(o.received_fen.max(0)), percent(tax_bp)),
            o.tax_fen,
        ),
        (
            "= 可分配收入 distributable income".into(),
            "received - tax".into(),
            o.distributable_fen,
        ),
        (
            "乙方分成 partner share".into(),
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
            "甲方分成 platform share".into(),
            "distributable - partner share".into(),
            o.platform_fen,
        ),
    ]
}

/// The month's totals with their labels (Chinese, then English).
fn totals(s: &Statement) -> [(&'static str, i64); 7] {
    let t = &s.totals;
    [
        ("应收信息费 gross information fee", t.gross_fen),
        ("代收服务费 collection fee", t.collection_fen),
        ("不均衡通道费 imbalance fee", t.imbalance_fen),
        ("坏账 bad debt", t.bad_debt_fen),
        ("实收信息费 actual received fee", t.received_fen),
        ("税金 tax", t.tax_fen),
        ("可分配收入 distributable income", t.distributable_fen),
    ]
}

/// A fee type as readers say it.
fn fee_type(code: &str) -> String {
    match code {
        "free" => "免费 free".into(),
        "per-message" => "按条 per message".into(),
        "monthly" => "包月 monthly".into(),
        other => other.to_string(),
    }
}

/// The partner's figure minus the platform's, when the partner gave one.
fn difference(partner: Option<i64>, platform: i64) -> Option<i64> {
    partner.and_then(|p| p.checked_sub(platform))
}

/// `乐游 (leyou)`: the display name, with the login when they differ.
fn partner_label(s: &Statement) -> String {
    let display = &s.names.partner_display_name;
    if display.is_empty() || *display == s.partner {
        s.partner.clone()
    } else {
        format!("{display} ({})", s.partner)
    }
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
    r(&mut out, &["通道月度结算单 Tongdao monthly statement"]);
    r(
        &mut out,
        &["乙方 partner", &s.names.partner_display_name, &s.partner],
    );
    r(&mut out, &["月份 month", &s.month.to_string()]);
    r(
        &mut out,
        &[
            "结算期 period",
            &format!(
                "{} to {} ({})",
                s.period.from, s.period.until, s.period.time_zone
            ),
        ],
    );
    r(
        &mut out,
        &[
            "状态 status",
            if s.provisional {
                "暂定 provisional"
            } else {
                "最终 final"
            },
        ],
    );
    out.push_str("\r\n");
    r(
        &mut out,
        &[
            "运营商 operator",
            "业务代码 service code",
            "业务名称 service name",
            "计费类型 fee type",
            "单价(分) unit price fen",
            "平台条数 platform count",
            "平台金额(分) platform fen",
            "乙方条数 partner count",
            "乙方金额(分) partner fen",
            "条数差 count difference",
            "条数差(基点) count difference bp",
            "金额差(分) amount difference fen",
            "金额差(基点) amount difference bp",
            "结算依据 settled on",
            "结算条数 settled count",
            "结算金额(分) settled fen",
            "结算金额(元) settled yuan",
        ],
    );
    for o in &s.operators {
        for l in &o.lines {
            let named = s.names.service(&l.service);
            csv_row(
                &mut out,
                &[
                    o.operator.clone(),
                    l.service.clone(),
                    named.map(|n| n.name.clone()).unwrap_or_default(),
                    fee_type(&l.fee_type),
                    opt(named.map(|n| n.unit_price_fen)),
                    l.platform_count.to_string(),
                    l.platform_fen.to_string(),
                    opt(l.partner_count),
                    opt(l.partner_fen),
                    opt(difference(l.partner_count, l.platform_count)),
                    opt(l.count_difference_bp),
                    opt(difference(l.partner_fen, l.platform_fen)),
                    opt(l.amount_difference_bp),
                    if l.on_mean {
                        "双方均值 mean"
                    } else {
                        "平台数据 platform"
                    }
                    .into(),
                    l.settled_count.to_string(),
                    l.settled_fen.to_string(),
                    yuan(l.settled_fen),
                ],
            );
        }
    }
    out.push_str("\r\n");
    r(
        &mut out,
        &[
            "运营商 operator",
            "步骤 step",
            "规则 rule",
            "分 fen",
            "元 yuan",
        ],
    );
    for o in &s.operators {
        for (label, rule, fen) in steps(o, s) {
            csv_row(
                &mut out,
                &[o.operator.clone(), label, rule, fen.to_string(), yuan(fen)],
            );
        }
    }
    for (label, fen) in totals(s) {
        csv_row(
            &mut out,
            &[
                "合计 total".into(),
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
            "分成 split".into(),
            "乙方分成 partner share".into(),
            split_rule(s),
            s.split.partner_fen.to_string(),
            yuan(s.split.partner_fen),
        ],
    );
    csv_row(
        &mut out,
        &[
            "分成 split".into(),
            "甲方分成 platform share".into(),
            "distributable - partner share".into(),
            s.split.platform_fen.to_string(),
            yuan(s.split.platform_fen),
        ],
    );
    out.push_str("\r\n");
    r(
        &mut out,
        &[
            "应付乙方 due to partner",
            "分 fen",
            "元 yuan",
            "结算周期 schedule",
            "到期日 due on",
            "违约起算 breach after",
            "运营商付款日 operator paid on",
            "付款期限 pay by",
            "已付(分) paid fen",
            "未付(分) outstanding fen",
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
                "对账 reconciliation".into(),
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
    let title = format!("结算单 Statement {} {}", esc(&partner_label(s)), s.month);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #999;padding:3px 8px}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
         @media print{{body{{margin:0}}}}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        h,
        "<p>结算期 Period: {} to {} ({}). 状态 Status: <b>{}</b>. 金额单位：元 Amounts in yuan (CNY).</p>",
        s.period.from,
        s.period.until,
        s.period.time_zone,
        if s.provisional {
            "暂定 provisional (a bad-debt ratio is not reported yet)"
        } else {
            "最终 final"
        }
    );
    let _ = writeln!(
        h,
        "<p>Statistics: <a href=\"{0}\">{0}</a></p>",
        esc(&statistics_url(s))
    );
    let _ = writeln!(
        h,
        "<p>条款 Terms from {}: T1 {}, T2 {}, tier mode {}, tax {}, discrepancy threshold {}, payment within {} working days.</p>",
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
            "<h2>运营商 Operator {} (terms from {})</h2>",
            esc(&o.operator),
            o.terms_from
        );
        h.push_str("<table>\n<tr><th>业务代码 service code</th><th>业务名称 service name</th><th>计费类型 fee type</th><th>单价 unit price</th><th>平台条数 platform count</th><th>平台金额 platform</th><th>乙方条数 partner count</th><th>乙方金额 partner</th><th>条数差 count difference</th><th>金额差 amount difference</th><th>金额差率 amount difference %</th><th>结算依据 settled on</th><th>结算金额 settled</th></tr>\n");
        for l in &o.lines {
            let named = s.names.service(&l.service);
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&l.service),
                esc(&named.map(|n| n.name.clone()).unwrap_or_default()),
                esc(&fee_type(&l.fee_type)),
                named.map(|n| yuan(n.unit_price_fen)).unwrap_or_default(),
                l.platform_count,
                yuan(l.platform_fen),
                opt(l.partner_count),
                l.partner_fen.map(yuan).unwrap_or_default(),
                opt(difference(l.partner_count, l.platform_count)),
                difference(l.partner_fen, l.platform_fen)
                    .map(yuan)
                    .unwrap_or_default(),
                match (l.partner_fen, l.amount_difference_bp) {
                    (Some(_), Some(bp)) => percent(bp),
                    (Some(_), None) => "n/a".into(),
                    _ => String::new(),
                },
                if l.on_mean {
                    "双方均值 mean of both"
                } else {
                    "平台数据 platform"
                },
                yuan(l.settled_fen)
            );
        }
        h.push_str(
            "</table>\n<table>\n<tr><th>步骤 step</th><th>规则 rule</th><th>元 yuan</th></tr>\n",
        );
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
    h.push_str("<h2>本月合计 Month</h2>\n<table>\n");
    for (label, fen) in totals(s).into_iter().chain([
        ("乙方分成 partner share", s.split.partner_fen),
        ("甲方分成 platform share", s.split.platform_fen),
    ]) {
        let _ = writeln!(
            h,
            "<tr><td>{label}</td><td class=\"n\">{}</td></tr>",
            yuan(fen)
        );
    }
    let _ = writeln!(h, "</table>\n<p>分成 Split: {}.</p>", esc(&split_rule(s)));
    h.push_str("<h2>应付乙方 Due to the partner</h2>\n<table>\n<tr><th>运营商 operator</th><th>金额 amount</th><th>结算周期 schedule</th><th>到期日 due on</th><th>违约起算 breach after</th><th>运营商付款日 operator paid on</th><th>付款期限 pay by</th><th>已付 paid</th><th>未付 outstanding</th></tr>\n");
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
            "<p>对账 Reconciled with the partner's figures #{}: {} line(s) settled on the mean of both{}{}.</p>",
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
