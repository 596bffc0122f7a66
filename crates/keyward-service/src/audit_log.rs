//! Reading the audit log, filtered by the actor's reach like every other
//! read: an actor limited to some APIs or environments sees only events
//! about records of those. Events about no API or environment (seal,
//! tokens, transit) are seen only by actors unlimited in that dimension.
//!
//! The log's hash chain is checked here too: [`check_chain`] reads it
//! whole, offline or in the server, and [`Service::check_audit_chain`]
//! keeps the last result for `GET /v1/audit/status` and records a first
//! finding as `audit.tamper_detected`.

use keyward_core::chain::{checkpoint_message, ChainCheck};
pub use keyward_core::chain::{ChainHead, ChainReport, Checkpoint, Finding, Tamper};
use keyward_core::{AdminScope, AuditAction};
pub use keyward_store::AuditEntry;
use keyward_store::AuditFilter;
use keyward_store::Page;
use keyward_store::{Store, StoreError};
use serde_json::json;
use std::path::PathBuf;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::{Actor, Error, Service};

/// Which events a listing shows.
#[derive(Debug, Clone, Default)]
pub struct AuditListing {
    pub target: Option<String>,
    pub action: Option<String>,
}

impl Service {
    /// A page of audit events within the actor's reach, in the order they
    /// happened. A row that cannot be read back is in its place as
    /// [`AuditEntry::Unreadable`], logged here at `error`.
    pub async fn list_audit(
        &self,
        actor: &Actor,
        listing: AuditListing,
        page: &Page,
    ) -> Result<Vec<AuditEntry>, Error> {
        actor.require(AdminScope::AuditRead)?;
        // Grants of audit:read of several shapes read the union of their
        // APIs across the union of their environments.
        let reach = self.reach_of(actor, AdminScope::AuditRead).await?;
        let filter = AuditFilter {
            target: listing.target,
            action: listing.action,
            api_ids_within: reach.api_ids(),
            environments_within: reach.environments(),
        };
        let entries = self.store.list_audit(&filter, page).await?;
        for entry in &entries {
            if let AuditEntry::Unreadable { id, detail } = entry {
                tracing::error!(event = %id, error = %detail, "an audit row cannot be read back");
            }
        }
        Ok(entries)
    }
}

/// Rows read per query while checking the chain.
const CHAIN_PAGE: u32 = 10_000;

/// What a check of the chain holds it to besides the store itself.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The audit key's public half as the auditor knows it; without it,
    /// the key stored beside the chain.
    pub public_key: Option<[u8; 32]>,
    /// Checkpoints a witness kept outside the database.
    pub witnessed: Vec<Witnessed>,
}

/// A checkpoint as a witness file keeps it, with the public key it was
/// made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    pub checkpoint: Checkpoint,
    pub public_key: [u8; 32],
}

/// Checks the audit log's hash chain as stored against the key stored
/// beside it ([`check_chain_with`] with no further evidence).
pub async fn check_chain(store: &dyn Store) -> Result<ChainReport, StoreError> {
    check_chain_with(store, &Evidence::default()).await
}

