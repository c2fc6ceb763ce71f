//! Content policy (R-3.1): prohibited words and patterns, signature, length, links.
//!
//! Words are matched with one Aho-Corasick automaton over the folded text
//! ([`crate::text::squash`]), so evasion by spacing, punctuation, full-width or
//! look-alike letters does not work and a long list costs one pass.

use std::collections::BTreeMap;

use aho_corasick::AhoCorasick;
use regex::Regex;

use super::settings::{ComplianceConfig, ControlMode, SignatureMode};
use crate::text::squash;

/// Why a text may not leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {detail}")]
pub struct PolicyViolation {
    /// `control-character`, `prohibited-word`, `prohibited-pattern`, `signature`,
    /// `too-long`, `link`, `empty-content`.
    pub rule: &'static str,
    pub detail: String,
}

/// A policy configuration that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("compliance.prohibited_patterns: `{pattern}`: {source}")]
    Pattern {
        pattern: String,
        source: Box<regex::Error>,
    },
    #[error("compliance.prohibited_words: {0}")]
    Words(#[from] aho_corasick::BuildError),
}

/// Word and pattern lists, compiled.
#[derive(Debug)]
struct Lists {
    words: Vec<String>,
    matcher: AhoCorasick,
    patterns: Vec<Regex>,
}

impl Lists {
    fn compile(words: &[String], patterns: &[String]) -> Result<Self, PolicyError> {
        let words: Vec<String> = words
            .iter()
            .map(|w| squash(w))
            .filter(|w| !w.is_empty())
            .collect();
        let matcher = AhoCorasick::new(&words)?;
        let patterns = patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| PolicyError::Pattern {
                    pattern: p.clone(),
                    source: Box::new(e),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            words,
            matcher,
            patterns,
        })
    }

    fn check(&self, squashed: &str) -> Result<(), PolicyViolation> {
        if let Some(found) = self.matcher.find(squashed) {
            return Err(PolicyViolation {
                rule: "prohibited-word",
                detail: format!(
                    "contains the prohibited word `{}`",
                    self.words[found.pattern().as_usize()]
                ),
            });
        }
        if let Some(pattern) = self.patterns.iter().find(|p| p.is_match(squashed)) {
            return Err(PolicyViolation {
                rule: "prohibited-pattern",
                detail: format!("matches the prohibited pattern `{}`", pattern.as_str()),
            });
        }
        Ok(())
    }
}

/// The compiled policy.
#[derive(Debug)]
pub struct Policy {
    common: Lists,
    per_operator: BTreeMap<String, Lists>,
    links: Regex,
    signature: SignatureMode,
    max_segments: u32,
    allow_links: bool,
    control: ControlMode,
}

