//! Scanning files: a parallel directory walk (the `ignore` crate, as in
//! ripgrep) honouring `.gitignore` and `.keywardignore`, each file read into
//! a per-thread buffer and matched whole. Binary files (a NUL byte in the
//! first 8,000 bytes, as git decides) and files over the size limit are
//! skipped and counted, as are files that cannot be read.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ignore::{WalkBuilder, WalkState};

use crate::engine::Scanner;
use crate::finding::{findings_in, sort_findings, Finding};

/// The file of paths (gitignore syntax) and `rule:ID` lines a scan skips.
pub const IGNORE_FILE: &str = ".keywardignore";

/// How a scan of paths behaves.
#[derive(Debug, Clone)]
pub struct WalkConfig {
    /// Files larger than this many bytes are skipped.
    pub max_file_size: u64,
    /// Scanning threads; 0 picks one per core.
    pub threads: usize,
    /// Honour `.gitignore`, `.ignore` and `.keywardignore`.
    pub respect_ignore_files: bool,
}

impl Default for WalkConfig {
    fn default() -> Self {
        WalkConfig {
            max_file_size: 25 << 20,
            threads: 0,
            respect_ignore_files: true,
        }
    }
}

/// Counters a scan updates as it goes, so a progress bar can read them.
#[derive(Debug, Default)]
pub struct Stats {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub skipped_binary: AtomicU64,
    pub skipped_large: AtomicU64,
    pub unreadable: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            skipped_binary: self.skipped_binary.load(Ordering::Relaxed),
            skipped_large: self.skipped_large.load(Ordering::Relaxed),
            unreadable: self.unreadable.load(Ordering::Relaxed),
        }
    }
}

/// A reading of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub files: u64,
    pub bytes: u64,
    pub skipped_binary: u64,
    pub skipped_large: u64,
    pub unreadable: u64,
}

/// Whether `content` looks binary: a NUL byte near the start.
pub fn is_binary(content: &[u8]) -> bool {
    memchr::memchr(0, &content[..content.len().min(8000)]).is_some()
}

/// The rule ids a `.keywardignore` file disables (`rule:ID` lines).
pub fn ignored_rules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("rule:"))
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect()
}

/// Scans files and directories; returns the findings in path order.
pub fn scan_paths(
    scanner: &Scanner,
    paths: &[PathBuf],
    config: &WalkConfig,
    stats: &Stats,
) -> Vec<Finding> {
    let Some((first, rest)) = paths.split_first() else {
        return Vec::new();
    };
    let mut builder = WalkBuilder::new(first);
    for path in rest {
        builder.add(path);
    }
    let respect = config.respect_ignore_files;
    builder
        .hidden(false)
        .git_ignore(respect)
        .git_global(respect)
        .git_exclude(respect)
        .ignore(respect)
        .parents(respect)
        .threads(config.threads)
        // Git's own store is for history scans; its objects are compressed.
        .filter_entry(|entry| entry.file_name() != ".git");
    if respect {
        builder.add_custom_ignore_filename(IGNORE_FILE);
    }
    let found = Mutex::new(Vec::new());
    builder.build_parallel().run(|| {
        let found = &found;
        let mut buffer = Vec::new();
        Box::new(move |entry| {
            let Ok(entry) = entry else {
                stats.unreadable.fetch_add(1, Ordering::Relaxed);
                return WalkState::Continue;
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            let findings = scan_file(scanner, entry.path(), config, stats, &mut buffer);
            if !findings.is_empty() {
                found
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(findings);
            }
            WalkState::Continue
        })
    });
    let mut found = found
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sort_findings(&mut found);
    found
}

fn scan_file(
    scanner: &Scanner,
    path: &Path,
    config: &WalkConfig,
    stats: &Stats,
    buffer: &mut Vec<u8>,
) -> Vec<Finding> {
    buffer.clear();
    let read = File::open(path).and_then(|file| {
        let size = file.metadata()?.len();
        if size > config.max_file_size {
            return Ok(size);
        }
        // Room for the whole file at once: growing the buffer as it fills
        // would fault in fresh pages for every large file. One byte more
        // than the limit still tells a file that grew apart.
        buffer.reserve(size as usize + 1);
        file.take(config.max_file_size + 1)
            .read_to_end(buffer)
            .map(|n| n as u64)
    });
    let Ok(size) = read else {
        stats.unreadable.fetch_add(1, Ordering::Relaxed);
        return Vec::new();
    };
    if size > config.max_file_size {
        stats.skipped_large.fetch_add(1, Ordering::Relaxed);
        return Vec::new();
    }
    scan_content(scanner, &path.to_string_lossy(), buffer, stats)
}

/// Scans one file's content at `name` and counts it, unless it is binary.
pub(crate) fn scan_content(
    scanner: &Scanner,
    name: &str,
    content: &[u8],
    stats: &Stats,
) -> Vec<Finding> {
    if is_binary(content) {
        stats.skipped_binary.fetch_add(1, Ordering::Relaxed);
        return Vec::new();
    }
    stats.files.fetch_add(1, Ordering::Relaxed);
    stats
        .bytes
        .fetch_add(content.len() as u64, Ordering::Relaxed);
    findings_in(scanner, name, content)
}

/// Scans everything `reader` yields (standard input), up to the size limit.
pub fn scan_reader(
    scanner: &Scanner,
    name: &str,
    reader: impl Read,
    config: &WalkConfig,
    stats: &Stats,
) -> std::io::Result<Vec<Finding>> {
    let mut buffer = Vec::new();
    reader
        .take(config.max_file_size + 1)
        .read_to_end(&mut buffer)?;
    if buffer.len() as u64 > config.max_file_size {
        stats.skipped_large.fetch_add(1, Ordering::Relaxed);
        return Ok(Vec::new());
    }
    Ok(scan_content(scanner, name, &buffer, stats))
}
