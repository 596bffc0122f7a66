//! Transit keys opened with the keyring, cached for a moment.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use keyward_crypto::transit::{KeyType, KeyVersion};
use keyward_store::{TransitKey, TransitKeyVersion};

/// A transit key with its versions' material opened.
pub struct LoadedKey {
    pub meta: TransitKey,
    pub kind: KeyType,
    pub versions: BTreeMap<u32, (KeyVersion, TransitKeyVersion)>,
}

/// Loaded keys by name, with the time they were loaded.
pub type TransitCache = dashmap::DashMap<String, (Instant, Arc<LoadedKey>)>;
