//! The audit log's hash chain: how an event is linked to the one before
//! it, and the check that finds the first place where a stored chain was
//! changed.
//!
//! Every event has a sequence number (1, 2, … with no gaps), the hash of
//! the event before it (`prev_hash`, all zeros for the first) and its own
//! `hash = SHA-256(prev_hash ‖ canonical bytes of the event)`. The
//! canonical bytes are the stored fields, each length-prefixed, after a
//! version tag ([`canonical`]). The chain's head (the last sequence number
//! and hash) is kept beside the events, so that a cut tail is noticed too.
//!
//! [`ChainCheck`] reads a chain in sequence order, one row ahead, and names
//! the first bad sequence number and what was found there: an event whose
//! fields no longer give its hash (edited), a gap or a broken link whose
//! rows are gone (deleted), an event that does not belong (inserted), two
//! events out of order (reordered), or a chain shorter than its head
//! (truncated).

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Starts the canonical bytes, so that a later encoding can never be read
/// as this one.
const VERSION: &[u8] = b"keyward-audit/1\n";

/// Marks an absent optional field in the canonical bytes; no present field
/// is this long.
const ABSENT: u32 = u32::MAX;

/// An audit event's fields as stored, which is what the chain covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainedEvent {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub actor: Option<String>,
    pub action: String,
    pub target: String,
    /// The details object exactly as stored (JSON text).
    pub details: String,
    /// The API and environment of the record the event is about.
    pub api_id: Option<String>,
    pub environment: Option<String>,
}

/// The canonical bytes of an event: the version tag, then each field in
/// order as a 32-bit big-endian length and its bytes (`at` as eight
/// big-endian bytes; an absent optional field as the length `u32::MAX`
/// alone).
pub fn canonical(event: &ChainedEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        VERSION.len()
            + 8
            + 7 * 4
            + event.id.len()
            + event.actor.as_deref().map_or(0, str::len)
            + event.action.len()
            + event.target.len()
            + event.details.len()
            + event.api_id.as_deref().map_or(0, str::len)
            + event.environment.as_deref().map_or(0, str::len),
    );
    out.extend_from_slice(VERSION);
    field(&mut out, Some(&event.id));
    out.extend_from_slice(&event.at_ms.to_be_bytes());
    field(&mut out, event.actor.as_deref());
    field(&mut out, Some(&event.action));
    field(&mut out, Some(&event.target));
    field(&mut out, Some(&event.details));
    field(&mut out, event.api_id.as_deref());
    field(&mut out, event.environment.as_deref());
    out
}

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        // A stored field is far below 4 GiB; one that is not is written
        // as absent and can never match what was chained.
        Some(value) => match u32::try_from(value.len()) {
            Ok(len) if len != ABSENT => {
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(value.as_bytes());
            }
            _ => out.extend_from_slice(&ABSENT.to_be_bytes()),
        },
        None => out.extend_from_slice(&ABSENT.to_be_bytes()),
    }
}

/// The hash of `event` chained after the event whose hash is `prev`.
pub fn link(prev: &[u8; 32], event: &ChainedEvent) -> [u8; 32] {
    Sha256::new()
        .chain_update(prev)
        .chain_update(canonical(event))
        .finalize()
        .into()
}

/// Starts a checkpoint's signed bytes.
const CHECKPOINT_VERSION: &[u8] = b"keyward-audit-checkpoint/1\n";

/// A signed statement that the chain's event `sequence` had `hash` at
/// `at_ms`, by the audit key `key_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub hash: [u8; 32],
    pub at_ms: i64,
    pub key_id: String,
    /// Ed25519 over [`checkpoint_message`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The bytes its signature covers.
    pub fn message(&self) -> Vec<u8> {
        checkpoint_message(self.sequence, &self.hash, self.at_ms)
    }
}

