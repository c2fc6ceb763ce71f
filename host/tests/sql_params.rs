//! SECURITY.md "SQL only with bound parameters" (issue 18 item 4, gap 10), R-7.1:
//! a scan of the sources that lists every `format!`, `write!` and `writeln!` whose
//! template is SQL, and every `push_str` of something that is not a string
//! literal, and fails on any value spliced into them that is not on the per-site
//! allow-list below (file, expression, and why it is safe). Values from partners,
//! users, peers or the admin are bound (`$n`), never spliced; the allow-list
//! names what may be: constant column lists, locking clauses, `&'static str`
//! table names, integers, placeholders built from a count, fixed literals. A new
//! splice fails the test until someone reads it and lists it; a listed one that
//! went away fails too, so the list stays exact.
//!
//! The round trip of hostile strings through the stores is
//! `tests/tests/api.rs` `item18_hostile_strings_round_trip_byte_identical`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why a spliced value is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A `const` column list or statement prefix of the same module.
    Const,
    /// A per-backend locking clause (`Store::skip_locked`, `FOR UPDATE`, …) or
    /// per-backend SQL chosen from fixed literals.
    Lock,
    /// A table or column name typed `&'static str`, or a filter written in code.
    Static,
    /// An integer: an id the store returned, a count, a configured limit, a bound.
    Integer,
    /// A `$n` placeholder (or a list of them) built from a count; the value is bound.
    Placeholder,
    /// A fixed literal picked by a `match` or built from literals and integers.
    Literal,
    /// A fragment of SQL assembled in the same function from the kinds above.
    Fragment,
    /// `push_str` of text that is not SQL (CSV, HTML, CLI output).
    NotSql,
}

use Kind::{Const, Fragment, Integer, Literal, Lock, NotSql, Placeholder, Static};

