//! The matcher: one keyword pass over the content decides which rules can
//! match at all; only their regexes run, and every candidate then passes the
//! rule's entropy floor, the placeholder filter and its validator.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Input, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

use crate::rules::{Rule, RuleError, RuleSet};

/// The comment that silences findings on its line.
pub const ALLOW_MARKER: &[u8] = b"keyward:allow";

/// A compiled rule set, shared by every scanning thread.
pub struct Scanner {
    rules: Vec<CompiledRule>,
    /// Every distinct keyword of every rule, lower-cased.
    keywords: Option<AhoCorasick>,
    /// For each keyword, the rules that need it or any keyword contained in
    /// it (where `api_key` occurs, `key` does too).
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords, which run on everything.
    always: Vec<usize>,
}

struct CompiledRule {
    rule: Rule,
    regex: Regex,
    /// The capture group named `secret`, when the rule has one.
    secret_group: Option<usize>,
    /// The longest match the regex can make, when it is bounded and the
    /// keywords are part of every match: the regex then runs only within
    /// this distance of keyword hits instead of over the whole content.
    window: Option<usize>,
}

/// Longest window worth searching around a keyword; a rule that could match
/// more runs over the whole content.
const MAX_WINDOW: usize = 64 << 10;

/// One confirmed finding in a piece of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the rule in [`Scanner::rules`].
    pub rule: usize,
    /// Where the secret is, in bytes.
    pub secret: Range<usize>,
}

impl Scanner {
    pub fn new(set: &RuleSet) -> Result<Scanner, RuleError> {
        let mut rules = Vec::with_capacity(set.len());
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        for (index, rule) in set.rules().iter().enumerate() {
            // ASCII semantics: secrets are ASCII, `\b` and `\w` then stay in
            // the fast lazy DFA on text that is not (a Unicode word
            // boundary makes it give up), and compiling is quicker.
            let regex = RegexBuilder::new(&rule.regex)
                .unicode(false)
                .size_limit(64 << 20)
                .dfa_size_limit(16 << 20)
                .build()
                .map_err(|e| RuleError::Regex {
                    id: rule.id.clone(),
                    message: e.to_string(),
                })?;
            let secret_group = regex
                .capture_names()
                .position(|name| name == Some("secret"));
            let window = if rule.keywords.is_empty() || rule.context_keywords {
                None
            } else {
                regex_syntax::ParserBuilder::new()
                    .unicode(false)
                    .utf8(false)
                    .build()
                    .parse(&rule.regex)
                    .ok()
                    .and_then(|hir| hir.properties().maximum_len())
                    .filter(|&len| len <= MAX_WINDOW)
            };
            if rule.keywords.is_empty() {
                always.push(index);
            }
            for keyword in &rule.keywords {
                let keyword = keyword.to_ascii_lowercase();
                match keywords.iter().position(|k| *k == keyword) {
                    Some(at) => keyword_rules[at].push(index),
                    None => {
                        keywords.push(keyword);
                        keyword_rules.push(vec![index]);
                    }
                }
            }
            rules.push(CompiledRule {
                rule: rule.clone(),
                regex,
                secret_group,
                window,
            });
        }
        // The search reports the longest keyword at each position; the rules
        // of keywords inside it must fire too.
        let keyword_rules: Vec<Vec<usize>> = keywords
            .iter()
            .map(|outer| {
                let mut fired: Vec<usize> = keywords
                    .iter()
                    .zip(&keyword_rules)
                    .filter(|(inner, _)| outer.contains(inner.as_str()))
                    .flat_map(|(_, rules)| rules.iter().copied())
                    .collect();
                fired.sort_unstable();
                fired.dedup();
                fired
            })
            .collect();
        let keywords = if keywords.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&keywords)
                    .map_err(|e| RuleError::Invalid {
                        id: "(keywords)".into(),
                        message: e.to_string(),
                    })?,
            )
        };
        Ok(Scanner {
            rules,
            keywords,
            keyword_rules,
            always,
        })
    }

    /// The rule a [`Match`] refers to.
    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules[index].rule
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every confirmed secret in `content`, in order of position. Where
    /// the secrets of two rules overlap, only the more severe (or, equally
    /// severe, the earlier rule's) is kept; findings on a line carrying
    /// `keyward:allow` are dropped.
    pub fn find(&self, content: &[u8]) -> Vec<Match> {
        // For each rule: not triggered (None), the whole content, or the
        // spans around its keywords' hits, merged and in order.
        let mut spans: Vec<Option<Vec<Range<usize>>>> = vec![None; self.rules.len()];
        let whole = std::iter::once(0..content.len());
        for &index in &self.always {
            spans[index] = Some(whole.clone().collect());
        }
        if let Some(keywords) = &self.keywords {
            // The longest keyword at every position where one starts: after
            // each hit the search resumes one byte on, so keywords that
            // overlap are all seen, and it skips ahead with the searcher's
            // SIMD prefilter in between, which an overlapping search cannot.
            let mut at = 0;
            while let Some(hit) = keywords.find(Input::new(content).span(at..content.len())) {
                for &index in &self.keyword_rules[hit.pattern().as_usize()] {
                    let rule_spans = spans[index].get_or_insert_with(Vec::new);
                    match self.rules[index].window {
                        // A match holding this hit lies within `window`
                        // bytes of it on either side.
                        Some(window) => {
                            let near = hit.end().saturating_sub(window)
                                ..(hit.start() + window).min(content.len());
                            match rule_spans.last_mut() {
                                Some(last) if near.start <= last.end => {
                                    last.end = last.end.max(near.end);
                                }
                                _ => rule_spans.push(near),
                            }
                        }
                        None if rule_spans.is_empty() => rule_spans.extend(whole.clone()),
                        None => {}
                    }
                }
                at = hit.start() + 1;
            }
        }
        let mut found = Vec::new();
        let mut vetoed = Vec::new();
        for (index, compiled) in self.rules.iter().enumerate() {
            if let Some(rule_spans) = &spans[index] {
                compiled.candidates(index, content, rule_spans, &mut found, &mut vetoed);
            }
        }
        if found.is_empty() {
            return found;
        }
        // A string with the exact shape of a checksummed format that fails
        // its check (a key with one character changed, an unsigned JWT) is
        // not a secret, whichever looser rule also matches it.
        found.retain(|m| {
            self.rules[m.rule].is_structural()
                || !vetoed
                    .iter()
                    .any(|v: &Range<usize>| v.start < m.secret.end && m.secret.start < v.end)
        });
        found.retain(|m| !on_allowed_line(content, m.secret.start));
        self.drop_overlaps(found)
    }

    fn drop_overlaps(&self, mut found: Vec<Match>) -> Vec<Match> {
        // Stronger first: severity, then rule order.
        found.sort_by(|a, b| {
            let (ra, rb) = (self.rule(a.rule), self.rule(b.rule));
            rb.severity
                .cmp(&ra.severity)
                .then(a.rule.cmp(&b.rule))
                .then(a.secret.start.cmp(&b.secret.start))
        });
        let mut kept: Vec<Match> = Vec::with_capacity(found.len());
        for m in found {
            let overlaps = kept
                .iter()
                .any(|k| k.secret.start < m.secret.end && m.secret.start < k.secret.end);
            if !overlaps {
                kept.push(m);
            }
        }
        kept.sort_by_key(|m| (m.secret.start, m.rule));
        kept
    }
}

