//! Git: the staged index (for pre-commit hooks) and full history.
//!
//! Both drive the `git` command rather than a Rust reimplementation: git is
//! on every machine that has a repository, its pack decoding is the
//! reference, and history scans stay parallel by running one
//! `git cat-file --batch` per scanning thread. A history scan lists every
//! commit of every ref oldest first with the blobs it brought in
//! (`git log --all -m --raw`), keeps each blob's first commit and path, and
//! reads each unique blob exactly once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crate::engine::Scanner;
use crate::finding::{sort_findings, Commit, Finding};
use crate::walk::{scan_content, Stats, WalkConfig};

/// Why a git scan failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("git {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("unexpected output from git {0}")]
    Protocol(String),
    #[error("reading from git: {0}")]
    Io(#[from] std::io::Error),
}

/// A blob to scan: its id, and where it first appeared.
struct Blob {
    id: String,
    path: String,
    commit: Option<usize>,
}

/// Scans the blobs staged in the index of the repository at `repo` that
/// differ from `HEAD` (added, copied, modified or renamed).
pub fn scan_staged(
    scanner: &Scanner,
    repo: &Path,
    config: &WalkConfig,
    stats: &Stats,
) -> Result<Vec<Finding>, GitError> {
    let output = git(
        repo,
        &[
            "diff",
            "--cached",
            "--raw",
            "-z",
            "--no-abbrev",
            "--no-renames",
            "--diff-filter=ACM",
        ],
    )?;
    let mut blobs = Vec::new();
    let mut tokens = output.split(|&b| b == 0);
    while let Some(meta) = tokens.next() {
        let meta = meta.strip_prefix(b"\n").unwrap_or(meta);
        if meta.is_empty() {
            continue;
        }
        let path = tokens
            .next()
            .ok_or_else(|| GitError::Protocol("diff --raw".into()))?;
        if let Some(id) = new_blob(meta) {
            blobs.push(Blob {
                id,
                path: String::from_utf8_lossy(path).into_owned(),
                commit: None,
            });
        }
    }
    scan_blobs(scanner, repo, blobs, &[], config, stats)
}

/// Scans every unique blob reachable from any ref of the repository at
/// `repo`, each once, reporting the commit and path where it first
/// appeared.
pub fn scan_history(
    scanner: &Scanner,
    repo: &Path,
    config: &WalkConfig,
    stats: &Stats,
) -> Result<Vec<Finding>, GitError> {
    let output = git(
        repo,
        &[
            "log",
            "--all",
            "-m",
            "--reverse",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "-z",
            "--format=%x01%H%x00%an%x00%ae%x00%aI",
        ],
    )?;
    let mut commits: Vec<Commit> = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut blobs: Vec<Blob> = Vec::new();
    let mut tokens = output.split(|&b| b == 0);
    while let Some(token) = tokens.next() {
        let token = token.strip_prefix(b"\n").unwrap_or(token);
        if let Some(id) = token.strip_prefix(b"\x01") {
            let mut field = || {
                tokens
                    .next()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .ok_or_else(|| GitError::Protocol("log header".into()))
            };
            let (author, email, date) = (field()?, field()?, field()?);
            let id = String::from_utf8_lossy(id).into_owned();
            // `-m` repeats a merge once for each parent.
            if commits.last().is_none_or(|c| c.id != id) {
                commits.push(Commit {
                    id,
                    author,
                    email,
                    date,
                });
            }
        } else if token.starts_with(b":") {
            let path = tokens
                .next()
                .ok_or_else(|| GitError::Protocol("log --raw".into()))?;
            let Some(id) = new_blob(token) else { continue };
            if first_seen.contains_key(&id) {
                continue;
            }
            first_seen.insert(id.clone(), blobs.len());
            blobs.push(Blob {
                id,
                path: String::from_utf8_lossy(path).into_owned(),
                commit: Some(commits.len().saturating_sub(1)),
            });
        }
    }
    scan_blobs(scanner, repo, blobs, &commits, config, stats)
}

/// From a `--raw` entry's `:old-mode new-mode old-id new-id status`, the
/// new blob's id when it is a regular file's content.
fn new_blob(meta: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(meta).ok()?;
    let mut fields = text.trim_start_matches(':').split(' ');
    let (_old_mode, new_mode, _old_id, new_id) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    // Regular files only: not symlinks (120000), submodules (160000) or
    // deletions (000000).
    let regular = new_mode == "100644" || new_mode == "100755";
    (regular && new_id.bytes().any(|b| b != b'0')).then(|| new_id.to_owned())
}

fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(GitError::Spawn)?;
    if !output.status.success() {
        return Err(GitError::Failed {
            command: args.first().copied().unwrap_or_default().to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

/// Reads `blobs` through `git cat-file --batch`, one process per thread,
/// and scans each.
fn scan_blobs(
    scanner: &Scanner,
    repo: &Path,
    blobs: Vec<Blob>,
    commits: &[Commit],
    config: &WalkConfig,
    stats: &Stats,
) -> Result<Vec<Finding>, GitError> {
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
    .min(blobs.len().max(1));
    let chunk = blobs.len().div_ceil(threads).max(1);
    let found = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for part in blobs.chunks(chunk) {
            let (found, failure) = (&found, &failure);
            scope.spawn(
                move || match scan_part(scanner, repo, part, commits, config, stats) {
                    Ok(findings) => found
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend(findings),
                    Err(e) => {
                        *failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    }
                },
            );
        }
    });
    if let Some(e) = failure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    let mut found = found
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sort_findings(&mut found);
    Ok(found)
}

fn scan_part(
    scanner: &Scanner,
    repo: &Path,
    blobs: &[Blob],
    commits: &[Commit],
    config: &WalkConfig,
    stats: &Stats,
) -> Result<Vec<Finding>, GitError> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(GitError::Spawn)?;
    let (Some(mut input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(GitError::Protocol("cat-file pipes".into()));
    };
    // Ids go in on their own thread so neither pipe can fill up and stall.
    let ids: Vec<u8> = blobs
        .iter()
        .flat_map(|b| b.id.bytes().chain(std::iter::once(b'\n')))
        .collect();
    let writer = std::thread::spawn(move || input.write_all(&ids));
    let mut reader = BufReader::with_capacity(1 << 16, output);
    let mut header = String::new();
    let mut content = Vec::new();
    let mut findings = Vec::new();
    for blob in blobs {
        header.clear();
        reader.read_line(&mut header)?;
        // `<id> blob <size>`, or `<id> missing`.
        let mut fields = header.split_whitespace();
        let (Some(_), Some(kind)) = (fields.next(), fields.next()) else {
            return Err(GitError::Protocol("cat-file header".into()));
        };
        if kind != "blob" {
            stats.unreadable.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let size: u64 = fields
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| GitError::Protocol("cat-file size".into()))?;
        if size > config.max_file_size {
            std::io::copy(&mut (&mut reader).take(size + 1), &mut std::io::sink())?;
            stats.skipped_large.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        content.clear();
        content.reserve(size as usize);
        (&mut reader).take(size).read_to_end(&mut content)?;
        let mut newline = [0u8; 1];
        reader.read_exact(&mut newline)?;
        if content.len() as u64 != size {
            return Err(GitError::Protocol("cat-file content".into()));
        }
        let mut found = scan_content(scanner, &blob.path, &content, stats);
        if let Some(commit) = blob.commit.and_then(|i| commits.get(i)) {
            for f in &mut found {
                f.commit = Some(commit.clone());
            }
        }
        findings.extend(found);
    }
    drop(reader);
    let _ = writer.join();
    let _ = child.wait();
    Ok(findings)
}
