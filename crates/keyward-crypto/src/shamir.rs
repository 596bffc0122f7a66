//! The `shamir` seal: the master key split into N shares, any T of which
//! unseal (Shamir's scheme over GF(256), byte by byte, from `vsss-rs`).
//!
//! A share is given to an operator as text:
//!
//! ```text
//! kws1_{set: 8 hex}_{index: 2 hex}{value: 64 hex}{crc32: 8 hex}
//! ```
//!
//! The set id names one split of one master key (a rekey makes a new set),
//! the CRC32 catches a mistyped share before it is used, and the store keeps
//! a SHA-256 digest of every share issued ([`ShareSet::digests`]), so a
//! share from another set, an altered share or a repeated one is refused
//! the moment it is offered, and the shares given so far are kept. The
//! digests reveal nothing of the shares: each share is 256 bits of
//! uniformly distributed value.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use vsss_rs::Gf256;
use zeroize::{Zeroize, Zeroizing};

use crate::master::MasterKey;
use crate::secret::{fill_random, SecretKey, KEY_LEN};
use crate::CryptoError;

const PREFIX: &str = "kws1_";
/// Length of a share's text form.
pub const SHARE_TEXT_LEN: usize = PREFIX.len() + 8 + 1 + 2 + KEY_LEN * 2 + 8;

/// One share of a master key. No `Debug`; wiped on drop.
pub struct Share {
    set: [u8; 4],
    index: u8,
    value: Zeroizing<[u8; KEY_LEN]>,
}

/// Why a share was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    #[error("not a Keyward unseal share (expected kws1_…)")]
    Malformed,
    #[error("the share's checksum does not match: it was mistyped or altered")]
    Checksum,
    #[error("the share belongs to another set of shares")]
    OtherSet,
    #[error("the share is not one of the shares issued for this key")]
    Unknown,
    #[error("a share with this index was already given")]
    Duplicate,
}

impl Share {
    /// The share's position (1..=N) in its set.
    pub fn index(&self) -> u8 {
        self.index
    }

    pub fn set(&self) -> [u8; 4] {
        self.set
    }

    /// The share as an operator writes it down.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(SHARE_TEXT_LEN));
        text.push_str(PREFIX);
        crate::hex::push(&mut text, &self.set);
        text.push('_');
        crate::hex::push(&mut text, &[self.index]);
        crate::hex::push(&mut text, &*self.value);
        let crc = crc32fast::hash(text.as_bytes());
        crate::hex::push(&mut text, &crc.to_be_bytes());
        text
    }

    /// Parses a share's text form (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Share, ShareError> {
        let text = text.trim();
        if text.len() != SHARE_TEXT_LEN || !text.starts_with(PREFIX) || !text.is_ascii() {
            return Err(ShareError::Malformed);
        }
        let (body, crc) = text.split_at(SHARE_TEXT_LEN - 8);
        let set_part = &body[PREFIX.len()..PREFIX.len() + 8];
        if body.as_bytes()[PREFIX.len() + 8] != b'_' {
            return Err(ShareError::Malformed);
        }
        let rest = &body[PREFIX.len() + 9..];
        let mut set = [0u8; 4];
        let mut index = [0u8; 1];
        let mut value = Zeroizing::new([0u8; KEY_LEN]);
        let mut crc_bytes = [0u8; 4];
        for (text, out) in [
            (set_part, &mut set[..]),
            (&rest[..2], &mut index[..]),
            (&rest[2..], &mut value[..]),
            (crc, &mut crc_bytes[..]),
        ] {
            crate::hex::decode(text, out).ok_or(ShareError::Malformed)?;
        }
        if crc32fast::hash(body.as_bytes()) != u32::from_be_bytes(crc_bytes) {
            return Err(ShareError::Checksum);
        }
        if index[0] == 0 {
            return Err(ShareError::Malformed);
        }
        Ok(Share {
            set,
            index: index[0],
            value,
        })
    }

    /// The digest the store keeps of this share.
    pub fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(b"keyward/share/v1");
        hash.update(self.set);
        hash.update([self.index]);
        hash.update(*self.value);
        hash.finalize().into()
    }
}

/// A fresh split of a master key: the shares to hand out once, and what the
/// store keeps to recognise them.
pub struct ShareSet {
    pub set: [u8; 4],
    pub threshold: u8,
    pub shares: Vec<Share>,
}