impl CompiledRule {
    fn is_structural(&self) -> bool {
        self.rule.validator.is_some_and(|v| v.is_structural())
    }

    /// Pushes the rule's confirmed matches within `spans` onto `found`, and
    /// onto `vetoed` the candidates its structural validator refused.
    fn candidates(
        &self,
        index: usize,
        content: &[u8],
        spans: &[Range<usize>],
        found: &mut Vec<Match>,
        vetoed: &mut Vec<Range<usize>>,
    ) {
        let rule = &self.rule;
        let structural = self.is_structural();
        let mut push = |range: Range<usize>| {
            let secret = &content[range.clone()];
            if rule.entropy.is_some_and(|floor| entropy(secret) < floor) {
                return;
            }
            if !structural && looks_like_placeholder(secret) {
                return;
            }
            let range = match rule.validator {
                Some(validator) => match validator.check(secret) {
                    Some(inner) => range.start + inner.start..range.start + inner.end,
                    None => {
                        if structural {
                            vetoed.push(range);
                        }
                        return;
                    }
                },
                None => range,
            };
            if !found.iter().any(|m| m.rule == index && m.secret == range) {
                found.push(Match {
                    rule: index,
                    secret: range,
                });
            }
        };
        let mut locations = self.regex.capture_locations();
        let mut resume = 0;
        for span in spans {
            let mut at = span.start.max(resume);
            while at <= span.end {
                // The span's end bounds the search; what lies before its
                // start still counts for `\b` and `^`.
                let Some(hit) = self
                    .regex
                    .captures_read_at(&mut locations, &content[..span.end], at)
                    .map(|m| m.range())
                else {
                    break;
                };
                let whole = if hit.end == span.end && span.end < content.len() {
                    // The span may have cut the match short: search on in
                    // the whole content.
                    match self
                        .regex
                        .captures_read_at(&mut locations, content, hit.start)
                    {
                        Some(m) => m.range(),
                        None => break,
                    }
                } else {
                    hit
                };
                let secret = match self.secret_group {
                    Some(group) => locations.get(group).map(|(start, end)| start..end),
                    None => Some(whole.clone()),
                };
                if let Some(secret) = secret {
                    push(secret);
                }
                // An empty match must still move on.
                at = if whole.end > whole.start {
                    whole.end
                } else {
                    whole.end + 1
                };
                resume = at;
            }
        }
    }
}