impl Policy {
    pub fn compile(config: &ComplianceConfig) -> Result<Self, PolicyError> {
        let per_operator = config
            .operators
            .iter()
            .map(|(name, lists)| {
                Ok((
                    name.clone(),
                    Lists::compile(&lists.prohibited_words, &lists.prohibited_patterns)?,
                ))
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(Self {
            common: Lists::compile(&config.prohibited_words, &config.prohibited_patterns)?,
            per_operator,
            // Schemes, `www.`, and bare domains under common top-level domains; it
            // runs on text without spaces, so `www . x . com` is caught too.
            links: Regex::new(
                r"(?i)(https?:|www\.|[a-z0-9-]+\.(com|cn|net|org|top|xyz|cc|io|me|info|vip|club|site|shop|link|ly)(\b|/|$))",
            )
            .map_err(|e| PolicyError::Pattern {
                pattern: "links".into(),
                source: Box::new(e),
            })?,
            signature: config.signature,
            max_segments: config.max_segments,
            allow_links: config.allow_links,
            control: config.control_characters,
        })
    }

    /// Control and invisible characters (issue 10 item 8): the text refused with
    /// the rule `control-character` naming them, or (`strip`) the text without them.
    /// Every text that is queued passes here, the platform's own notices too.
    pub fn invisible(&self, text: &str) -> Result<String, PolicyViolation> {
        let found = crate::text::invisible_chars(text, true);
        if found.is_empty() {
            return Ok(text.to_string());
        }
        match self.control {
            ControlMode::Strip => Ok(crate::text::strip_invisible(text, true)),
            ControlMode::Refuse => Err(PolicyViolation {
                rule: "control-character",
                detail: format!(
                    "the text contains control or invisible characters ({}); a phone would hide or reorder what they surround",
                    crate::text::describe_chars(&found)
                ),
            }),
        }
    }

    /// Check one MT text of a partner whose signature is `signature`, bound for
    /// `operators` (the lists of each apply). Returns the text to send: without
    /// invisible characters (or refused for them, [`Self::invisible`]), with the
    /// signature appended when the mode is `append` and it was missing.
    pub fn check(
        &self,
        text: &str,
        signature: &str,
        operators: &[String],
    ) -> Result<String, PolicyViolation> {
        let text = &self.invisible(text)?;
        let squashed = squash(text);
        self.common.check(&squashed)?;
        for operator in operators {
            if let Some(lists) = self.per_operator.get(operator) {
                lists.check(&squashed)?;
            }
        }
        let mark = format!("【{signature}】");
        let body = text.trim();
        let signed = body.starts_with(&mark) || body.ends_with(&mark);
        if squash(&body.replace(&mark, "")).is_empty() {
            return Err(PolicyViolation {
                rule: "empty-content",
                detail: "the text has no content besides the signature and punctuation".into(),
            });
        }
        let text = match (self.signature, signed) {
            (SignatureMode::Require, false) => {
                return Err(PolicyViolation {
                    rule: "signature",
                    detail: format!("the text must start or end with the signature {mark}"),
                });
            }
            (SignatureMode::Append, false) => format!("{body}{mark}"),
            _ => text.to_string(),
        };
        let text = text.as_str();
        let segments = tongdao_smpp::encode::segment_count(text);
        if segments > self.max_segments as usize {
            return Err(PolicyViolation {
                rule: "too-long",
                detail: format!(
                    "the text needs {segments} SMS segments; at most {} are allowed",
                    self.max_segments
                ),
            });
        }
        if !self.allow_links {
            let spaced_out: String = text
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| match c {
                    '。' | '．' | '｡' | '·' => '.',
                    other => other,
                })
                .collect::<String>();
            let folded = crate::text::command(&spaced_out).to_lowercase();
            if let Some(found) = self.links.find(&folded) {
                return Err(PolicyViolation {
                    rule: "link",
                    detail: format!("links are not allowed (found `{}`)", found.as_str()),
                });
            }
        }
        // Again on what is sent: the appended signature is text too.
        self.invisible(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut config = ComplianceConfig {
            signature: SignatureMode::Require,
            prohibited_words: vec!["赌博".into(), "viagra".into()],
            prohibited_patterns: vec![r"\d{3}元现金".into()],
            ..ComplianceConfig::default()
        };
        config.operators.insert(
            "unicom".into(),
            super::super::settings::OperatorPolicy {
                prohibited_words: vec!["彩票".into()],
                prohibited_patterns: vec![],
            },
        );
        Policy::compile(&config).unwrap()
    }

    fn rule(text: &str, operators: &[&str]) -> Option<&'static str> {
        let ops: Vec<String> = operators.iter().map(|s| s.to_string()).collect();
        policy().check(text, "星座", &ops).err().map(|v| v.rule)
    }

    #[test]
    fn r_3_1_evasions_are_caught() {
        for text in [
            "【星座】今日赌博运势",
            "【星座】今日赌 博运势",
            "【星座】今日赌.博运势",
            "【星座】buy ＶＩＡＧＲＡ now",
            "【星座】buy v i a g r a now",
            "【星座】buy viаgra now", // Cyrillic а
            "【星座】buy VIΑGRA now", // Greek Α
        ] {
            assert_eq!(rule(text, &[]), Some("prohibited-word"), "{text}");
        }
        // A zero-width space is refused for itself; stripped, the word is caught.
        assert_eq!(
            rule("【星座】今日赌\u{200b}博运势", &[]),
            Some("control-character")
        );
        let strip = Policy::compile(&ComplianceConfig {
            control_characters: ControlMode::Strip,
            prohibited_words: vec!["赌博".into()],
            ..ComplianceConfig::default()
        })
        .unwrap();
        assert_eq!(
            strip
                .check("【星座】今日赌\u{200b}博运势", "星座", &[])
                .unwrap_err()
                .rule,
            "prohibited-word"
        );
        assert_eq!(
            rule("【星座】送5 0 0元现金", &[]),
            Some("prohibited-pattern")
        );
    }

    #[test]
    fn operator_lists_apply_only_to_that_operator() {
        assert_eq!(rule("【星座】买彩票", &["mobile"]), None);
        assert_eq!(
            rule("【星座】买彩 票", &["unicom"]),
            Some("prohibited-word")
        );
    }

    #[test]
    fn append_mode_signs_unsigned_text_once() {
        let config = ComplianceConfig::default();
        let policy = Policy::compile(&config).unwrap();
        assert_eq!(
            policy.check("今日晴", "星座", &[]).unwrap(),
            "今日晴【星座】"
        );
        assert_eq!(
            policy.check("【星座】今日晴", "星座", &[]).unwrap(),
            "【星座】今日晴"
        );
    }

    #[test]
    fn item8_control_characters_refused_or_stripped() {
        for text in [
            "【星座】今日\0晴",
            "【星座】\u{1b}[2J今日晴",
            "【星座】今日\u{202e}晴",
            "【星座】今日\u{200b}晴",
            "【星座】今日\u{9b}晴",
        ] {
            assert_eq!(rule(text, &[]), Some("control-character"), "{text:?}");
        }
        assert_eq!(rule("【星座】第一行\n第二行", &[]), None);
        let config = ComplianceConfig {
            control_characters: ControlMode::Strip,
            ..ComplianceConfig::default()
        };
        let policy = Policy::compile(&config).unwrap();
        assert_eq!(
            policy.check("今日\u{202e}\0晴", "星座", &[]).unwrap(),
            "今日晴【星座】"
        );
    }

    #[test]
    fn signature_length_links_and_empty_content() {
        assert_eq!(rule("今日运势：晴", &[]), Some("signature"));
        assert_eq!(rule("今日运势：晴【星座】", &[]), None);
        assert_eq!(rule("【星座】 ！！", &[]), Some("empty-content"));
        assert_eq!(
            rule(&format!("【星座】{}", "好".repeat(400)), &[]),
            Some("too-long")
        );
        for text in [
            "【星座】详见 http://x.cn/a",
            "【星座】详见 www . example . com",
            "【星座】详见 example。com",
            "【星座】详见 ＥＸＡＭＰＬＥ．ＣＯＭ",
        ] {
            assert_eq!(rule(text, &[]), Some("link"), "{text}");
        }
        assert_eq!(rule("【星座】版本1.5更新", &[]), None);
    }
}
