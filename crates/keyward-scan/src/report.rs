//! Output formats: human text, JSON, JSON Lines and SARIF 2.1.0. None of
//! them carries a secret — only its redacted start and fingerprint.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::json;

use crate::finding::Finding;
use crate::rules::{RuleSet, Severity};
use crate::walk::StatsSnapshot;

/// How findings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    JsonLines,
    Sarif,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "jsonl" => Ok(Format::JsonLines),
            "sarif" => Ok(Format::Sarif),
            other => Err(format!(
                "unknown format {other:?}: text, json, jsonl or sarif"
            )),
        }
    }
}

/// Writes `findings` in `format`.
pub fn write(
    out: &mut dyn Write,
    format: Format,
    findings: &[Finding],
    rules: &RuleSet,
    stats: &StatsSnapshot,
) -> io::Result<()> {
    match format {
        Format::Text => text(out, findings),
        Format::Json => {
            let views: Vec<_> = findings.iter().map(Finding::view).collect();
            serde_json::to_writer_pretty(&mut *out, &json!({ "findings": views, "stats": stats }))?;
            writeln!(out)
        }
        Format::JsonLines => {
            for finding in findings {
                serde_json::to_writer(&mut *out, &finding.view())?;
                writeln!(out)?;
            }
            Ok(())
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &sarif(findings, rules))?;
            writeln!(out)
        }
    }
}

fn text(out: &mut dyn Write, findings: &[Finding]) -> io::Result<()> {
    for f in findings {
        writeln!(out, "{:<8}  {}  {}", f.severity, f.rule_id, f.rule_name)?;
        writeln!(
            out,
            "          {}:{}:{}  {}",
            f.path,
            f.line,
            f.column,
            f.secret.redacted()
        )?;
        if let Some(c) = &f.commit {
            let short = &c.id[..c.id.len().min(12)];
            writeln!(
                out,
                "          first in {short} by {} <{}> on {}",
                c.author, c.email, c.date
            )?;
        }
    }
    Ok(())
}

/// One line that sums up a scan, for standard error.
pub fn summary(findings: &[Finding], stats: &StatsSnapshot) -> String {
    let mut by_severity: BTreeMap<std::cmp::Reverse<Severity>, usize> = BTreeMap::new();
    for f in findings {
        *by_severity
            .entry(std::cmp::Reverse(f.severity))
            .or_default() += 1;
    }
    let severities: Vec<String> = by_severity
        .iter()
        .map(|(s, n)| format!("{n} {}", s.0))
        .collect();
    let mut line = format!(
        "{} finding{}{} in {} file{} ({:.1} MB)",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        if severities.is_empty() {
            String::new()
        } else {
            format!(" ({})", severities.join(", "))
        },
        stats.files,
        if stats.files == 1 { "" } else { "s" },
        stats.bytes as f64 / 1e6,
    );
    let skipped = [
        (stats.skipped_binary, "binary"),
        (stats.skipped_large, "too large"),
        (stats.unreadable, "unreadable"),
    ];
    let skipped: Vec<String> = skipped
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    if !skipped.is_empty() {
        line.push_str(&format!("; skipped {}", skipped.join(", ")));
    }
    line
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// GitHub code scanning reads `security-severity` as a CVSS-like score.
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// A path as a relative URI reference: forward slashes, and every byte
/// outside the unreserved and path characters percent-encoded.
fn uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let path = path.strip_prefix("./").unwrap_or(&path);
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
struct SarifRule<'a> {
    id: &'a str,
    name: String,
    #[serde(rename = "shortDescription")]
    short_description: serde_json::Value,
    #[serde(rename = "fullDescription", skip_serializing_if = "Option::is_none")]
    full_description: Option<serde_json::Value>,
    #[serde(rename = "defaultConfiguration")]
    default_configuration: serde_json::Value,
    properties: serde_json::Value,
}

/// The SARIF 2.1.0 log of a scan, one run, every rule in the driver.
pub fn sarif(findings: &[Finding], rules: &RuleSet) -> serde_json::Value {
    let driver_rules: Vec<SarifRule> = rules
        .rules()
        .iter()
        .map(|r| SarifRule {
            id: &r.id,
            // SARIF names are identifiers: PascalCase of the id.
            name: r
                .id
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    chars.next().map_or(String::new(), |c| {
                        c.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect(),
            short_description: json!({ "text": r.name }),
            full_description: r.description.as_ref().map(|d| json!({ "text": d })),
            default_configuration: json!({ "level": sarif_level(r.severity) }),
            properties: json!({
                "security-severity": security_severity(r.severity),
                "tags": ["security", "secret"],
            }),
        })
        .collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let mut result = json!({
                "ruleId": f.rule_id,
                "level": sarif_level(f.severity),
                "message": { "text": format!("{} found: {}", f.rule_name, f.secret.redacted()) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&f.path) },
                        "region": { "startLine": f.line, "startColumn": f.column },
                    }
                }],
                "partialFingerprints": { "keywardSecret/v1": f.fingerprint },
            });
            if let Some(index) = rules.rules().iter().position(|r| r.id == f.rule_id) {
                result["ruleIndex"] = json!(index);
            }
            if let Some(c) = &f.commit {
                result["properties"] = json!({ "commit": c });
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "keyward-scan",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": driver_rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_relative_uri_references() {
        assert_eq!(uri("./src/a b.rs"), "src/a%20b.rs");
        assert_eq!(uri("dir\\file#1"), "dir/file%231");
        assert_eq!(uri("é"), "%C3%A9");
    }
}
