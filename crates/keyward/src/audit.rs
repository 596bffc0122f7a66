//! `keyward audit`: the audit log's hash chain. `verify` checks it offline,
//! straight from the store (`--data-dir`, `--database-url`, `--config`, as
//! `serve` finds it), and exits 0 when it is intact, 1 with the first bad
//! sequence number and what was found there, 2 when it cannot check.
//! `status` asks a server for the chain's head and its last check.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use keyward_core::chain::{from_hex, ChainCheck, ChainRow, ChainedEvent};
use keyward_proto::{AuditExport, AuditStatusView, ChainCheckView, ChainHeadView, ExportedEvent};
use keyward_service::audit_log::{check_chain_with, read_witness, ChainReport, Evidence};
use reqwest::Method;
use serde_json::json;

use crate::client::{call, show, Conn};
use crate::output::outln;
use crate::serve::StoreArgs;

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain from end to end, reading the store
    /// directly: exit 0 when intact, 1 when changed, 2 on error.
    Verify(VerifyArgs),
    /// The chain's head and the server's last check of it.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Write the chain, from a sequence number on, as JSON Lines: every
    /// event with its sequence number and hashes, verifiable with
    /// `verify --export`.
    Export {
        #[command(flatten)]
        conn: Conn,
        /// Events after this sequence number [default: 0, from the first].
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Print the public half of the key that signs checkpoints (base64),
    /// read from the store, for auditors to pin with `verify --public-key`.
    PublicKey {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print `{intact, events, checkpoints, first_bad, head}` as JSON.
    #[arg(long)]
    json: bool,
    /// A witness file (`[audit] witness_file`): its checkpoints must be in
    /// the chain too, so a tail cut with its checkpoints is still found.
    #[arg(long, value_name = "FILE")]
    witness: Option<std::path::PathBuf>,
    /// Verify a file `keyward audit export` wrote instead of the store:
    /// each line's hash and its link to the line before.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["witness", "public_key"])]
    export: Option<std::path::PathBuf>,
    /// The audit key's public half as you know it (base64, from
    /// `keyward audit public-key`), instead of the one stored beside the
    /// chain.
    #[arg(long, value_name = "KEY")]
    public_key: Option<String>,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Export { conn, since } => {
            let c = &conn.connect()?;
            let mut since = since;
            loop {
                let path = format!("/v1/audit/events?since={since}&limit=1000");
                let page: AuditExport =
                    serde_json::from_value(call(c, Method::GET, &path, None).await?)
                        .context("the server's answer is not an export page")?;
                for event in &page.events {
                    outln!("{}", serde_json::to_string(event)?);
                }
                match page.next {
                    Some(next) => since = next,
                    None => return Ok(ExitCode::SUCCESS),
                }
            }
        }
        AuditCommand::PublicKey { store } => {
            let (_, store) = store.open_existing().await?;
            let Some(key) = store
                .audit_key()
                .await
                .context("cannot read the audit key")?
            else {
                bail!(
                    "no checkpoint key yet: an unsealed server makes one with its first checkpoint"
                );
            };
            use base64::Engine as _;
            outln!(
                "{}",
                base64::engine::general_purpose::STANDARD.encode(&key.public_key)
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Status { conn } => {
            let c = &conn.connect()?;
            let value = call(c, Method::GET, "/v1/audit/status", None).await?;
            show(c, &value, |status: AuditStatusView| {
                match status.head {
                    Some(head) => outln!("head: {} ({})", head.sequence, head.hash),
                    None => outln!("head: missing"),
                }
                if let Some(checkpoint) = status.last_checkpoint {
                    outln!(
                        "last checkpoint: {} at {}",
                        checkpoint.sequence,
                        checkpoint.at
                    );
                }
                match status.last_verification {
                    Some(check) => print_check(&check)?,
                    None => outln!("not checked yet"),
                }
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    if let Some(path) = &args.export {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return report(check_export(&text), args.json);
    }
    let mut evidence = Evidence::default();
    if let Some(path) = &args.witness {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        evidence.witnessed = read_witness(&text).map_err(anyhow::Error::msg)?;
    }
    if let Some(key) = &args.public_key {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .context("--public-key must be the 32 bytes of the key in base64")?;
        evidence.public_key = Some(bytes);
    }
    let (_, store) = args.store.open_existing().await?;
    let checked = check_chain_with(store.as_ref(), &evidence)
        .await
        .context("cannot read the audit log")?;
    report(checked, args.json)
}

/// Prints what a check found and gives the exit status: 0 intact, 1 not.
fn report(report: ChainReport, json: bool) -> anyhow::Result<ExitCode> {
    let check = ChainCheckView::of(time::OffsetDateTime::now_utc(), &report);
    let intact = check.intact;
    if json {
        let head = ChainHeadView::from(report.head);
        let value = json!({
            "intact": check.intact,
            "events": check.events,
            "checkpoints": check.checkpoints,
            "first_bad": check.first_bad,
            "head": head,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_check(&check)?;
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Checks an export: the first line's own link is taken as given (an
/// export may start anywhere), every line after must be chained to the one
/// before, and each line's fields must give its hash. A line that is not an
/// exported event is an edit where it stands.
fn check_export(text: &str) -> ChainReport {
    let mut check: Option<ChainCheck> = None;
    let mut last = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(event) = serde_json::from_str::<ExportedEvent>(line) else {
            let mut check = check.unwrap_or_default();
            // Stands in for the line: fails its own check where it is.
            check.push(ChainRow {
                sequence: i64::try_from(last + 1).unwrap_or(i64::MAX),
                ..ChainRow::default()
            });
            return check.finish_stretch();
        };
        let prev = from_hex(&event.prev_hash);
        let check = check.get_or_insert_with(|| {
            ChainCheck::after(
                event.sequence.saturating_sub(1),
                prev.as_deref()
                    .and_then(|p| <[u8; 32]>::try_from(p).ok())
                    .unwrap_or([0xff; 32]),
            )
        });
        last = event.sequence;
        check.push(ChainRow {
            sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
            prev_hash: prev,
            hash: from_hex(&event.hash),
            event: ChainedEvent {
                id: event.id,
                at_ms: event.at_ms,
                actor: event.actor,
                action: event.action,
                target: event.target,
                details: serde_json::to_string(&event.details).unwrap_or_default(),
                api_id: event.api_id,
                environment: event.environment,
            },
        });
    }
    check.unwrap_or_default().finish_stretch()
}

fn print_check(check: &ChainCheckView) -> std::io::Result<()> {
    match &check.first_bad {
        None => outln!("intact: {} events chained", check.events),
        Some(bad) => outln!(
            "TAMPERED at sequence {}: {} ({}); {} events read",
            bad.sequence,
            bad.kind,
            bad.detail,
            check.events
        ),
    }
    Ok(())
}
