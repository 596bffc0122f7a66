//! `keyward operator root-token`: the way back in when no one holds a root
//! admin token (lost, never shown, revoked through a leak report).
//!
//! It works on the store directly, as `serve` finds it (`--data-dir`,
//! `--database-url`, `--config`), so it needs what only the operator of the
//! install has: the store itself and, to prove it is the store's operator,
//! whatever unseals it — `master.key` in the data directory for the `file`
//! seal, the HSM for `pkcs11`, the threshold of unseal shares for `shamir`.
//! Then it creates a new root token, hands it the tokens each full-access
//! token created (`token.adopt`), revokes those full-access tokens, audits
//! it all (`token.recover`, `token.adopt`, `token.revoke`, no actor) and
//! prints the new token once. Running servers drop the revoked tokens through the change feed.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use keyward_service::seal::{Barrier, SealStatus, SealType};
use keyward_store::SealKind;
use serde_json::json;

use crate::output::outln;
use crate::serve::StoreArgs;

/// Options of `keyward operator root-token`.
#[derive(Args)]
pub struct RootTokenArgs {
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: RootTokenArgs, json: bool) -> anyhow::Result<ExitCode> {
    // No log subscriber: the seal's log lines speak to a server's operator
    // ("serving sealed"), and everything this command has to say it prints.
    let (settings, store) = args.store.open_existing().await?;
    if let Some(stored) = store.seal().await.context("cannot read the seal")? {
        let asked = match settings.seal.kind {
            SealType::File => SealKind::File,
            SealType::Shamir => SealKind::Shamir,
            SealType::Pkcs11 => SealKind::Pkcs11,
        };
        if stored.kind != asked {
            bail!(
                "this store is sealed with `{}`, not `{}`: pass --seal {} (or KEYWARD_SEAL, \
                 or the [seal] of the --config) as the server runs with",
                stored.kind.as_str(),
                asked.as_str(),
                stored.kind.as_str()
            );
        }
    }
    let barrier = Barrier::open(&settings.seal, &settings.data_dir, Arc::clone(&store))
        .await
        .context("cannot open the seal")?;
    prove(&barrier, &settings.data_dir).await?;

    let recovered = keyward_service::bootstrap::recover_root(store.as_ref(), &barrier, host_user())
        .await
        .context("cannot issue the new root token")?;
    let (root, plaintext) = (&recovered.root, &recovered.plaintext);
    let revoked: Vec<&str> = recovered.revoked.iter().map(|id| id.as_str()).collect();
    if json {
        let answer = json!({
            "id": root.id.as_str(),
            "token": plaintext.expose(),
            "revoked": revoked,
        });
        outln!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        match revoked.as_slice() {
            [] => eprintln!("keyward: no full-access token was active"),
            ids => eprintln!(
                "keyward: revoked {} full-access token{}: {}",
                ids.len(),
                if ids.len() == 1 { "" } else { "s" },
                ids.join(", ")
            ),
        }
        outln!(
            "root admin token (shown once, store it now): {}",
            plaintext.expose()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses unless this process could unseal the store: the proof that it
/// runs with the operator's access, not only the database's.
async fn prove(barrier: &Barrier, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let status = barrier.status();
    match barrier.kind() {
        SealKind::File | SealKind::Pkcs11 if !status.sealed => Ok(()),
        SealKind::File => {
            let key = data_dir.join("master.key");
            let what = if key.exists() {
                "is not the master key that sealed this store"
            } else {
                "is missing"
            };
            bail!(
                "{} {what}: recovery needs the data directory of a node that serves this \
                 store (or a copy of its master.key)",
                key.display()
            )
        }
        SealKind::Pkcs11 => bail!("the HSM did not unwrap this store's master key"),
        SealKind::Shamir if !status.initialized => {
            // Nothing is sealed yet: the store holds no secret the seal
            // guards, and access to it is all there is to prove.
            eprintln!("keyward: the shamir seal is not initialised; no unseal shares are needed");
            Ok(())
        }
        SealKind::Shamir => unseal_from_stdin(barrier, status).await,
    }
}

/// Reads unseal shares, one a line, until the barrier opens. Each is checked
/// against the stored share digests; the master key they give must open the
/// keyring.
async fn unseal_from_stdin(barrier: &Barrier, status: SealStatus) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!(
            "the store is sealed: {} unseal shares, one a line:",
            status.threshold
        );
    }
    let mut given = 0u8;
    for line in stdin.lock().lines() {
        let line = line.context("cannot read the unseal shares")?;
        let share = line.trim();
        if share.is_empty() {
            continue;
        }
        given = given.saturating_add(1);
        let after = barrier
            .unseal(share)
            .await
            .with_context(|| format!("unseal share {given} was refused"))?;
        if !after.sealed {
            return Ok(());
        }
    }
    bail!(
        "the store's shamir seal is sealed: recovery needs {} unseal shares on standard \
         input, one a line ({given} given)",
        status.threshold
    )
}

/// Every token not revoked that can do everything.
/// The host account running the recovery, for the audit.
fn host_user() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|u| !u.is_empty()))
}