impl ShareSet {
    /// The digests of the shares, in index order, for the store.
    pub fn digests(&self) -> Vec<[u8; 32]> {
        self.shares.iter().map(Share::digest).collect()
    }
}

/// Splits `master` into `shares` shares, any `threshold` of which recover
/// it. 2 ≤ threshold ≤ shares ≤ 255; a threshold of 1 would make every
/// share the key itself.
pub fn split(master: &MasterKey, shares: u8, threshold: u8) -> Result<ShareSet, CryptoError> {
    if threshold < 2 || shares < threshold {
        return Err(CryptoError::Malformed(
            "shares must satisfy 2 <= threshold <= shares <= 255",
        ));
    }
    let mut set = [0u8; 4];
    fill_random(&mut set)?;
    let mut rng = rand::rng();
    let raw = Gf256::split_bytes(
        usize::from(threshold),
        usize::from(shares),
        master.secret().expose().as_slice(),
        &mut rng,
    )
    .map_err(|_| CryptoError::Malformed("the secret could not be split"))?;
    let mut out = Vec::with_capacity(raw.len());
    for mut share in raw {
        if share.len() != KEY_LEN + 1 || share[0] == 0 {
            share.zeroize();
            return Err(CryptoError::Malformed("unexpected share shape"));
        }
        let mut value = Zeroizing::new([0u8; KEY_LEN]);
        value.copy_from_slice(&share[1..]);
        out.push(Share {
            set,
            index: share[0],
            value,
        });
        share.zeroize();
    }
    out.sort_by_key(|s| s.index);
    Ok(ShareSet {
        set,
        threshold,
        shares: out,
    })
}

/// What the store keeps of a share set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSetRecord {
    pub set: [u8; 4],
    pub threshold: u8,
    pub digests: Vec<[u8; 32]>,
}

/// How far an unseal has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub given: u8,
    pub threshold: u8,
}

/// Collects shares one at a time until the threshold is reached. Refused
/// shares leave the collection as it was.
pub struct Unsealer {
    record: ShareSetRecord,
    given: BTreeMap<u8, Share>,
}

impl Unsealer {
    pub fn new(record: ShareSetRecord) -> Self {
        Unsealer {
            record,
            given: BTreeMap::new(),
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            given: self.given.len() as u8,
            threshold: self.record.threshold,
        }
    }

    /// Checks `share` against the set and keeps it. Returns the progress,
    /// and the master key once enough shares are in.
    pub fn offer(&mut self, share: Share) -> Result<(Progress, Option<MasterKey>), ShareError> {
        if share.set != self.record.set {
            return Err(ShareError::OtherSet);
        }
        if self.given.contains_key(&share.index) {
            return Err(ShareError::Duplicate);
        }
        let expected = self
            .record
            .digests
            .get(usize::from(share.index) - 1)
            .ok_or(ShareError::Unknown)?;
        if !bool::from(share.digest().ct_eq(expected)) {
            return Err(ShareError::Unknown);
        }
        self.given.insert(share.index, share);
        let progress = self.progress();
        if progress.given < progress.threshold {
            return Ok((progress, None));
        }
        let master = combine(self.given.values()).map_err(|_| ShareError::Unknown)?;
        self.given.clear();
        Ok((progress, Some(master)))
    }

    /// Forgets the shares given so far.
    pub fn reset(&mut self) {
        self.given.clear();
    }
}

