//! What the CLI prints: aligned tables and `field  value` views for people (CJK
//! text counted two columns wide), or the API's answer as pretty JSON with
//! `--json`, for programs.

use serde_json::Value;
use unicode_width::UnicodeWidthStr;

/// A column: its heading and the field it shows (`a.b` for a nested field).
pub type Column = (&'static str, &'static str);

/// The answer as pretty JSON, on standard output.
pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// A field of `item` by path (`live.name`); `Null` when absent.
pub fn field<'a>(item: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(item, |v, part| v.get(part))
        .unwrap_or(&Value::Null)
}

/// One value as a cell: strings as they are, `-` for null, arrays joined with
/// `,`; Unix-ms numbers in fields named `at` or `*_at` as RFC 3339 UTC.
pub fn cell(name: &str, value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match n.as_i64() {
            Some(ms) if (name == "at" || name.ends_with("_at")) && ms > 0 => {
                jiff::Timestamp::from_millisecond(ms)
                    .map(|t| format!("{t:.3}"))
                    .unwrap_or_else(|_| ms.to_string())
            }
            _ => n.to_string(),
        },
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items
            .iter()
            .map(|v| cell("", v))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => value.to_string(),
    }
}

/// The rows of a table as text, columns aligned, a heading line first.
pub fn table(items: &[Value], columns: &[Column]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, path)| {
                    let name = path.rsplit('.').next().unwrap_or(path);
                    one_line(&cell(name, field(item, path)))
                })
                .collect()
        })
        .collect();
    let headings: Vec<String> = columns.iter().map(|(h, _)| (*h).to_string()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|k| {
            std::iter::once(&headings)
                .chain(rows.iter())
                .map(|r| r[k].width())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&headings).chain(rows.iter()) {
        let mut line = String::new();
        for (k, text) in row.iter().enumerate() {
            line.push_str(text);
            if k + 1 < row.len() {
                line.push_str(&" ".repeat(widths[k] - text.width() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Print a list as a table, with `next: …` when there is another page.
pub fn list(items: &[Value], next: Option<&str>, columns: &[Column]) {
    if items.is_empty() {
        println!("(none)");
    } else {
        print!("{}", table(items, columns));
    }
    if let Some(next) = next {
        println!("next: --after {next}");
    }
}

/// Print an object's fields as `name  value` lines (nested objects flattened to
/// `a.b`); `only`: these fields in this order, or every scalar field.
pub fn object(value: &Value, only: Option<&[&str]>) {
    let mut lines: Vec<(String, String)> = Vec::new();
    match only {
        Some(paths) => {
            for path in paths {
                let name = path.rsplit('.').next().unwrap_or(path);
                lines.push(((*path).to_string(), cell(name, field(value, path))));
            }
        }
        None => flatten("", value, &mut lines),
    }
    let width = lines.iter().map(|(k, _)| k.width()).max().unwrap_or(0);
    for (k, v) in lines {
        println!("{k}{}  {}", " ".repeat(width - k.width()), one_line(&v));
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(o) => {
            for (k, v) in o {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    Value::Object(_) => flatten(&path, v, out),
                    Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                        out.push((path, format!("({} items; --json shows them)", items.len())));
                    }
                    _ => out.push((path, cell(k, v))),
                }
            }
        }
        other => out.push((prefix.to_string(), cell(prefix, other))),
    }
}

/// Newlines and tabs in a cell would break the table.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\t', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_wide_characters_and_render_times() {
        let items = [
            json!({"id": 1, "name": "乐游", "created_at": 1_764_471_600_123_i64}),
            json!({"id": 22, "name": "stars", "created_at": null}),
        ];
        let text = table(
            &items,
            &[("ID", "id"), ("NAME", "name"), ("CREATED", "created_at")],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  NAME   CREATED");
        assert_eq!(lines[1], "1   乐游   2025-11-30T03:00:00.123Z");
        assert_eq!(lines[2], "22  stars  -");
    }

    #[test]
    fn nested_fields_by_path() {
        let v = json!({"live": {"name": "每日笑话", "keywords": ["笑话", "XH"]}});
        assert_eq!(cell("name", field(&v, "live.name")), "每日笑话");
        assert_eq!(cell("keywords", field(&v, "live.keywords")), "笑话,XH");
        assert_eq!(field(&v, "pending.name"), &Value::Null);
    }
}