/// Every value spliced into SQL in `host/src`, per file: (file, expression, kind).
/// The expression is the source text of the `{…}` (or its positional argument),
/// whitespace collapsed; for `push_str` it is the argument.
const ALLOWED: &[(&str, &str, Kind)] = &[
    ("alerts.rs", "ALERT_COLUMNS", Const),
    ("alerts.rs", "column", Static),
    ("alerts.rs", "table", Static),
    ("api/history.rs", "&row.join(\",\")", NotSql),
    ("audit.rs", "COLUMNS", Const),
    ("audit.rs", "lock", Lock),
    ("billing/terms.rs", "TERMS_COLUMNS", Const),
    ("cli/client.rs", "&cause.to_string()", NotSql),
    (
        "cli/output.rs",
        "&\" \".repeat(widths[k] - text.width() + 2)",
        NotSql,
    ),
    ("cli/output.rs", "line.trim_end()", NotSql),
    ("cli/output.rs", "text", NotSql),
    ("complaints.rs", "COLUMNS", Const),
    ("complaints.rs", "allowed", Literal),
    ("complaints.rs", "ids", Integer),
    ("complaints.rs", "overdue", Literal),
    ("compliance.rs", "lock", Lock),
    ("compliance/caps.rs", "cap", Integer),
    ("compliance/caps.rs", "column", Static),
    ("compliance/caps.rs", "filter", Fragment),
    ("compliance/caps.rs", "month", Placeholder),
    ("compliance/caps.rs", "room", Fragment),
    ("mo/retention.rs", "ids", Integer),
    ("mo/router.rs", "lock", Lock),
    ("mo/router.rs", "waiting", Literal),
    ("modules.rs", "MODULE_COLUMNS", Const),
    ("modules.rs", "VERSION_COLUMNS", Const),
    ("modules/approval.rs", "SELECT", Const),
    ("modules/recordings.rs", "SELECT", Const),
    ("modules/shadow.rs", "filter", Literal),
    ("notices.rs", "COLUMNS", Const),
    ("relay/fees.rs", "i", Placeholder),
    ("relay/fees.rs", "placeholders.join(\", \")", Placeholder),
    ("relay/fees.rs", "select", Static),
    ("relay/inbound/receipts.rs", "i + 2", Placeholder),
    ("relay/inbound/receipts.rs", "matched_at", Integer),
    ("relay/inbound/receipts.rs", "message_id", Integer),
    ("relay/inbound/receipts.rs", "p", Placeholder),
    ("relay/inbound/receipts.rs", "p + 1", Placeholder),
    ("relay/inbound/receipts.rs", "p + 2", Placeholder),
    ("relay/inbound/receipts.rs", "p + 3", Placeholder),
    ("relay/inbound/receipts.rs", "p + 4", Placeholder),
    ("relay/inbound/receipts.rs", "p + 5", Placeholder),
    (
        "relay/inbound/receipts.rs",
        "placeholders.join(\",\")",
        Placeholder,
    ),
    ("relay/inbound/receipts.rs", "seq", Integer),
    ("relay/inbound/receipts.rs", "values.join(\",\")", Integer),
    ("relay/messages.rs", "COLUMNS", Const),
    ("relay/messages.rs", "before + 1", Placeholder),
    ("relay/messages.rs", "before", Placeholder),
    ("relay/messages.rs", "clauses.join(\" AND \")", Fragment),
    ("relay/messages.rs", "clauses.len() + 1", Placeholder),
    ("relay/messages.rs", "column", Static),
    ("relay/outbox/push.rs", "\"[0-9]\".repeat(10)", Literal),
    ("relay/outbox/push.rs", "&canary_join", Fragment),
    ("relay/outbox/push.rs", "alias", Literal),
    (
        "relay/outbox/push.rs",
        "ascii_operators.join(\", \")",
        Placeholder,
    ),
    ("relay/outbox/push.rs", "block", Literal),
    ("relay/outbox/push.rs", "blocked.join(\",\")", Integer),
    ("relay/outbox/push.rs", "c", Integer),
    ("relay/outbox/push.rs", "canary_variant", Fragment),
    ("relay/outbox/push.rs", "case", Fragment),
    ("relay/outbox/push.rs", "code", Placeholder),
    (
        "relay/outbox/push.rs",
        "crate::subscriptions::cohort::cohort_sql(\"s.id\", canary.percent)",
        Fragment,
    ),
    ("relay/outbox/push.rs", "expires_at", Integer),
    ("relay/outbox/push.rs", "first", Integer),
    ("relay/outbox/push.rs", "first + i", Integer),
    ("relay/outbox/push.rs", "i", Integer),
    ("relay/outbox/push.rs", "is_blocked", Fragment),
    ("relay/outbox/push.rs", "join", Fragment),
    ("relay/outbox/push.rs", "key", Placeholder),
    ("relay/outbox/push.rs", "last_id", Integer),
    ("relay/outbox/push.rs", "left", Integer),
    ("relay/outbox/push.rs", "limit", Fragment),
    ("relay/outbox/push.rs", "n", Integer),
    ("relay/outbox/push.rs", "name", Placeholder),
    ("relay/outbox/push.rs", "not_blocked", Fragment),
    ("relay/outbox/push.rs", "now", Integer),
    ("relay/outbox/push.rs", "o", Placeholder),
    ("relay/outbox/push.rs", "operator", Fragment),
    ("relay/outbox/push.rs", "otherwise", Integer),
    ("relay/outbox/push.rs", "over", Fragment),
    ("relay/outbox/push.rs", "p", Placeholder),
    ("relay/outbox/push.rs", "plan", Placeholder),
    ("relay/outbox/push.rs", "prefix.chars().count()", Integer),
    ("relay/outbox/push.rs", "r", Fragment),
    ("relay/outbox/push.rs", "release_at", Integer),
    ("relay/outbox/push.rs", "room", Fragment),
    ("relay/outbox/push.rs", "room_filter", Fragment),
    ("relay/outbox/push.rs", "segments", Fragment),
    ("relay/outbox/push.rs", "self.0.len()", Placeholder),
    ("relay/outbox/push.rs", "sender", Placeholder),
    (
        "relay/outbox/push.rs",
        "seqs.join(\" UNION ALL \")",
        Fragment,
    ),
    ("relay/outbox/push.rs", "service.id", Integer),
    ("relay/outbox/push.rs", "service.partner_id", Integer),
    ("relay/outbox/push.rs", "sha", Fragment),
    ("relay/outbox/push.rs", "slice.after", Integer),
    ("relay/outbox/push.rs", "slice.limit", Integer),
    ("relay/outbox/push.rs", "slice.price_fen", Integer),
    ("relay/outbox/push.rs", "slice.run_id", Integer),
    ("relay/outbox/push.rs", "slice.service.id", Integer),
    ("relay/outbox/push.rs", "slice.up_to", Integer),
    ("relay/outbox/push.rs", "source", Fragment),
    ("relay/outbox/push.rs", "text", Fragment),
    ("relay/outbox/push.rs", "v", Integer),
    ("relay/outbox/push.rs", "v.ascii_segments", Integer),
    ("relay/outbox/push.rs", "v.segments", Integer),
    ("relay/outbox/push.rs", "value", Fragment),
    ("relay/outbox/push.rs", "variant", Fragment),
    ("relay/outbox/push.rs", "version", Fragment),
    ("relay/outbox/push.rs", "version_sha", Fragment),
    ("relay/outbox/push.rs", "well_formed", Lock),
    ("relay/outbox/push.rs", "written", Fragment),
    ("relay/outbox/push.rs", "written_by(\"m.\")", Fragment),
    ("relay/outbox/records.rs", "i", Placeholder),
    ("relay/outbox/records.rs", "month_list", Placeholder),
    ("relay/outbox/records.rs", "operator_list", Placeholder),
    ("relay/outbox/retention.rs", "ids", Integer),
    ("relay/outbox/retention.rs", "table", Static),
    ("relay/outbox/sending.rs", "&id.to_string()", Integer),
    ("relay/outbox/sending.rs", "2 * i + 2", Placeholder),
    ("relay/outbox/sending.rs", "2 * i + 3", Placeholder),
    ("relay/outbox/sending.rs", "i + 2", Placeholder),
    ("relay/outbox/sending.rs", "id_list(chunk)", Integer),
    ("relay/outbox/sending.rs", "id_list(ids)", Integer),
    ("relay/outbox/sending.rs", "lock", Lock),
    ("relay/outbox/sending.rs", "message_id", Integer),
    ("relay/outbox/sending.rs", "seq", Integer),
    ("relay/outbox/sending.rs", "status", Literal),
    ("relay/outbox/sending.rs", "values", Fragment),
    ("relay/outbox/states.rs", "holder.filter(false)", Static),
    ("relay/outbox/states.rs", "holder.filter(true)", Static),
    ("schedule/runs.rs", "COLUMNS", Const),
    ("schedule/runs.rs", "lock", Lock),
    ("schedule/schedules.rs", "COLUMNS", Const),
    ("schedule/schedules.rs", "lock", Lock),
    ("services.rs", "REVISION_COLUMNS", Const),
    ("services.rs", "SERVICE_COLUMNS", Const),
    ("settlement/cases.rs", "CASE_COLUMNS", Const),
    ("settlement/render.rs", "&row.join(\",\")", NotSql),
    ("stats/query.rs", "&n.to_string()", NotSql),
    ("stats/query.rs", "&s.replace('\"', \"\\\"\\\"\")", NotSql),
    ("stats/query.rs", "next()", Placeholder),
    ("stats/query.rs", "s", NotSql),
    ("stats/rollup.rs", "b + 1", Placeholder),
    ("stats/rollup.rs", "b + 2", Placeholder),
    ("stats/rollup.rs", "b + 3", Placeholder),
    ("stats/rollup.rs", "b + 4", Placeholder),
    ("stats/rollup.rs", "b + 5", Placeholder),
    ("stats/rollup.rs", "b + 6", Placeholder),
    ("stats/rollup.rs", "b + 7", Placeholder),
    ("stats/rollup.rs", "b + 8", Placeholder),
    ("stats/rollup.rs", "b + 9", Placeholder),
    ("stats/rollup.rs", "lock", Lock),
    ("stats/rollup.rs", "table", Static),
    ("store.rs", "filter", Static),
    ("store.rs", "key", Static),
    ("store.rs", "table", Static),
    ("subscriptions.rs", "COLUMNS", Const),
    ("subscriptions/bulk.rs", "id", Fragment),
    ("subscriptions/bulk.rs", "k", Integer),
    ("subscriptions/bulk.rs", "s", Literal),
    ("subscriptions/bulk.rs", "series", Lock),
    ("subscriptions/bulk.rs", "sign_case", Literal),
    ("webhooks.rs", "ENDPOINT_COLUMNS", Const),
    ("webhooks/sender.rs", "ids.join(\",\")", Integer),
    ("webhooks/sender.rs", "store.skip_locked()", Lock),
];