/// Checks every rule of `set` against its own examples, each rule alone:
/// every example must yield a finding, no negative example may. Returns one
/// line per failure; empty when all hold.
pub fn check_examples(set: &RuleSet) -> Result<Vec<String>, RuleError> {
    let mut failures = Vec::new();
    for rule in set.rules() {
        let mut only = RuleSet::default();
        only.push(rule.clone());
        let scanner = Scanner::new(&only)?;
        if rule.examples.is_empty() {
            failures.push(format!("{}: has no examples", rule.id));
        }
        if rule.negative_examples.is_empty() {
            failures.push(format!("{}: has no negative examples", rule.id));
        }
        let keywords: Vec<String> = rule
            .keywords
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect();
        for (i, example) in rule.examples.iter().enumerate() {
            if scanner.find(example.as_bytes()).is_empty() {
                failures.push(format!("{}: example {} is not found", rule.id, i + 1));
            }
            if !rule.keywords.is_empty() && !rule.context_keywords {
                // The regex runs only near keywords: every match must hold one.
                let holds = |m: regex::bytes::Match<'_>| {
                    let text = m.as_bytes().to_ascii_lowercase();
                    keywords
                        .iter()
                        .any(|k| memchr::memmem::find(&text, k.as_bytes()).is_some())
                };
                if !scanner.rules[0]
                    .regex
                    .find_iter(example.as_bytes())
                    .all(holds)
                {
                    failures.push(format!(
                        "{}: example {} matches without a keyword in the match \
                         (set context_keywords = true if they are context)",
                        rule.id,
                        i + 1
                    ));
                }
            }
        }
        for (i, negative) in rule.negative_examples.iter().enumerate() {
            if !scanner.find(negative.as_bytes()).is_empty() {
                failures.push(format!("{}: negative example {} is found", rule.id, i + 1));
            }
        }
    }
    Ok(failures)
}

/// Shannon entropy of `bytes`, in bits per byte.
pub fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Words and shapes of values that stand in for a secret in documentation
/// and templates.
const PLACEHOLDER_WORDS: [&str; 14] = [
    "example",
    "xxxx",
    "your",
    "placeholder",
    "changeme",
    "dummy",
    "redacted",
    "sample",
    "****",
    "<",
    ">",
    "${",
    "{{",
    "...",
];

/// Whether `secret` is a stand-in rather than a credential: a placeholder
/// word, one repeated character, or a run like `0123456789` or `abcdef`.
pub fn looks_like_placeholder(secret: &[u8]) -> bool {
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_WORDS
        .iter()
        .any(|w| memchr::memmem::find(&lower, w.as_bytes()).is_some())
    {
        return true;
    }
    let Some(&first) = lower.first() else {
        return true;
    };
    if lower.iter().all(|&b| b == first) {
        return true;
    }
    // Mostly ascending by one: 0123456789abcdef and the like.
    let steps = lower
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    lower.len() >= 8 && steps * 10 >= (lower.len() - 1) * 8
}