/// What a checkpoint signs: the version tag, the sequence number (eight
/// big-endian bytes), the hash, and the time (eight big-endian bytes of
/// milliseconds since the Unix epoch).
pub fn checkpoint_message(sequence: u64, hash: &[u8; 32], at_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_VERSION.len() + 8 + 32 + 8);
    out.extend_from_slice(CHECKPOINT_VERSION);
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&at_ms.to_be_bytes());
    out
}

/// A hash (or any bytes) as the chain's exports and pages write it:
/// lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex as [`to_hex`] writes it (either case); `None` for text
/// that is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// The chain's last sequence number and hash, as its head row keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub sequence: u64,
    pub hash: [u8; 32],
}

impl ChainHead {
    /// The head of a chain with no events.
    pub const EMPTY: ChainHead = ChainHead {
        sequence: 0,
        hash: GENESIS,
    };
}

/// One stored row of the chain, read back as it is: every chain column
/// may have been changed, or be missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainRow {
    pub sequence: i64,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
    pub event: ChainedEvent,
}

impl ChainRow {
    /// Whether this row's fields, chained after its own `prev_hash`, give
    /// its own `hash`.
    fn holds_together(&self) -> bool {
        match (
            hash_of(self.prev_hash.as_deref()),
            hash_of(self.hash.as_deref()),
        ) {
            (Some(prev), Some(hash)) => link(&prev, &self.event) == hash,
            _ => false,
        }
    }
}

fn hash_of(bytes: Option<&[u8]>) -> Option<[u8; 32]> {
    bytes.and_then(|bytes| bytes.try_into().ok())
}

/// What a tampering looks like where it is first found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tamper {
    /// The event's stored fields do not give the hash it was chained with.
    Edited,
    /// Events are missing: a sequence number is skipped, or an event is
    /// chained to one that is no longer there.
    Deleted,
    /// An event is there that was never chained in its place.
    Inserted,
    /// Events are in another order than they were chained in.
    Reordered,
    /// The chain ends before the sequence number its head, a checkpoint or
    /// a witness has seen.
    Truncated,
    /// A checkpoint's signature does not verify under the audit key.
    BadSignature,
}

impl Tamper {
    /// The stable name, as `keyward audit verify --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tamper::Edited => "edited",
            Tamper::Deleted => "deleted",
            Tamper::Inserted => "inserted",
            Tamper::Reordered => "reordered",
            Tamper::Truncated => "truncated",
            Tamper::BadSignature => "bad_signature",
        }
    }
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first bad place in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub sequence: u64,
    pub kind: Tamper,
    /// What was found, for people; it names no field's value.
    pub detail: &'static str,
}

/// Reads a chain's rows in sequence order and keeps the first finding.
/// Each row is judged once the row after it is known (or the chain ends),
/// since an event out of place is told from a missing one by its
/// neighbours.
#[derive(Debug)]
pub struct ChainCheck {
    /// The sequence number the next good row must have.
    expected: u64,
    /// The hashes of the last two good rows.
    last: [u8; 32],
    before_last: Option<[u8; 32]>,
    pending: Option<ChainRow>,
    finding: Option<Finding>,
    rows: u64,
    /// Sequence numbers whose hashes to keep (checkpoints'), and the
    /// hashes kept.
    wanted: std::collections::BTreeSet<u64>,
    kept: std::collections::BTreeMap<u64, [u8; 32]>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck::new()
    }
}

impl ChainCheck {
    pub fn new() -> Self {
        ChainCheck {
            expected: 1,
            last: GENESIS,
            before_last: None,
            pending: None,
            finding: None,
            rows: 0,
            wanted: std::collections::BTreeSet::new(),
            kept: std::collections::BTreeMap::new(),
        }
    }

    /// A check of a stretch of the chain that starts after event `after`
    /// with hash `hash` (an export from a sequence number on): the first
    /// row must be `after + 1`, chained to `hash`.
    pub fn after(after: u64, hash: [u8; 32]) -> Self {
        ChainCheck {
            expected: after + 1,
            last: hash,
            ..ChainCheck::new()
        }
    }

