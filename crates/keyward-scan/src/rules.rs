//! Rules are data: each names what it finds, how bad a find is, the regex
//! that finds it, the keywords without which it cannot match, and examples
//! that must and must not match. The built-in rules are compiled into the
//! binary from `rules/default.toml`; a user's own file adds to them (or
//! replaces one with the same id).

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validate::Validator;

/// The built-in rules file.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule as written in a rules file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable, kebab-case; what baselines, allow lists and SARIF refer to.
    pub id: String,
    pub name: String,
    pub severity: Severity,
    /// ASCII literals, compared case-insensitively; the regex runs only on
    /// content holding one of them, and only near them: every match must
    /// contain one. Empty means the regex always runs.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The keywords are context anywhere in the content, not part of the
    /// match; the regex then runs over all of it.
    #[serde(default)]
    pub context_keywords: bool,
    /// Run over raw bytes; the secret is the group named `secret`, or the
    /// whole match.
    pub regex: String,
    /// Minimum Shannon entropy of the secret, in bits per byte.
    pub entropy: Option<f64>,
    pub validator: Option<Validator>,
    /// Text each of which must yield a finding of this rule.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Text none of which may yield a finding of this rule.
    #[serde(default)]
    pub negative_examples: Vec<String>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    #[error("rules file {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("rule {id}: bad regex: {message}")]
    Regex { id: String, message: String },
    #[error("rule {id}: {message}")]
    Invalid { id: String, message: String },
}

/// An ordered set of rules with unique ids.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules compiled into the binary.
    pub fn builtin() -> Result<Self, RuleError> {
        let mut set = RuleSet::default();
        set.add_toml(DEFAULT_RULES, "built-in")?;
        Ok(set)
    }

    /// Adds the rules of a TOML rules file; a rule whose id is already
    /// present replaces the earlier one.
    pub fn add_toml(&mut self, text: &str, origin: &str) -> Result<(), RuleError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RuleError::Syntax {
            origin: origin.to_owned(),
            message: e.message().to_owned(),
        })?;
        let mut seen = HashSet::new();
        for rule in file.rule {
            check_rule(&rule)?;
            if !seen.insert(rule.id.clone()) {
                return Err(RuleError::Invalid {
                    id: rule.id,
                    message: format!("defined twice in {origin}"),
                });
            }
            self.push(rule);
        }
        Ok(())
    }

    /// Adds one rule, replacing a rule with the same id.
    pub fn push(&mut self, rule: Rule) {
        match self.rules.iter_mut().find(|r| r.id == rule.id) {
            Some(existing) => *existing = rule,
            None => self.rules.push(rule),
        }
    }

    /// Drops the rules with these ids.
    pub fn remove(&mut self, ids: &HashSet<String>) {
        self.rules.retain(|r| !ids.contains(&r.id));
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn check_rule(rule: &Rule) -> Result<(), RuleError> {
    let invalid = |message: &str| RuleError::Invalid {
        id: rule.id.clone(),
        message: message.to_owned(),
    };
    if rule.id.is_empty()
        || !rule
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid("the id must be kebab-case: a-z, 0-9 and -"));
    }
    if rule.keywords.iter().any(|k| k.is_empty() || !k.is_ascii()) {
        return Err(invalid("keywords must be non-empty ASCII"));
    }
    if rule.entropy.is_some_and(|e| !(0.0..=8.0).contains(&e)) {
        return Err(invalid("entropy is in bits per byte, between 0 and 8"));
    }
    Ok(())
}