fn on_allowed_line(content: &[u8], at: usize) -> bool {
    let start = memchr::memrchr(b'\n', &content[..at]).map_or(0, |i| i + 1);
    let end = memchr::memchr(b'\n', &content[at..]).map_or(content.len(), |i| at + i);
    memchr::memmem::find(&content[start..end], ALLOW_MARKER).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_known_strings() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!((entropy(b"0123456789abcdef") - 4.0).abs() < 1e-9);
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            &b"AKIAIOSFODNN7EXAMPLE"[..],
            b"your-api-key-here",
            b"xxxxxxxxxxxxxxxx",
            b"${API_SECRET}",
            b"0123456789abcdef",
            b"<secret>",
        ] {
            assert!(looks_like_placeholder(p), "{}", String::from_utf8_lossy(p));
        }
        assert!(!looks_like_placeholder(b"9f8Kq2LmZ0xV7bT4"));
    }

    fn scanner(toml: &str) -> Scanner {
        let mut set = RuleSet::default();
        set.add_toml(toml, "test").unwrap();
        Scanner::new(&set).unwrap()
    }

    #[test]
    fn a_rule_runs_only_where_its_keyword_is() {
        let s = scanner(
            r#"
            [[rule]]
            id = "t"
            name = "t"
            severity = "high"
            keywords = ["tok_"]
            regex = '(?P<secret>tok_[a-z]{8})'
            "#,
        );
        let found = s.find(b"a = TOK_ and tok_qwertyui;");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].secret, 13..25);
        assert!(s.find(b"nothing here").is_empty());
    }

    #[test]
    fn allow_comments_silence_their_line_only() {
        let s = scanner(
            r#"
            [[rule]]
            id = "t"
            name = "t"
            severity = "high"
            keywords = ["tok_"]
            regex = 'tok_[a-z]{8}'
            "#,
        );
        let text = b"a = tok_qwertyui # keyward:allow\nb = tok_asdfghjk\n";
        let found = s.find(text);
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].secret.clone()], b"tok_asdfghjk");
    }

    #[test]
    fn the_more_severe_of_overlapping_findings_wins() {
        let s = scanner(
            r#"
            [[rule]]
            id = "generic"
            name = "generic"
            severity = "low"
            keywords = ["key"]
            regex = 'key = (?P<secret>[a-z_]{12})'
            [[rule]]
            id = "specific"
            name = "specific"
            severity = "critical"
            keywords = ["tok_"]
            regex = 'tok_[a-z]{8}'
            "#,
        );
        let found = s.find(b"key = tok_qwertyui");
        assert_eq!(found.len(), 1);
        assert_eq!(s.rule(found[0].rule).id, "specific");
    }

    #[test]
    fn a_failed_checksum_keeps_looser_rules_off_the_string() {
        let s = scanner(
            r#"
            [[rule]]
            id = "generic"
            name = "generic"
            severity = "low"
            keywords = ["key"]
            regex = 'key = "(?P<secret>[A-Za-z0-9_]{20,})"'
            [[rule]]
            id = "keyward"
            name = "keyward"
            severity = "critical"
            keywords = ["_live_"]
            regex = '[a-z0-9]{1,12}_live_[0-9A-Za-z]{49}'
            validator = "keyward"
            "#,
        );
        // A published key-format vector.
        let good = "tm_live_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp11ORBZz"; // keyward:allow
        let found = s.find(format!("key = \"{good}\"").as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(s.rule(found[0].rule).id, "keyward");
        let bad = good.replace("BZz", "BZy");
        assert!(s.find(format!("key = \"{bad}\"").as_bytes()).is_empty());
        // Unrelated strings are still the generic rule's.
        assert_eq!(s.find(b"key = \"aB3dE5fG7hI9jK1lM3nO5pQ\"").len(), 1);
    }

    #[test]
    fn the_regex_runs_near_keywords_and_finds_whole_matches() {
        let s = scanner(
            r#"
            [[rule]]
            id = "mid"
            name = "mid"
            severity = "high"
            keywords = ["_mid_"]
            regex = '\b(?P<secret>[a-z]{4,20}_mid_[a-z]{4,20})\b'
            "#,
        );
        assert_eq!(s.rules[0].window, Some(45));
        // Far into the content, keyword in the middle of the match, twice
        // within one window, and once at the very end.
        let mut text = "filler text, ".repeat(10_000);
        let first = text.len();
        text.push_str("qwhrkzvmlpxtsnbgfjdc_mid_mzqprlvkhxwtnsdgcbjf abcd_mid_efgh ");
        text.push_str(&"more filler ".repeat(1000));
        text.push_str("zzzz_mid_yyyy");
        let found = s.find(text.as_bytes());
        let secrets: Vec<&str> = found.iter().map(|m| &text[m.secret.clone()]).collect();
        assert_eq!(
            secrets,
            [
                "qwhrkzvmlpxtsnbgfjdc_mid_mzqprlvkhxwtnsdgcbjf",
                "abcd_mid_efgh",
                "zzzz_mid_yyyy"
            ]
        );
        assert_eq!(found[0].secret.start, first);
    }
}