    /// Ends a stretch that has no head to compare with (an export): only
    /// the rows themselves are judged.
    pub fn finish_stretch(mut self) -> ChainReport {
        if let Some(pending) = self.pending.take() {
            self.judge(&pending, None);
        }
        self.report()
    }

    fn report(self) -> ChainReport {
        ChainReport {
            rows: self.rows,
            head: self.good_head(),
            finding: self.finding,
            checkpoints: 0,
            kept: self.kept,
        }
    }

    /// Keeps the hash of each of these sequence numbers as it verifies,
    /// for [`ChainReport::hash_at`]: where checkpoints are compared.
    pub fn keeping(mut self, sequences: impl IntoIterator<Item = u64>) -> Self {
        self.wanted.extend(sequences);
        self
    }

    /// The next row, in sequence order.
    pub fn push(&mut self, row: ChainRow) {
        self.rows += 1;
        if let Some(pending) = self.pending.take() {
            self.judge(&pending, Some(&row));
        }
        self.pending = Some(row);
    }

    /// The first finding so far, if there is one; later rows change
    /// nothing once there is.
    pub fn finding(&self) -> Option<&Finding> {
        self.finding.as_ref()
    }

    /// The rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The last sequence number and hash that verified, once every row is
    /// read: where checkpoints are compared.
    fn good_head(&self) -> ChainHead {
        ChainHead {
            sequence: self.expected - 1,
            hash: self.last,
        }
    }

    /// Ends the chain: judges the last row and compares the chain with
    /// its stored head (`None` when the head row is missing).
    pub fn finish(mut self, head: Option<ChainHead>) -> ChainReport {
        if let Some(pending) = self.pending.take() {
            self.judge(&pending, None);
        }
        if self.finding.is_none() {
            let end = self.good_head();
            self.finding = match head {
                None if end.sequence > 0 => Some(Finding {
                    sequence: end.sequence,
                    kind: Tamper::Edited,
                    detail: "the chain's head is missing",
                }),
                None => None,
                Some(head) if head.sequence > end.sequence => Some(Finding {
                    sequence: end.sequence + 1,
                    kind: Tamper::Truncated,
                    detail: "the chain ends before its head",
                }),
                Some(head) if head.sequence < end.sequence => Some(Finding {
                    sequence: head.sequence + 1,
                    kind: Tamper::Inserted,
                    detail: "events follow the chain's head",
                }),
                Some(head) if head.hash != end.hash => Some(Finding {
                    sequence: end.sequence,
                    kind: Tamper::Edited,
                    detail: "the last event's hash is not the head's",
                }),
                Some(_) => None,
            };
        }
        self.report()
    }

    fn found(&mut self, sequence: u64, kind: Tamper, detail: &'static str) {
        self.finding.get_or_insert(Finding {
            sequence,
            kind,
            detail,
        });
    }

    fn judge(&mut self, row: &ChainRow, next: Option<&ChainRow>) {
        if self.finding.is_some() {
            return;
        }
        let expected = self.expected;
        let sequence = u64::try_from(row.sequence).unwrap_or(0);
        if sequence < expected {
            return self.found(
                sequence,
                Tamper::Inserted,
                "a second event has this sequence number",
            );
        }
        if sequence > expected {
            return self.found(expected, Tamper::Deleted, "sequence numbers are skipped");
        }
        if !row.holds_together() {
            return self.found(
                sequence,
                Tamper::Edited,
                "the event's fields do not give its hash",
            );
        }
        let (Some(prev), Some(hash)) = (
            hash_of(row.prev_hash.as_deref()),
            hash_of(row.hash.as_deref()),
        ) else {
            return self.found(sequence, Tamper::Edited, "the event's hashes are missing");
        };
        if prev != self.last {
            let next_hash = next.and_then(|n| hash_of(n.hash.as_deref()));
            let next_prev = next.and_then(|n| hash_of(n.prev_hash.as_deref()));
            return if next_hash == Some(prev) {
                self.found(
                    sequence,
                    Tamper::Reordered,
                    "the event was chained after the one that follows it",
                )
            } else if self.before_last == Some(prev) {
                self.found(
                    expected - 1,
                    Tamper::Inserted,
                    "the event was not chained between its neighbours",
                )
            } else if next_prev == Some(self.last) {
                self.found(
                    sequence,
                    Tamper::Inserted,
                    "the event was not chained between its neighbours",
                )
            } else if expected == 1 {
                self.found(
                    1,
                    Tamper::Deleted,
                    "the first event is chained to one that is gone",
                )
            } else {
                self.found(
                    expected - 1,
                    Tamper::Edited,
                    "the event no longer has the hash the next one was chained to",
                )
            };
        }
        self.before_last = Some(self.last);
        self.last = hash;
        if self.wanted.contains(&sequence) {
            self.kept.insert(sequence, hash);
        }
        self.expected += 1;
    }
}