/// Checks the audit log's hash chain as stored, from its first event to
/// the head read when the check began (events appended meanwhile are left
/// for the next check), then every checkpoint in the store and every one
/// `evidence` holds: each must be signed by the audit key and name a hash
/// the chain has at its sequence number, and none may lie past the
/// chain's end. An event outside the chain (no sequence number) is a
/// finding too. Of several findings the earliest sequence number is
/// reported.
pub async fn check_chain_with(
    store: &dyn Store,
    evidence: &Evidence,
) -> Result<ChainReport, StoreError> {
    // Checkpoints first: every one read is then at or before the head.
    let mut stored = Vec::new();
    loop {
        let after = stored.last().map_or(0, |c: &Checkpoint| c.sequence);
        let page = store.checkpoints(after, CHAIN_PAGE).await?;
        let full = page.len() == CHAIN_PAGE as usize;
        stored.extend(page);
        if !full {
            break;
        }
    }
    let stored_key = store.audit_key().await?;
    let head = store.chain_head().await?;
    let end = head.map_or(u64::MAX, |head| head.sequence);
    let sequences = stored
        .iter()
        .chain(evidence.witnessed.iter().map(|w| &w.checkpoint))
        .map(|c| c.sequence);
    let mut check = ChainCheck::new().keeping(sequences);
    let mut after = 0;
    let mut past_head = None;
    'pages: loop {
        let rows = store.chain_rows(after, CHAIN_PAGE).await?;
        let full = rows.len() == CHAIN_PAGE as usize;
        for row in rows {
            let sequence = u64::try_from(row.sequence).unwrap_or(0);
            if sequence > end {
                past_head = Some(sequence);
                break 'pages;
            }
            after = after.max(sequence);
            check.push(row);
        }
        if !full {
            break;
        }
    }
    let mut report = check.finish(head);
    // Events past the head read at the start were either appended since,
    // and the head has moved past them, or put there around Keyward.
    if let (Some(sequence), None) = (past_head, &report.finding) {
        let now = store.chain_head().await?;
        if now.is_none_or(|now| now.sequence < sequence) {
            report.note(Finding {
                sequence: end.saturating_add(1),
                kind: Tamper::Inserted,
                detail: "events follow the chain's head",
            });
        }
    }
    if let Some(position) = store.first_unchained().await? {
        report.note(Finding {
            sequence: position,
            kind: Tamper::Inserted,
            detail: "an event has no sequence number",
        });
    }
    let key = evidence.public_key.or_else(|| {
        stored_key
            .as_ref()
            .and_then(|k| <[u8; 32]>::try_from(k.public_key.as_slice()).ok())
    });
    // The key stored beside the chain must be the one the auditor and the
    // witness know: replacing it is tampering even while the checkpoints
    // are still the real key's.
    let stored_public = stored_key
        .as_ref()
        .and_then(|k| <[u8; 32]>::try_from(k.public_key.as_slice()).ok());
    let known = evidence
        .public_key
        .iter()
        .chain(evidence.witnessed.iter().map(|w| &w.public_key));
    if let Some(stored_public) = stored_public {
        if known.into_iter().any(|key| *key != stored_public) {
            let first = stored.first().map_or(1, |c| c.sequence);
            report.note(Finding {
                sequence: first,
                kind: Tamper::BadSignature,
                detail: "the audit key stored beside the chain is not the one known",
            });
        }
    }
    for checkpoint in &stored {
        check_checkpoint(&mut report, checkpoint, key.as_ref(), false);
    }
    for witnessed in &evidence.witnessed {
        let seen = &witnessed.checkpoint;
        if key.is_some_and(|key| key != witnessed.public_key) {
            report.note(Finding {
                sequence: seen.sequence,
                kind: Tamper::BadSignature,
                detail: "the audit key is not the one the witness saw",
            });
        }
        check_checkpoint(&mut report, seen, Some(&witnessed.public_key), true);
    }
    report.checkpoints = (stored.len() + evidence.witnessed.len()) as u64;
    Ok(report)
}

/// Holds one checkpoint to the chain: its signature under `key`, and the
/// hash the chain has at its sequence number.
fn check_checkpoint(
    report: &mut ChainReport,
    checkpoint: &Checkpoint,
    key: Option<&[u8; 32]>,
    witnessed: bool,
) {
    let signed = key.is_some_and(|key| {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&checkpoint.signature) else {
            return false;
        };
        key.verify_strict(&checkpoint.message(), &signature).is_ok()
    });
    if !signed {
        report.note(Finding {
            sequence: checkpoint.sequence,
            kind: Tamper::BadSignature,
            detail: if witnessed {
                "a witnessed checkpoint's signature does not verify"
            } else {
                "a checkpoint's signature does not verify under the audit key"
            },
        });
    }
    if checkpoint.sequence > report.head.sequence {
        report.note(Finding {
            sequence: report.head.sequence + 1,
            kind: Tamper::Truncated,
            detail: if witnessed {
                "a witness saw events past the chain's end"
            } else {
                "a checkpoint covers events past the chain's end"
            },
        });
    } else if report.hash_at(checkpoint.sequence) != Some(checkpoint.hash) {
        report.note(Finding {
            sequence: checkpoint.sequence,
            kind: Tamper::Edited,
            detail: "the chain up to a checkpoint was rewritten",
        });
    }
}

/// Reads a witness file: one JSON object per line, as
/// [`Service::checkpoint`] appends them. A line that cannot be read is an
/// error (its number given), not a finding: the file is the evidence.
pub fn read_witness(text: &str) -> Result<Vec<Witnessed>, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("line {} of the witness file: {what}", n + 1);
        let line: WitnessLine = serde_json::from_str(line).map_err(|_| bad("not a checkpoint"))?;
        let hash = base16ct::mixed::decode_vec(&line.hash)
            .ok()
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| bad("hash is not 32 bytes of hex"))?;
        let public_key = b64
            .decode(&line.public_key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| bad("public_key is not 32 bytes of base64"))?;
        let signature = b64
            .decode(&line.signature)
            .map_err(|_| bad("signature is not base64"))?;
        out.push(Witnessed {
            checkpoint: Checkpoint {
                sequence: line.sequence,
                hash,
                at_ms: line.at,
                key_id: line.key_id,
                signature,
            },
            public_key,
        });
    }
    Ok(out)
}