/// One spliced value: file, line, the template (or `push_str`), the expression.
#[derive(Debug)]
struct Splice {
    file: String,
    line: usize,
    template: String,
    value: String,
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The end (exclusive) of the string literal starting at `at` (`"` or `r#"`),
/// and its text as written.
fn string_literal(src: &[u8], at: usize) -> Option<(usize, String)> {
    let mut i = at;
    if src.get(i) == Some(&b'r') {
        i += 1;
        let mut hashes = 0;
        while src.get(i) == Some(&b'#') {
            hashes += 1;
            i += 1;
        }
        if src.get(i) != Some(&b'"') {
            return None;
        }
        let start = i + 1;
        let mut j = start;
        loop {
            if src.get(j)? == &b'"' && src[j + 1..].iter().take(hashes).all(|b| *b == b'#') {
                let text = String::from_utf8_lossy(&src[start..j]).to_string();
                return Some((j + 1 + hashes, text));
            }
            j += 1;
        }
    }
    if src.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut j = start;
    loop {
        match src.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some((j + 1, String::from_utf8_lossy(&src[start..j]).to_string())),
            _ => j += 1,
        }
    }
}

/// The top-level comma-separated arguments from `at` up to the closing `)`;
/// returns them and the position after the `)`.
fn arguments(src: &[u8], mut at: usize) -> (Vec<String>, usize) {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    while at < src.len() {
        let b = src[at];
        if (b == b'"' || (b == b'r' && matches!(src.get(at + 1), Some(b'"' | b'#'))))
            && let Some((end, _)) = string_literal(src, at)
        {
            current.push_str(&String::from_utf8_lossy(&src[at..end]));
            at = end;
            continue;
        }
        if b == b'\'' {
            // A char literal: 'x', '\n', '\u{..}'.
            let end = if src.get(at + 1) == Some(&b'\\') {
                src[at + 2..]
                    .iter()
                    .position(|c| *c == b'\'')
                    .map(|p| at + 3 + p)
            } else {
                let ch_len = std::str::from_utf8(&src[at + 1..(at + 5).min(src.len())])
                    .ok()
                    .or_else(|| std::str::from_utf8(&src[at + 1..at + 2]).ok())
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                (src.get(at + 1 + ch_len) == Some(&b'\'')).then_some(at + 2 + ch_len)
            };
            if let Some(end) = end {
                current.push_str(&String::from_utf8_lossy(&src[at..end]));
                at = end;
                continue;
            }
        }
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => {
                let last = current.trim();
                if !last.is_empty() {
                    args.push(collapse(last));
                }
                return (args, at + 1);
            }
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                args.push(collapse(current.trim()));
                current.clear();
                at += 1;
                continue;
            }
            _ => {}
        }
        current.push(b as char);
        at += 1;
    }
    (args, at)
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a template is SQL: it holds a `$n` placeholder (or builds one), or an
/// SQL keyword in capitals. (A fragment with neither, such as pure arithmetic,
/// is not recognised.)
fn is_sql(template: &str) -> bool {
    const WORDS: &[&str] = &[
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "FROM",
        "WHERE",
        "VALUES",
        "JOIN",
        "LIMIT",
        "CASE",
        "WHEN",
        "AND",
        "NOT",
        "IN",
        "GLOB",
        "LIKE",
        "SET",
        "RETURNING",
        "ORDER",
        "GROUP",
        "COALESCE",
        "EXISTS",
        "UNION",
        "OFFSET",
        "AS",
    ];
    let placeholder = template
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && (w[1].is_ascii_digit() || w[1] == b'{'));
    placeholder
        || template
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .any(|w| WORDS.contains(&w))
}

