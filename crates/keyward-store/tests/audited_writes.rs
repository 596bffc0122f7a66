//! Every audited write runs through the one helper, `audited`, that writes
//! audit events: it is where a hash chain over the audit log will be kept,
//! and an event written around it would be missing from the chain. Nothing
//! at run time tells an event the helper wrote from one written around it,
//! so these checks read the implementation's source, as a tidy test does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::path::Path;

/// Methods that begin a transaction of their own, outside `audited`, and
/// why they write no audit event.
const UNAUDITED_TRANSACTIONS: &[(&str, &str)] = &[
    (
        "lease_credits",
        "a lease serves verification traffic, which is counted, not audited",
    ),
    (
        "record_usage",
        "a usage flush counts verifications and changes no record",
    ),
    (
        "start_chain",
        "it chains the events written before the chain, once, and adds none",
    ),
];

/// Methods that take an audit event and hand it to another method, which
/// runs the write through `audited`.
const DELEGATING: &[(&str, &str)] = &[("revoke_token", "revoke_token_tree")];

#[test]
fn audit_rows_are_written_by_one_statement() {
    let sources = sources();
    check_count(&sources, "INSERT INTO audit_events", 1);
    // The chain columns of the events written before there was a chain,
    // filled once when the chain starts.
    check_count(&sources, "UPDATE audit_events", 1);
    check_count(&sources, "DELETE FROM audit_events", 0);
    let (file, text) = sources
        .iter()
        .find(|(_, text)| text.contains("INSERT INTO audit_events"))
        .unwrap();
    let at = text.find("INSERT INTO audit_events").unwrap();
    assert_eq!(
        enclosing_fn(text, at),
        "insert_events",
        "{file}: audit rows are inserted outside insert_events"
    );
}

#[test]
fn only_the_helper_inserts_events() {
    let sources = sources();
    let mut calls = Vec::new();
    for (file, text) in &sources {
        for (at, _) in text.match_indices("insert_events(") {
            if !text[..at].ends_with("fn ") {
                calls.push((file.clone(), enclosing_fn(text, at)));
            }
        }
    }
    assert_eq!(
        calls,
        [("common/audit.rs".to_owned(), "audited".to_owned())],
        "insert_events must be called by audited alone"
    );
}

#[test]
fn every_write_that_takes_an_event_runs_through_the_helper() {
    let mut checked = 0;
    for (file, text) in sources().iter().filter(|(f, _)| f.starts_with("common/")) {
        for (name, signature, body) in methods(text) {
            if !signature.contains("AuditEvent") {
                continue;
            }
            checked += 1;
            let through = match DELEGATING.iter().find(|(m, _)| *m == name) {
                Some((_, to)) => format!("self.{to}("),
                None => "self.audited(".to_owned(),
            };
            // Whitespace aside: `self` and `.audited(` may sit on two lines.
            let body: String = body.split_whitespace().collect();
            assert!(
                body.contains(&through),
                "{file}: {name} takes an audit event but does not call {through}…)"
            );
        }
    }
    // Every audited method of every area, so that a change in how methods
    // are written cannot make this test check nothing.
    assert!(checked >= 27, "only {checked} audited methods found");
}

#[test]
fn transactions_begin_in_the_helper_or_write_no_event() {
    for (file, text) in &sources() {
        for (at, _) in text.match_indices(".begin()") {
            let name = enclosing_fn(text, at);
            assert!(
                name == "audited" || UNAUDITED_TRANSACTIONS.iter().any(|(m, _)| *m == name),
                "{file}: {name} begins a transaction of its own; run it through audited, \
                 or list it in UNAUDITED_TRANSACTIONS with the reason it writes no event"
            );
        }
    }
}

/// Each source file of the crate, by its path under `src/`, without
/// comments (which name the helpers they describe).
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text: String = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let name = path.strip_prefix(&src).unwrap().to_string_lossy();
                found.push((name.replace('\\', "/"), text));
            }
        }
    }
    found.sort();
    assert!(
        found.iter().any(|(f, _)| f == "common/audit.rs"),
        "the sources were not found"
    );
    found
}

fn check_count(sources: &[(String, String)], needle: &str, want: usize) {
    let found: usize = sources.iter().map(|(_, t)| t.matches(needle).count()).sum();
    assert_eq!(found, want, "`{needle}` appears {found} times, not {want}");
}

/// The name of the function whose body holds byte `at`: the last one
/// declared before it (bodies here declare no functions inside).
fn enclosing_fn(text: &str, at: usize) -> String {
    let before = &text[..at];
    let start = before.rfind("fn ").expect("inside a function") + 3;
    before[start..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The methods (functions taking `&self`) of a source: name, signature up
/// to the body, and the text up to the next function.
fn methods(text: &str) -> Vec<(String, &str, &str)> {
    let starts: Vec<usize> = text.match_indices("async fn ").map(|(at, _)| at).collect();
    let mut found = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let item = &text[start..end];
        let Some(open) = item.find('{') else { continue };
        let signature = &item[..open];
        if !signature.contains("&self") {
            continue;
        }
        let name = item["async fn ".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        found.push((name, signature, &item[open..]));
    }
    found
}
