//! `keyward scan` as developers run it: on directories, standard input, the
//! staged index and git history, with baselines, ignore files and every
//! output format.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use keyward_core::{Environment, PlaintextKey, Prefix};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

fn key(prefix: &str, environment: Environment, seed: u8) -> String {
    let prefix = Prefix::parse(prefix).unwrap();
    let body = [seed; 32];
    PlaintextKey::from_body(&prefix, environment, &body)
        .expose()
        .to_owned()
}

fn scan(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("scan")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_findings(output: &Output) -> Vec<Value> {
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    report["findings"].as_array().unwrap().clone()
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Mallory Dev")
        .env("GIT_AUTHOR_EMAIL", "mallory@example.com")
        .env("GIT_COMMITTER_NAME", "Mallory Dev")
        .env("GIT_COMMITTER_EMAIL", "mallory@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn git_output(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn findings_exit_one_and_never_print_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let live = key("tm", Environment::Live, 7);
    std::fs::write(
        dir.path().join(".env"),
        format!("PORT=8080\nTM_KEY={live}\n"),
    )
    .unwrap();
    let out = scan(dir.path(), &["."]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("critical"), "{stdout}");
    assert!(stdout.contains(".env:2:8"), "{stdout}");
    assert!(stdout.contains("tm_live_"), "{stdout}");
    assert!(!stdout.contains(&live[..20]) && !stderr.contains(&live[..20]));
    assert!(stderr.contains("1 finding (1 critical)"), "{stderr}");

    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("main.rs"), "fn main() {}\n").unwrap();
    assert_eq!(scan(clean.path(), &["."]).status.code(), Some(0));
    let missing = scan(clean.path(), &["no-such-dir"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn standard_input_is_scanned_and_reported_as_dash() {
    let test_key = key("sig", Environment::Test, 9);
    let mut child = Command::new(BIN)
        .args(["scan", "-", "--format", "jsonl", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("curl -H 'X-API-Key: {test_key}' …\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line: Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["path"], "-");
    assert_eq!(line["severity"], "high");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&test_key));
}

#[test]
fn history_finds_a_secret_that_lives_only_in_a_deleted_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let live = key("px", Environment::Live, 3);
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "# prices\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "start"]);
    std::fs::write(repo.join("deploy.sh"), format!("export PX_KEY={live}\n")).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "deploy script"]);
    let leaking_commit = git_output(repo, &["rev-parse", "HEAD"]);
    git(repo, &["rm", "-q", "deploy.sh"]);
    git(repo, &["commit", "-qm", "oops"]);
    // The same content again later, on another branch: one blob, one finding.
    git(repo, &["checkout", "-qb", "later"]);
    std::fs::write(repo.join("again.sh"), format!("export PX_KEY={live}\n")).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "again"]);
    git(repo, &["checkout", "-q", "main"]);

    assert_eq!(
        scan(repo, &["."]).status.code(),
        Some(0),
        "the working tree is clean"
    );
    let out = scan(repo, &["--git", ".", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let findings = json_findings(&out);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let finding = &findings[0];
    assert_eq!(finding["rule"], "keyward-live-key");
    assert_eq!(finding["path"], "deploy.sh");
    assert_eq!(finding["line"], 1);
    assert_eq!(finding["commit"]["id"], leaking_commit.as_str());
    assert_eq!(finding["commit"]["author"], "Mallory Dev");
    assert_eq!(finding["commit"]["email"], "mallory@example.com");
    assert!(finding["commit"]["date"].as_str().unwrap().contains('T'));
}

#[test]
fn staged_scans_the_index_not_the_working_tree() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.txt"), "nothing\n").unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-qm", "start"]);
    assert_eq!(scan(repo, &["--staged"]).status.code(), Some(0));

    let staged = key("tm", Environment::Live, 11);
    std::fs::write(repo.join("config.toml"), format!("key = \"{staged}\"\n")).unwrap();
    git(repo, &["add", "config.toml"]);
    // A secret in the working tree only is not part of the commit.
    let unstaged = key("tm", Environment::Live, 12);
    std::fs::write(repo.join("a.txt"), format!("{unstaged}\n")).unwrap();

    let out = scan(repo, &["--staged", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let findings = json_findings(&out);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["path"], "config.toml");
    assert_eq!(findings[0]["line"], 1);
}