/// What a check of the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Rows read.
    pub rows: u64,
    /// The last sequence number and hash that verified.
    pub head: ChainHead,
    pub finding: Option<Finding>,
    /// Checkpoints checked against the chain.
    pub checkpoints: u64,
    /// The verified hashes of the sequence numbers asked for.
    kept: std::collections::BTreeMap<u64, [u8; 32]>,
}

impl ChainReport {
    /// The verified hash of event `sequence`, if it was asked for
    /// ([`ChainCheck::keeping`]) and verified.
    pub fn hash_at(&self, sequence: u64) -> Option<[u8; 32]> {
        self.kept.get(&sequence).copied()
    }

    /// Keeps `finding` if it comes before the one already found.
    pub fn note(&mut self, finding: Finding) {
        if self
            .finding
            .as_ref()
            .is_none_or(|f| finding.sequence < f.sequence)
        {
            self.finding = Some(finding);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> ChainedEvent {
        ChainedEvent {
            id: format!("evt_{n:04}"),
            at_ms: 1_700_000_000_000 + i64::try_from(n).unwrap(),
            actor: (n % 2 == 0).then(|| "tok_root".to_owned()),
            action: "key.create".into(),
            target: format!("key_{n}"),
            details: format!(r#"{{"n":{n}}}"#),
            api_id: Some("api_1".into()),
            environment: (n % 3 == 0).then(|| "live".to_owned()),
        }
    }

    /// A well-chained log of `n` events and its head.
    fn chain(n: u64) -> (Vec<ChainRow>, ChainHead) {
        let mut prev = GENESIS;
        let mut rows = Vec::new();
        for seq in 1..=n {
            let event = event(seq);
            let hash = link(&prev, &event);
            rows.push(ChainRow {
                sequence: i64::try_from(seq).unwrap(),
                prev_hash: Some(prev.to_vec()),
                hash: Some(hash.to_vec()),
                event,
            });
            prev = hash;
        }
        let head = ChainHead {
            sequence: n,
            hash: prev,
        };
        (rows, head)
    }

    fn check(rows: Vec<ChainRow>, head: Option<ChainHead>) -> Option<(u64, Tamper)> {
        let mut check = ChainCheck::new();
        for row in rows {
            check.push(row);
        }
        check.finish(head).finding.map(|f| (f.sequence, f.kind))
    }

    #[test]
    fn an_untouched_chain_verifies() {
        for n in [0, 1, 2, 10] {
            let (rows, head) = chain(n);
            assert_eq!(check(rows, Some(head)), None, "{n} events");
        }
        assert_eq!(check(Vec::new(), None), None);
    }

    #[test]
    fn the_canonical_bytes_tell_every_field_apart() {
        let base = event(1);
        let mut variants = vec![base.clone()];
        let mut moved = base.clone();
        moved.action = "key.creat".into();
        moved.target = format!("e{}", base.target);
        variants.push(moved);
        let mut absent = base.clone();
        absent.actor = Some(String::new());
        variants.push(absent);
        let mut env = base.clone();
        env.api_id = None;
        env.environment = Some("api_1".into());
        variants.push(env);
        let mut at = base.clone();
        at.at_ms += 1;
        variants.push(at);
        let bytes: std::collections::HashSet<_> = variants.iter().map(canonical).collect();
        assert_eq!(bytes.len(), variants.len());
    }

    #[test]
    fn each_tampering_is_found_where_it_is_and_named() {
        let (rows, head) = chain(10);

        let mut edited = rows.clone();
        edited[4].event.details = r#"{"n":99}"#.into();
        assert_eq!(check(edited, Some(head)), Some((5, Tamper::Edited)));

        // An edit whose hash is recomputed still breaks the next link.
        let mut rehashed = rows.clone();
        rehashed[4].event.target = "key_other".into();
        let prev: [u8; 32] = rehashed[4].prev_hash.clone().unwrap().try_into().unwrap();
        rehashed[4].hash = Some(link(&prev, &rehashed[4].event).to_vec());
        assert_eq!(check(rehashed, Some(head)), Some((5, Tamper::Edited)));

        let mut deleted = rows.clone();
        deleted.remove(3);
        assert_eq!(check(deleted, Some(head)), Some((4, Tamper::Deleted)));

        // Deleted, and the later events renumbered to close the gap.
        let mut renumbered = rows.clone();
        renumbered.remove(0);
        for row in &mut renumbered {
            row.sequence -= 1;
        }
        assert_eq!(check(renumbered, Some(head)), Some((1, Tamper::Deleted)));

        // Inserted between 6 and 7, chained after 6, later ones renumbered.
        let mut inserted = rows.clone();
        let mut forged = event(77);
        forged.action = "key.revoke".into();
        let after: [u8; 32] = rows[5].hash.clone().unwrap().try_into().unwrap();
        inserted.insert(
            6,
            ChainRow {
                sequence: 7,
                prev_hash: Some(after.to_vec()),
                hash: Some(link(&after, &forged).to_vec()),
                event: forged.clone(),
            },
        );
        for row in inserted.iter_mut().skip(7) {
            row.sequence += 1;
        }
        assert_eq!(check(inserted, Some(head)), Some((7, Tamper::Inserted)));

        // Inserted with a made-up link.
        let mut foreign = rows.clone();
        foreign.insert(
            6,
            ChainRow {
                sequence: 7,
                prev_hash: Some(vec![9; 32]),
                hash: Some(link(&[9; 32], &forged).to_vec()),
                event: forged.clone(),
            },
        );
        for row in foreign.iter_mut().skip(7) {
            row.sequence += 1;
        }
        assert_eq!(check(foreign, Some(head)), Some((7, Tamper::Inserted)));

        // A second event under a sequence number already taken.
        let mut doubled = rows.clone();
        let mut twin = rows[2].clone();
        twin.event.target = "key_twin".into();
        doubled.insert(3, twin);
        assert_eq!(check(doubled, Some(head)), Some((3, Tamper::Inserted)));

        // Appended past the head.
        let mut appended = rows.clone();
        let last: [u8; 32] = rows[9].hash.clone().unwrap().try_into().unwrap();
        appended.push(ChainRow {
            sequence: 11,
            prev_hash: Some(last.to_vec()),
            hash: Some(link(&last, &forged).to_vec()),
            event: forged,
        });
        assert_eq!(check(appended, Some(head)), Some((11, Tamper::Inserted)));

        let mut swapped = rows.clone();
        swapped.swap(2, 3);
        swapped[2].sequence = 3;
        swapped[3].sequence = 4;
        assert_eq!(check(swapped, Some(head)), Some((3, Tamper::Reordered)));

        let mut truncated = rows.clone();
        truncated.truncate(7);
        assert_eq!(check(truncated, Some(head)), Some((8, Tamper::Truncated)));

        let mut cut = rows.clone();
        cut.truncate(7);
        assert_eq!(check(cut, None), Some((7, Tamper::Edited)));

        let mut unhashed = rows;
        unhashed[8].hash = None;
        assert_eq!(check(unhashed, Some(head)), Some((9, Tamper::Edited)));
    }
}
