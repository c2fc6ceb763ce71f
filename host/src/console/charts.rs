//! Charts as inline SVG drawn on the server: no chart script in the browser.
//! Values are integers (counts, fen, basis points); only pixel positions are
//! computed, in integer arithmetic.

use maud::{Markup, html};

const WIDTH: i64 = 560;
const HEIGHT: i64 = 180;
const LEFT: i64 = 56;
const BOTTOM: i64 = 22;
const TOP: i64 = 10;

/// How a chart draws its points.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bars,
    Line,
}

/// A chart of `points` (`YYYY-MM-DD`, value) with `label` formatting the axis
/// values; `id` names the `<svg>` for tests and screenshots.
pub fn chart(
    id: &str,
    title: &str,
    kind: Kind,
    points: &[(String, i64)],
    color: &str,
    label: impl Fn(i64) -> String,
) -> Markup {
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = i64::try_from(points.len()).unwrap_or(1).max(1);
    let plot_w = WIDTH - LEFT - 8;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / n;
    let y = |v: i64| TOP + plot_h - v.clamp(0, max).saturating_mul(plot_h) / max;
    let x = |i: i64| LEFT + i * step + step / 2;
    let line: String = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| format!("{},{}", x(i64::try_from(i).unwrap_or(0)), y(*v)))
        .collect::<Vec<_>>()
        .join(" ");
    let total = points.last().map(|(_, v)| *v).unwrap_or(0);
    html! {
        div.card.chart {
            h2 { (title) }
            svg id=(id) viewBox={"0 0 " (WIDTH) " " (HEIGHT)} width="100%" role="img" aria-label=(title) {
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) stroke="#b9c4ce" {}
                line x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH - 8) y2=(TOP + plot_h) stroke="#b9c4ce" {}
                text x=(LEFT - 4) y=(TOP + 8) text-anchor="end" { (label(max)) }
                text x=(LEFT - 4) y=(TOP + plot_h) text-anchor="end" { (label(0)) }
                line x1=(LEFT) y1=(TOP + plot_h / 2) x2=(WIDTH - 8) y2=(TOP + plot_h / 2) stroke="#eef2f5" {}
                @match kind {
                    Kind::Bars => {
                        @for (i, (day, v)) in points.iter().enumerate() {
                            @let i = i64::try_from(i).unwrap_or(0);
                            rect x=(LEFT + i * step + 2) y=(y(*v)) width=((step - 4).max(1)) height=(TOP + plot_h - y(*v)) fill=(color) {
                                title { (day) ": " (label(*v)) }
                            }
                        }
                    }
                    Kind::Line => {
                        polyline points=(line) fill="none" stroke=(color) stroke-width="2" {}
                        @for (i, (day, v)) in points.iter().enumerate() {
                            circle cx=(x(i64::try_from(i).unwrap_or(0))) cy=(y(*v)) r="3" fill=(color) {
                                title { (day) ": " (label(*v)) }
                            }
                        }
                    }
                }
                @for (i, (day, _)) in points.iter().enumerate() {
                    @let i = i64::try_from(i).unwrap_or(0);
                    @if i % 2 == (n - 1) % 2 {
                        text x=(x(i)) y=(HEIGHT - 6) text-anchor="middle" { (day.get(5..).unwrap_or(day)) }
                    }
                }
            }
            p.muted { (points.last().map(|(d, _)| d.as_str()).unwrap_or("")) ": " b { (label(total)) } }
        }
    }
}

/// Basis points as a percentage with one decimal (`9876` → `98.8%`).
pub fn percent(bp: i64) -> String {
    let tenths = bp.saturating_add(5) / 10;
    format!("{}.{}%", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_every_point_and_label_the_axis() {
        let points: Vec<(String, i64)> = (1..=14)
            .map(|d| (format!("2026-11-{d:02}"), d * 10))
            .collect();
        let svg = chart("c", "t", Kind::Bars, &points, "#123", |v| v.to_string()).into_string();
        assert_eq!(svg.matches("<rect").count(), 14);
        assert!(svg.contains("11-14"));
        assert!(svg.contains(">140<"));
        let svg = chart("c", "t", Kind::Line, &[], "#123", |v| v.to_string()).into_string();
        assert!(svg.contains("<svg"));
        assert_eq!(percent(10_000), "100.0%");
        assert_eq!(percent(9_876), "98.8%");
    }
}
