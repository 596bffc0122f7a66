//! Baselines: the findings a team has looked at and accepted, so a scan
//! reports only what is new. An entry is a rule, a path and the secret's
//! fingerprint — never the secret — so the same secret in a new file, or a
//! new secret in the same file, is still reported.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::finding::Finding;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct BaselineEntry {
    pub rule: String,
    pub path: String,
    pub fingerprint: String,
}

/// A baseline file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    pub findings: Vec<BaselineEntry>,
}

/// Why a baseline file was refused.
#[derive(Debug, thiserror::Error)]
#[error("not a keyward baseline: {0}")]
pub struct BaselineError(String);

impl Baseline {
    pub const VERSION: u32 = 1;

    pub fn from_findings(findings: &[Finding]) -> Self {
        let mut entries: Vec<BaselineEntry> = findings.iter().map(entry).collect();
        entries.sort_by(|a, b| {
            (&a.path, &a.rule, &a.fingerprint).cmp(&(&b.path, &b.rule, &b.fingerprint))
        });
        entries.dedup();
        Baseline {
            version: Self::VERSION,
            findings: entries,
        }
    }

    pub fn parse(text: &str) -> Result<Self, BaselineError> {
        let baseline: Baseline =
            serde_json::from_str(text).map_err(|e| BaselineError(e.to_string()))?;
        if baseline.version != Self::VERSION {
            return Err(BaselineError(format!(
                "version {} (this keyward reads {})",
                baseline.version,
                Self::VERSION
            )));
        }
        Ok(baseline)
    }

    /// Drops from `findings` every one the baseline holds.
    pub fn suppress(&self, findings: Vec<Finding>) -> Vec<Finding> {
        let known: HashSet<&BaselineEntry> = self.findings.iter().collect();
        findings
            .into_iter()
            .filter(|f| !known.contains(&entry(f)))
            .collect()
    }
}

fn entry(finding: &Finding) -> BaselineEntry {
    BaselineEntry {
        rule: finding.rule_id.clone(),
        path: finding.path.clone(),
        fingerprint: finding.fingerprint.clone(),
    }
}
