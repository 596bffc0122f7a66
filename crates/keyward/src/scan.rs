//! `keyward scan`: finds secrets in files, standard input, the staged index
//! and git history. Exit status 0 when nothing is found, 1 when something
//! is, 2 on error.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_proto::{ErrorResponse, Leak, LeakReport};
use keyward_scan::report::{self, Format};

use crate::output::outln;
use keyward_scan::walk::{self, StatsSnapshot};
use keyward_scan::{engine, git, Baseline, RuleSet, Scanner, Stats, WalkConfig};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ScanArgs {
    #[command(subcommand)]
    command: Option<ScanCommand>,
    /// Files and directories to scan (default: the current directory); `-`
    /// reads standard input. With --git or --staged: the repository.
    paths: Vec<PathBuf>,
    /// Scan the full git history: every blob reachable from any ref, once.
    #[arg(long, conflicts_with = "staged")]
    git: bool,
    /// Scan the changes staged for commit (for pre-commit hooks).
    #[arg(long)]
    staged: bool,
    /// Output format: text, json, jsonl or sarif.
    #[arg(long, default_value = "text")]
    format: Format,
    /// Write the findings to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Suppress the findings recorded in this baseline file.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Record this scan's findings as the baseline in this file.
    #[arg(long)]
    write_baseline: Option<PathBuf>,
    /// A rules file of your own, added to the built-in rules (repeatable).
    #[arg(long = "rules")]
    rules_files: Vec<PathBuf>,
    /// Do not honour .gitignore, .ignore and .keywardignore.
    #[arg(long)]
    no_ignore: bool,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 25 << 20)]
    max_file_size: u64,
    /// Scanning threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress bar and no summary line.
    #[arg(long, short)]
    quiet: bool,
    /// Send the Keyward keys found to this Keyward server, which revokes
    /// each one that is valid (`POST /v1/leaks`).
    #[arg(long, value_name = "URL")]
    report: Option<String>,
    /// Admin token with the leaks:report scope, for --report.
    #[arg(long, env = "KEYWARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum ScanCommand {
    /// The rules: `list` them, or `check` each against its examples.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
        /// A rules file of your own, added to the built-in rules.
        #[arg(long = "rules", global = true)]
        rules_files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Every rule: id, severity, validator and name.
    List,
    /// Every rule's examples must match and negative examples must not.
    Check,
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    if let Some(ScanCommand::Rules {
        command,
        rules_files,
    }) = &args.command
    {
        let rules = load_rules(rules_files, &[])?;
        return match command {
            RulesCommand::List => list_rules(&rules),
            RulesCommand::Check => check_rules(&rules),
        };
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let root = if paths.len() == 1 && paths[0].is_dir() {
        paths[0].clone()
    } else {
        PathBuf::from(".")
    };
    let ignored = if args.no_ignore {
        Vec::new()
    } else {
        std::fs::read_to_string(root.join(walk::IGNORE_FILE))
            .map(|text| walk::ignored_rules(&text))
            .unwrap_or_default()
    };
    let rules = load_rules(&args.rules_files, &ignored)?;
    let scanner = Scanner::new(&rules).context("compiling the rules")?;
    let config = WalkConfig {
        max_file_size: args.max_file_size,
        threads: args.threads,
        respect_ignore_files: !args.no_ignore,
    };
    let baseline = match &args.baseline {
        Some(path) => Some(
            Baseline::parse(
                &std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };

    let stats = Arc::new(Stats::default());
    let progress =
        (!args.quiet && std::io::stderr().is_terminal()).then(|| Progress::start(&stats));
    let scanned = if args.git || args.staged {
        if paths.len() > 1 {
            bail!("--git and --staged take one repository");
        }
        if args.git {
            git::scan_history(&scanner, &paths[0], &config, &stats)
        } else {
            git::scan_staged(&scanner, &paths[0], &config, &stats)
        }
        .map_err(anyhow::Error::from)
    } else {
        scan_paths(&scanner, &paths, &config, &stats)
    };
    if let Some(progress) = progress {
        progress.finish();
    }
    let mut findings = scanned?;
    let stats = stats.snapshot();

    if let Some(path) = &args.write_baseline {
        let text = serde_json::to_string_pretty(&Baseline::from_findings(&findings))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(baseline) = &baseline {
        findings = baseline.suppress(findings);
    }
    if let Some(url) = &args.report {
        let token = args.token.as_deref().context(
            "--report needs an admin token with leaks:report (--token or KEYWARD_TOKEN)",
        )?;
        let sent = report_leaks(url, token, &findings).await?;
        if !args.quiet {
            eprintln!(
                "reported {sent} Keyward key{} to {url}; the server revokes each one that was valid",
                if sent == 1 { "" } else { "s" }
            );
        }
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(crate::output::Stdout::lock())),
    };
    report::write(&mut out, args.format, &findings, &rules, &stats)?;
    out.flush()?;
    if !args.quiet {
        eprintln!("{}", report::summary(&findings, &stats));
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Sends every finding that is a well-formed Keyward key to the server's
/// leak endpoint, in batches; returns how many were sent.
async fn report_leaks(
    url: &str,
    token: &str,
    findings: &[keyward_scan::Finding],
) -> anyhow::Result<usize> {
    let leaks: Vec<Leak> = findings
        .iter()
        .filter_map(|f| {
            let key = std::str::from_utf8(f.secret.expose()).ok()?;
            keyward_core::ParsedKey::parse(key).ok()?;
            Some(Leak {
                key: key.to_owned(),
                location: Some(format!("{}:{}", f.path, f.line)),
                commit: f.commit.as_ref().map(|c| c.id.clone()),
                source: Some("keyward scan".into()),
            })
        })
        .collect();
    let sent = leaks.len();
    let client = crate::client::http_client()?;
    let endpoint = format!("{}/v1/leaks", url.trim_end_matches('/'));
    // Half the server's limit of 1000 leaks a report.
    let mut leaks = leaks.into_iter().peekable();
    while leaks.peek().is_some() {
        let batch = LeakReport {
            leaks: leaks.by_ref().take(500).collect(),
        };
        let response = client
            .post(&endpoint)
            .bearer_auth(token)
            .json(&batch)
            .send()
            .await
            .with_context(|| format!("cannot reach {endpoint}"))?;
        let status = response.status();
        if !status.is_success() {
            let refusal = response.json::<ErrorResponse>().await.ok();
            bail!(
                "the server refused the report ({status}): {}",
                refusal
                    .as_ref()
                    .map_or("no reason given", |r| r.error.message.as_str())
            );
        }
    }
    Ok(sent)
}

fn scan_paths(
    scanner: &Scanner,
    paths: &[PathBuf],
    config: &WalkConfig,
    stats: &Stats,
) -> anyhow::Result<Vec<keyward_scan::Finding>> {
    let (stdin, files): (Vec<&PathBuf>, Vec<&PathBuf>) =
        paths.iter().partition(|p| p.as_path() == Path::new("-"));
    let mut findings = Vec::new();
    if !stdin.is_empty() {
        findings.extend(
            walk::scan_reader(scanner, "-", std::io::stdin().lock(), config, stats)
                .context("reading standard input")?,
        );
    }
    let files: Vec<PathBuf> = files.into_iter().cloned().collect();
    for path in &files {
        if std::fs::symlink_metadata(path).is_err() {
            bail!("{}: no such file or directory", path.display());
        }
    }
    findings.extend(walk::scan_paths(scanner, &files, config, stats));
    Ok(findings)
}

fn load_rules(files: &[PathBuf], ignored: &[String]) -> anyhow::Result<RuleSet> {
    let mut rules = RuleSet::builtin().context("the built-in rules")?;
    for path in files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        rules.add_toml(&text, &path.display().to_string())?;
    }
    let ignored: HashSet<String> = ignored.iter().cloned().collect();
    rules.remove(&ignored);
    Ok(rules)
}

fn list_rules(rules: &RuleSet) -> anyhow::Result<ExitCode> {
    let mut out = crate::output::Stdout::lock();
    let width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0);
    for rule in rules.rules() {
        let validator = rule
            .validator
            .map(|v| format!("{v:?}").to_lowercase())
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<width$}  {:<8}  {:<10}  {}",
            rule.id, rule.severity, validator, rule.name
        )?;
    }
    writeln!(out, "{} rules", rules.len())?;
    Ok(ExitCode::SUCCESS)
}

fn check_rules(rules: &RuleSet) -> anyhow::Result<ExitCode> {
    let failures = engine::check_examples(rules)?;
    let examples: usize = rules
        .rules()
        .iter()
        .map(|r| r.examples.len() + r.negative_examples.len())
        .sum();
    for failure in &failures {
        outln!("FAIL {failure}");
    }
    outln!(
        "{} rules, {examples} examples: {}",
        rules.len(),
        if failures.is_empty() {
            "all hold".to_owned()
        } else {
            format!("{} failures", failures.len())
        }
    );
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A progress line on a terminal: files, bytes and rate, redrawn a few
/// times a second from the scan's counters.
struct Progress {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Progress {
    fn start(stats: &Arc<Stats>) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let (stats, stop) = (Arc::clone(stats), Arc::clone(&done));
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let s: StatsSnapshot = stats.snapshot();
                let seconds = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{} files, {:.1} MB, {:.0} MB/s",
                    s.files,
                    s.bytes as f64 / 1e6,
                    s.bytes as f64 / 1e6 / seconds
                ));
                bar.tick();
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Progress { done, thread }
    }

    fn finish(self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