/// One line of a witness file.
#[derive(serde::Serialize, serde::Deserialize)]
struct WitnessLine {
    sequence: u64,
    /// Hex.
    hash: String,
    /// Milliseconds since the Unix epoch.
    at: i64,
    key_id: String,
    /// Base64 of the 32 bytes.
    public_key: String,
    /// Base64.
    signature: String,
}

/// How this node makes checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// A checkpoint at least this often while events are appended.
    pub interval: std::time::Duration,
    /// And after at most this many events.
    pub events: u64,
    /// Where each checkpoint this node makes is also appended.
    pub witness_file: Option<PathBuf>,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            interval: std::time::Duration::from_secs(60),
            events: 1000,
            witness_file: None,
        }
    }
}

/// The audit key's id: one key per store.
const AUDIT_KEY_ID: &str = "signing";

/// The last check of the chain this node ran.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainCheckResult {
    pub at: OffsetDateTime,
    pub report: ChainReport,
}

/// The audit log's state, as `GET /v1/audit/status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditStatus {
    /// The chain's head as stored; `None` when its row is gone.
    pub head: Option<ChainHead>,
    pub last_check: Option<ChainCheckResult>,
    pub last_checkpoint: Option<Checkpoint>,
    /// The audit key's public half, once one was made.
    pub public_key: Option<Vec<u8>>,
}

impl Service {
    /// The chain's head and this node's last check of it. Needs
    /// `audit:read` over every API and environment, since the head counts
    /// every event.
    pub async fn audit_status(&self, actor: &Actor) -> Result<AuditStatus, Error> {
        self.require_whole_log(actor).await?;
        Ok(AuditStatus {
            head: self.store.chain_head().await?,
            last_check: self
                .chain_checks
                .lock()
                .map(|last| last.clone())
                .unwrap_or(None),
            last_checkpoint: self.store.last_checkpoint().await?,
            public_key: self.store.audit_key().await?.map(|k| k.public_key),
        })
    }

    /// Up to `limit` events of the chain after sequence number `after`, in
    /// order, every field as stored: the export. Needs `audit:read` over
    /// every API and environment, as the chain is whole.
    pub async fn export_audit(
        &self,
        actor: &Actor,
        after: u64,
        limit: u32,
    ) -> Result<Vec<keyward_core::chain::ChainRow>, Error> {
        self.require_whole_log(actor).await?;
        Ok(self.store.chain_rows(after, limit).await?)
    }

    /// Checks the chain now, for an actor who asked.
    pub async fn verify_audit_chain(&self, actor: &Actor) -> Result<ChainCheckResult, Error> {
        self.require_whole_log(actor).await?;
        self.check_audit_chain().await
    }

    async fn require_whole_log(&self, actor: &Actor) -> Result<(), Error> {
        actor.require(AdminScope::AuditRead)?;
        let reach = self.reach_of(actor, AdminScope::AuditRead).await?;
        if reach.api_ids().is_some() || reach.environments().is_some() {
            return Err(Error::Forbidden(
                "the audit chain covers every API and environment: use a token that reaches them all",
            ));
        }
        Ok(())
    }

    /// Checks the chain and keeps the result. A finding that differs from
    /// the last one is logged at `error` and recorded as an
    /// `audit.tamper_detected` event (by the server itself), once.
    pub async fn check_audit_chain(&self) -> Result<ChainCheckResult, Error> {
        let evidence = match &self.checkpointing.witness_file {
            Some(path) => match tokio::fs::read_to_string(path).await {
                Ok(text) => Evidence {
                    public_key: None,
                    witnessed: read_witness(&text).map_err(Error::InvalidRequest)?,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Evidence::default(),
                Err(e) => return Err(Error::internal(e)),
            },
            None => Evidence::default(),
        };
        let report = check_chain_with(self.store.as_ref(), &evidence).await?;
        let result = ChainCheckResult {
            at: crate::now(),
            report,
        };
        let previous = match self.chain_checks.lock() {
            Ok(mut last) => last.replace(result.clone()),
            Err(_) => None,
        };
        let before = previous.and_then(|p| p.report.finding);
        if let Some(finding) = &result.report.finding {
            if before.as_ref() != Some(finding) {
                tracing::error!(
                    sequence = finding.sequence,
                    kind = %finding.kind,
                    detail = finding.detail,
                    "the audit log was changed outside Keyward"
                );
                let event = crate::audit_event(
                    None,
                    AuditAction::AuditTamperDetected,
                    "audit",
                    json!({
                        "sequence": finding.sequence,
                        "kind": finding.kind.as_str(),
                        "detail": finding.detail,
                    }),
                    result.at,
                )?;
                self.store.append_audit(&[event]).await?;
            }
        }
        Ok(result)
    }
}

impl Service {
    /// How this node makes checkpoints.
    pub fn with_checkpoints(mut self, settings: CheckpointSettings) -> Self {
        self.checkpointing = settings;
        self
    }

