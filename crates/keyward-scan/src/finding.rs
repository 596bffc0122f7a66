//! What a scan reports: a finding names the rule, where the secret is and,
//! in history scans, the commit that first brought it in. The secret itself
//! is held only to fingerprint it and to report a Keyward key to the server;
//! it is never printed — output shows a short prefix.

use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::engine::{Match, Scanner};
use crate::rules::Severity;

/// A found secret's bytes. No `Debug`, no `Serialize`; wiped on drop.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Self {
        Secret(Zeroizing::new(bytes.to_vec()))
    }

    /// The secret itself, for reporting it to the server that can revoke it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The first few characters and the length: enough to recognise it,
    /// never enough to use it. A phrase of words (a seed) shows only how
    /// many words it has: its first word is already part of the secret.
    pub fn redacted(&self) -> String {
        let text = String::from_utf8_lossy(&self.0);
        let words = text.split_ascii_whitespace().count();
        if words > 1 && !text.contains("-----") {
            return format!("… ({words} words)");
        }
        let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
        let shown = (chars.len() / 4).min(8);
        let start: String = chars[..shown].iter().collect();
        format!("{start}… ({} chars)", chars.len())
    }
}

/// The commit that first brought a secret into a repository's history.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Commit {
    pub id: String,
    pub author: String,
    pub email: String,
    /// RFC 3339.
    pub date: String,
}

/// One secret found at one place.
pub struct Finding {
    pub rule_id: String,
    pub rule_name: String,
    pub severity: Severity,
    /// As given on the command line, or relative to the repository in git
    /// scans; `-` for standard input.
    pub path: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters of the line.
    pub column: usize,
    pub secret: Secret,
    /// SHA-256 of the rule id and the secret, in hex: what baselines
    /// compare, so a baseline never holds the secret itself.
    pub fingerprint: String,
    pub commit: Option<Commit>,
}

/// The serialisable view of a finding: everything but the secret.
#[derive(Serialize)]
pub struct FindingView<'a> {
    pub rule: &'a str,
    pub name: &'a str,
    pub severity: Severity,
    pub path: &'a str,
    pub line: usize,
    pub column: usize,
    pub redacted: String,
    pub fingerprint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<&'a Commit>,
}

impl Finding {
    pub fn view(&self) -> FindingView<'_> {
        FindingView {
            rule: &self.rule_id,
            name: &self.rule_name,
            severity: self.severity,
            path: &self.path,
            line: self.line,
            column: self.column,
            redacted: self.secret.redacted(),
            fingerprint: &self.fingerprint,
            commit: self.commit.as_ref(),
        }
    }
}

/// The fingerprint of a secret found by a rule.
pub fn fingerprint(rule_id: &str, secret: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(rule_id.as_bytes());
    hasher.update([0]);
    hasher.update(secret);
    base16ct::lower::encode_string(&hasher.finalize())
}

/// Orders findings by path, then position, as every scan reports them.
pub(crate) fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
}

/// Scans `content` and turns the matches into findings at `path`.
pub fn findings_in(scanner: &Scanner, path: &str, content: &[u8]) -> Vec<Finding> {
    let matches = scanner.find(content);
    to_findings(scanner, path, content, &matches)
}

/// Findings for `matches` (in order of position) in `content`.
pub fn to_findings(
    scanner: &Scanner,
    path: &str,
    content: &[u8],
    matches: &[Match],
) -> Vec<Finding> {
    let mut line = 1;
    let mut line_start = 0;
    let mut counted = 0;
    matches
        .iter()
        .map(|m| {
            // Matches come in order of position, so lines are counted once.
            for newline in memchr::memchr_iter(b'\n', &content[counted..m.secret.start]) {
                line += 1;
                line_start = counted + newline + 1;
            }
            counted = m.secret.start;
            let column = String::from_utf8_lossy(&content[line_start..m.secret.start])
                .chars()
                .count()
                + 1;
            let rule = scanner.rule(m.rule);
            let secret = &content[m.secret.clone()];
            Finding {
                rule_id: rule.id.clone(),
                rule_name: rule.name.clone(),
                severity: rule.severity,
                path: path.to_owned(),
                line,
                column,
                fingerprint: fingerprint(&rule.id, secret),
                secret: Secret::new(secret),
                commit: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_shows_a_quarter_at_most_eight() {
        assert_eq!(
            Secret::new(b"ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789").redacted(),
            "ghp_aBcD… (40 chars)"
        );
        assert_eq!(Secret::new(b"hunter2hunter").redacted(), "hun… (13 chars)");
        assert_eq!(Secret::new(b"abc").redacted(), "… (3 chars)");
        // The BIP-39 12-word test vector.
        let phrase = b"legal winner thank year wave sausage worth useful legal winner thank yellow"; // keyward:allow
        assert_eq!(Secret::new(phrase).redacted(), "… (12 words)");
    }

    #[test]
    fn fingerprints_depend_on_rule_and_secret() {
        let a = fingerprint("r1", b"s");
        assert_eq!(a.len(), 64);
        assert_ne!(a, fingerprint("r2", b"s"));
        assert_ne!(a, fingerprint("r1", b"t"));
    }

    #[test]
    fn a_fingerprint_is_the_lower_case_hex_of_sha256_of_rule_nul_secret() {
        // Baselines store fingerprints, so their text must never change.
        assert_eq!(
            fingerprint("r1", b"s"),
            "f608fed53210b8e76c1a52ad992ffc6c2c31cccb6e8a3780c905e619553d12bc"
        );
    }
}