#[test]
fn a_baseline_suppresses_exactly_the_findings_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (a, b) = (
        key("tm", Environment::Live, 21),
        key("tm", Environment::Test, 22),
    );
    std::fs::write(root.join("one.env"), format!("A={a}\n")).unwrap();
    std::fs::write(root.join("two.env"), format!("B={b}\n")).unwrap();
    let out = scan(
        root,
        &["one.env", "two.env", "--write-baseline", "baseline.json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let baseline = std::fs::read_to_string(root.join("baseline.json")).unwrap();
    assert!(!baseline.contains(&a[8..]) && !baseline.contains(&b[8..]));

    let out = scan(root, &["one.env", "two.env", "--baseline", "baseline.json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A new secret, and a known secret in a new place, are both reported.
    let c = key("tm", Environment::Live, 23);
    std::fs::write(root.join("one.env"), format!("A={a}\nC={c}\n")).unwrap();
    std::fs::write(root.join("three.env"), format!("B={b}\n")).unwrap();
    let out = scan(
        root,
        &[
            "one.env",
            "two.env",
            "three.env",
            "--baseline",
            "baseline.json",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let mut reported: Vec<(String, u64)> = json_findings(&out)
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    reported.sort();
    assert_eq!(
        reported,
        vec![("one.env".to_owned(), 2), ("three.env".to_owned(), 1)]
    );

    let out = scan(root, &["one.env", "--baseline", "one.env"]);
    assert_eq!(out.status.code(), Some(2), "a file that is not a baseline");
}

#[test]
fn ignore_files_allow_comments_binary_and_large_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let k = |seed| key("tm", Environment::Live, seed);
    // A git repository, so .gitignore applies.
    git(root, &["init", "-q"]);
    std::fs::write(root.join(".gitignore"), "build/\n").unwrap();
    std::fs::create_dir(root.join("build")).unwrap();
    std::fs::write(root.join("build/out.txt"), k(31)).unwrap();
    std::fs::write(
        root.join(".keywardignore"),
        "fixtures/\nrule:keyward-test-key\n",
    )
    .unwrap();
    std::fs::create_dir(root.join("fixtures")).unwrap();
    std::fs::write(root.join("fixtures/keys.txt"), k(32)).unwrap();
    std::fs::write(
        root.join("docs.md"),
        format!(
            "use `{}` # keyward:allow\ntest key {}\n",
            k(33),
            key("tm", Environment::Test, 34)
        ),
    )
    .unwrap();
    let mut binary = vec![0u8; 64];
    binary.extend_from_slice(k(35).as_bytes());
    std::fs::write(root.join("blob.bin"), binary).unwrap();
    std::fs::write(
        root.join("big.txt"),
        format!("{}\n{}", "x".repeat(5000), k(36)),
    )
    .unwrap();
    // Not UTF-8 at all, with a key in the middle: still found.
    let mut latin1 = vec![0xe9u8, 0xff, b'\n'];
    latin1.extend_from_slice(k(37).as_bytes());
    std::fs::write(root.join("latin1.txt"), latin1).unwrap();

    let out = scan(root, &[".", "--format", "json", "--max-file-size", "4096"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["./latin1.txt"], "{report}");
    assert_eq!(report["stats"]["skipped_binary"], 1);
    assert_eq!(report["stats"]["skipped_large"], 1);

    let out = scan(
        root,
        &[
            ".",
            "--format",
            "json",
            "--no-ignore",
            "--max-file-size",
            "100000",
        ],
    );
    let found = json_findings(&out).len();
    // build/, fixtures/, the test key, big.txt and latin1.txt; the allowed
    // line and the binary file stay out.
    assert_eq!(found, 5, "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn rules_list_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = scan(dir.path(), &["rules", "list"]);
    assert_eq!(out.status.code(), Some(0));
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("keyward-live-key"), "{listing}");
    let out = scan(dir.path(), &["rules", "check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A user's rule whose example does not match fails the check.
    std::fs::write(
        dir.path().join("mine.toml"),
        r#"
[[rule]]
id = "internal-token"
name = "Internal token"
severity = "high"
keywords = ["itk_"]
regex = 'itk_[a-f0-9]{32}'
examples = ["itk_0123"]
negative_examples = ["itk_"]
"#,
    )
    .unwrap();
    let out = scan(dir.path(), &["rules", "check", "--rules", "mine.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("internal-token: example 1 is not found"));
    std::fs::write(dir.path().join("bad.toml"), "[[rule]]\nid = \"x\"\n").unwrap();
    let out = scan(dir.path(), &["rules", "list", "--rules", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

/// SARIF 2.1.0 output checked against the OASIS schema, with Python's
/// `jsonschema`; `.ci/run` provides both.
#[test]
#[ignore = "needs KEYWARD_TEST_SARIF_SCHEMA and KEYWARD_TEST_SARIF_PYTHON"]
fn sarif_output_validates_against_the_schema() {
    let schema = std::env::var("KEYWARD_TEST_SARIF_SCHEMA").expect("KEYWARD_TEST_SARIF_SCHEMA");
    let python = std::env::var("KEYWARD_TEST_SARIF_PYTHON").expect("KEYWARD_TEST_SARIF_PYTHON");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(
        root.join("a b.env"),
        format!("K={}\n", key("tm", Environment::Live, 41)),
    )
    .unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "one"]);
    for args in [
        &[".", "--format", "sarif", "-o", "plain.sarif"][..],
        &["--git", ".", "--format", "sarif", "-o", "history.sarif"][..],
    ] {
        assert_eq!(scan(root, args).status.code(), Some(1));
    }
    std::fs::write(root.join("empty.env"), "nothing").unwrap();
    assert_eq!(
        scan(
            root,
            &["empty.env", "--format", "sarif", "-o", "empty.sarif"]
        )
        .status
        .code(),
        Some(0)
    );
    for file in ["plain.sarif", "history.sarif", "empty.sarif"] {
        let out = Command::new(&python)
            .args([
                "-c",
                "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1]))); print('valid')",
                &schema,
            ])
            .arg(root.join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