    pub fn checkpointing(&self) -> &CheckpointSettings {
        &self.checkpointing
    }

    /// Signs a checkpoint of the chain's head when one is due: events were
    /// appended since the last and `interval` has passed or `events` have
    /// been appended, or `now` says so (a clean shutdown). The checkpoint
    /// is stored and appended to the witness file. A sealed node makes
    /// none (`Ok(None)`): the key opens under the keyring, and the chain
    /// is checkpointed once it is unsealed.
    pub async fn checkpoint(&self, now: bool) -> Result<Option<Checkpoint>, Error> {
        let Some(head) = self.store.chain_head().await? else {
            return Ok(None);
        };
        let last = self.store.last_checkpoint().await?;
        let at = crate::now();
        let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let interval = i64::try_from(self.checkpointing.interval.as_millis()).unwrap_or(i64::MAX);
        let due = match &last {
            _ if head.sequence == 0 => false,
            None => true,
            Some(last) if last.sequence >= head.sequence => false,
            Some(last) => {
                now || head.sequence - last.sequence >= self.checkpointing.events
                    || at_ms.saturating_sub(last.at_ms) >= interval
            }
        };
        if !due || self.barrier.keyring().is_err() {
            return Ok(None);
        }
        let (public, signing) = self.audit_signing_key(at).await?;
        use ed25519_dalek::Signer as _;
        let signature = signing
            .sign(&checkpoint_message(head.sequence, &head.hash, at_ms))
            .to_bytes()
            .to_vec();
        let checkpoint = Checkpoint {
            sequence: head.sequence,
            hash: head.hash,
            at_ms,
            key_id: AUDIT_KEY_ID.to_owned(),
            signature,
        };
        self.store.put_checkpoint(&checkpoint).await?;
        if let Some(path) = &self.checkpointing.witness_file {
            self.witness(path, &checkpoint, &public).await?;
        }
        Ok(Some(checkpoint))
    }

    /// The audit key, made under the keyring on first use. A stored public
    /// half that is not the private half's is refused: checkpoints signed
    /// with it would not verify, and someone changed it.
    async fn audit_signing_key(
        &self,
        at: OffsetDateTime,
    ) -> Result<([u8; 32], ed25519_dalek::SigningKey), Error> {
        use crate::records::audit_key_identity;
        let stored = match self.store.audit_key().await? {
            Some(key) => key,
            None => {
                let mut seed = Zeroizing::new([0u8; 32]);
                crate::signing::getrandom_fill(&mut seed[..])?;
                let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
                let keyring = self.barrier.keyring()?;
                self.barrier.spend_keyring(1).await?;
                let private_key = keyring
                    .encrypt(&audit_key_identity(AUDIT_KEY_ID), &seed[..])
                    .map_err(Error::internal)?;
                let made = keyward_store::AuditKey {
                    id: AUDIT_KEY_ID.to_owned(),
                    public_key: signing.verifying_key().to_bytes().to_vec(),
                    private_key,
                    created_at: at,
                };
                let stored = self.store.put_audit_key(&made).await?;
                if stored == made {
                    tracing::info!("made the audit checkpoint key");
                }
                stored
            }
        };
        let seed = self
            .barrier
            .open_envelope(&audit_key_identity(&stored.id), &stored.private_key)
            .await?;
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| Error::Tampered)?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = signing.verifying_key().to_bytes();
        if stored.public_key != public {
            tracing::error!("the audit key's stored public half is not its own: refusing to sign");
            return Err(Error::Tampered);
        }
        Ok((public, signing))
    }

    /// Appends a checkpoint to the witness file and syncs it to disk.
    async fn witness(
        &self,
        path: &std::path::Path,
        checkpoint: &Checkpoint,
        public: &[u8; 32],
    ) -> Result<(), Error> {
        use base64::Engine as _;
        use tokio::io::AsyncWriteExt as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let line = WitnessLine {
            sequence: checkpoint.sequence,
            hash: base16ct::lower::encode_string(&checkpoint.hash),
            at: checkpoint.at_ms,
            key_id: checkpoint.key_id.clone(),
            public_key: b64.encode(public),
            signature: b64.encode(&checkpoint.signature),
        };
        let mut text = serde_json::to_string(&line).map_err(Error::internal)?;
        text.push('\n');
        // One writer at a time, so lines never interleave.
        let _guard = self.witness_lock.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(Error::internal)?;
        file.write_all(text.as_bytes())
            .await
            .map_err(Error::internal)?;
        file.sync_all().await.map_err(Error::internal)?;
        Ok(())
    }
}