/// Recovers a master key from shares. The caller makes sure there are at
/// least the threshold many: fewer give a wrong key, not an error, which
/// the keyring then refuses to open with.
pub fn combine<'a>(shares: impl IntoIterator<Item = &'a Share>) -> Result<MasterKey, CryptoError> {
    let raw: Vec<Zeroizing<Vec<u8>>> = shares
        .into_iter()
        .map(|s| {
            let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
            bytes.push(s.index);
            bytes.extend_from_slice(&*s.value);
            bytes
        })
        .collect();
    if raw.len() < 2 {
        return Err(CryptoError::Malformed("at least two shares are needed"));
    }
    let plain: Vec<Vec<u8>> = raw.iter().map(|s| s.to_vec()).collect();
    let combined = Gf256::combine_bytes(&plain);
    for mut share in plain {
        share.zeroize();
    }
    let mut secret =
        Zeroizing::new(combined.map_err(|_| CryptoError::Malformed("shares do not combine"))?);
    let key = SecretKey::from_slice(&secret)?;
    secret.zeroize();
    Ok(MasterKey::from_secret(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(set: &ShareSet) -> ShareSetRecord {
        ShareSetRecord {
            set: set.set,
            threshold: set.threshold,
            digests: set.digests(),
        }
    }

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..1 << n)
            .filter(|m| m.count_ones() as usize == k)
            .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
            .collect()
    }

    #[test]
    fn every_threshold_subset_recovers_the_key_and_no_smaller_one_does() {
        let master = MasterKey::generate().unwrap();
        for (n, t) in [(5u8, 3u8), (3, 2), (4, 4)] {
            let set = split(&master, n, t).unwrap();
            assert_eq!(set.shares.len(), usize::from(n));
            for subset in subsets(usize::from(n), usize::from(t)) {
                let shares = subset.iter().map(|&i| &set.shares[i]);
                assert!(combine(shares).unwrap().secret() == master.secret());
            }
            for subset in subsets(usize::from(n), usize::from(t) - 1) {
                if subset.len() < 2 {
                    continue;
                }
                let shares = subset.iter().map(|&i| &set.shares[i]);
                assert!(combine(shares).unwrap().secret() != master.secret());
            }
        }
    }

    #[test]
    fn shares_survive_their_text_form() {
        let master = MasterKey::generate().unwrap();
        let set = split(&master, 3, 2).unwrap();
        for share in &set.shares {
            let text = share.to_text();
            assert_eq!(text.len(), SHARE_TEXT_LEN);
            let back = Share::parse(&format!("  {}\n", text.as_str())).unwrap();
            assert_eq!(back.digest(), share.digest());
        }
    }

    #[test]
    fn mistyped_and_garbled_shares_are_refused_before_use() {
        let set = split(&MasterKey::generate().unwrap(), 3, 2).unwrap();
        let text = set.shares[0].to_text();
        for i in 0..text.len() {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let Ok(garbled) = String::from_utf8(bytes) else {
                continue;
            };
            if garbled == *text {
                continue;
            }
            assert!(Share::parse(&garbled).is_err(), "change at {i} accepted");
        }
        for bad in ["", "kws1_", "kws1_zz", &"x".repeat(SHARE_TEXT_LEN), "é"] {
            assert_eq!(Share::parse(bad).err(), Some(ShareError::Malformed));
        }
    }

    #[test]
    fn the_unsealer_refuses_wrong_and_repeated_shares_and_keeps_progress() {
        let master = MasterKey::generate().unwrap();
        let set = split(&master, 5, 3).unwrap();
        let other = split(&master, 5, 3).unwrap();
        let mut unsealer = Unsealer::new(record(&set));
        let again = |i: usize| Share::parse(&set.shares[i].to_text()).unwrap();

        let (progress, key) = unsealer.offer(again(0)).unwrap();
        assert_eq!((progress.given, progress.threshold), (1, 3));
        assert!(key.is_none());
        assert_eq!(unsealer.offer(again(0)).err(), Some(ShareError::Duplicate));
        let foreign = Share::parse(&other.shares[1].to_text()).unwrap();
        assert_eq!(unsealer.offer(foreign).err(), Some(ShareError::OtherSet));
        // Same set id and index, different value: a forged share.
        let forged = Share {
            set: set.set,
            index: 2,
            value: Zeroizing::new([7u8; KEY_LEN]),
        };
        assert_eq!(unsealer.offer(forged).err(), Some(ShareError::Unknown));
        let beyond = Share {
            set: set.set,
            index: 9,
            value: Zeroizing::new([7u8; KEY_LEN]),
        };
        assert_eq!(unsealer.offer(beyond).err(), Some(ShareError::Unknown));
        assert_eq!(unsealer.progress().given, 1);

        let (progress, key) = unsealer.offer(again(3)).unwrap();
        assert_eq!(progress.given, 2);
        assert!(key.is_none());
        let (_, key) = unsealer.offer(again(4)).unwrap();
        assert!(key.unwrap().secret() == master.secret());
        assert_eq!(unsealer.progress().given, 0);
    }

    #[test]
    fn thresholds_below_two_or_above_the_share_count_are_refused() {
        let master = MasterKey::generate().unwrap();
        assert!(split(&master, 3, 1).is_err());
        assert!(split(&master, 2, 3).is_err());
        assert!(split(&master, 255, 255).is_ok());
    }
}