/// The values a template splices: `{name}` (an inline capture or a named
/// argument), `{}` and `{0}` (positional arguments).
fn spliced(template: &str, args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = 0;
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('{', Some('{')) | ('}', Some('}')) => i += 2,
            ('{', _) => {
                let end = chars[i..].iter().position(|c| *c == '}').unwrap() + i;
                let inner: String = chars[i + 1..end].iter().collect();
                let selector = inner.split(':').next().unwrap().trim().to_string();
                let value = if selector.is_empty() {
                    next += 1;
                    args.get(next - 1).cloned()
                } else if let Ok(n) = selector.parse::<usize>() {
                    args.get(n).cloned()
                } else {
                    Some(
                        args.iter()
                            .find_map(|a| {
                                a.strip_prefix(&format!("{selector} = "))
                                    .map(str::to_string)
                            })
                            .unwrap_or(selector),
                    )
                };
                out.push(value.unwrap_or_else(|| format!("<missing argument of {{{inner}}}>")));
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Every splice into SQL under `src`.
fn scan(src_dir: &Path) -> Vec<Splice> {
    let mut files = Vec::new();
    sources(src_dir, &mut files);
    let mut found = Vec::new();
    for path in files {
        let file = path
            .strip_prefix(src_dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&path).unwrap();
        let src = text.as_bytes();
        let line_of = |at: usize| src[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let in_comment = |at: usize| {
            let start = src[..at]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            String::from_utf8_lossy(&src[start..at]).contains("//")
        };
        for (name, skip_first) in [
            ("format!(", false),
            ("write!(", true),
            ("writeln!(", true),
            ("push_str(", false),
        ] {
            let mut from = 0;
            while let Some(p) = text[from..].find(name) {
                let at = from + p;
                from = at + name.len();
                // `write!(` inside `writeln!(`… and identifiers ending in the name.
                if at > 0 && (src[at - 1].is_ascii_alphanumeric() || src[at - 1] == b'_') {
                    continue;
                }
                if in_comment(at) {
                    continue;
                }
                let (mut args, _) = arguments(src, at + name.len());
                if skip_first && !args.is_empty() {
                    args.remove(0);
                }
                let Some(first) = args.first().cloned() else {
                    continue;
                };
                if name == "push_str(" {
                    let literal = string_literal(first.as_bytes(), 0)
                        .is_some_and(|(end, _)| end == first.len());
                    if !literal && !first.starts_with("&format!(") {
                        found.push(Splice {
                            file: file.clone(),
                            line: line_of(at),
                            template: "push_str".into(),
                            value: first,
                        });
                    }
                    continue;
                }
                let Some((end, template)) = string_literal(first.as_bytes(), 0) else {
                    continue;
                };
                if end != first.len() || !is_sql(&template) {
                    continue;
                }
                for value in spliced(&template, &args[1..]) {
                    found.push(Splice {
                        file: file.clone(),
                        line: line_of(at),
                        template: collapse(&template),
                        value,
                    });
                }
            }
        }
    }
    found
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every value spliced into SQL is on the allow-list for its file, and every
/// entry of the list is still in use.
#[test]
fn item18_sql_is_assembled_only_from_allowed_values() {
    let found = scan(&src_dir());
    let templates: BTreeSet<(String, usize)> =
        found.iter().map(|s| (s.file.clone(), s.line)).collect();
    assert!(
        templates.len() > 80,
        "the scan finds the SQL it should ({} sites): is it still reading host/src?",
        templates.len()
    );
    let allowed: BTreeMap<(&str, &str), Kind> =
        ALLOWED.iter().map(|(f, v, k)| ((*f, *v), *k)).collect();
    assert_eq!(allowed.len(), ALLOWED.len(), "an entry is listed twice");
    let mut unlisted = Vec::new();
    let mut used = BTreeSet::new();
    for s in &found {
        let key = (s.file.as_str(), s.value.as_str());
        if allowed.contains_key(&key) {
            used.insert(key);
        } else {
            unlisted.push(format!(
                "    (\"{}\", {:?}, ?), // line {}: {}",
                s.file, s.value, s.line, s.template
            ));
        }
    }
    unlisted.sort();
    unlisted.dedup();
    assert!(
        unlisted.is_empty(),
        "values spliced into SQL that no one has listed as safe; bind them (`$n`), or read \
         them and list them in ALLOWED with their kind:\n{}",
        unlisted.join("\n")
    );
    let stale: Vec<_> = allowed.keys().filter(|k| !used.contains(*k)).collect();
    assert!(
        stale.is_empty(),
        "ALLOWED entries no longer found: {stale:?}"
    );
    let kinds: BTreeMap<Kind, usize> = found.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(allowed[&(s.file.as_str(), s.value.as_str())])
            .or_default() += 1;
        m
    });
    eprintln!(
        "SQL scan: {} templates and push_str sites, {} spliced values: {kinds:?}",
        templates.len(),
        found.len()
    );
}

/// The scanner itself: it finds a spliced name, a positional argument, a named
/// argument, a `write!` into a string and a `push_str`, and ignores text that is
/// not SQL, escaped braces and comments.
#[test]
fn item18_the_sql_scan_finds_what_it_should() {
    let dir = std::env::temp_dir().join(format!("sql-scan-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("sub/x.rs"),
        r#"
fn f(name: &str, id: i64) {
    let a = format!("SELECT * FROM t WHERE name = '{name}'");
    let b = format!(
        "UPDATE t SET n = {} WHERE id = {id2}",
        id + 1,
        id2 = id
    );
    let _ = write!(sql, " AND x IN ({})", list.join(","));
    sql.push_str(&other);
    sql.push_str(" LIMIT 1");
    let c = format!("hello {name}, {{not}} SQL");
    // format!("SELECT {commented}")
}
"#,
    )
    .unwrap();
    let found = scan(&dir);
    let values: Vec<(&str, &str)> = found
        .iter()
        .map(|s| (s.file.as_str(), s.value.as_str()))
        .collect();
    assert_eq!(
        values,
        [
            ("sub/x.rs", "name"),
            ("sub/x.rs", "id + 1"),
            ("sub/x.rs", "id"),
            ("sub/x.rs", "list.join(\",\")"),
            ("sub/x.rs", "&other"),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
