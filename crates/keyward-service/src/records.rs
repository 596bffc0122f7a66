//! What each sealed record is bound to: the associated data of its
//! envelope, so a value moved to another record fails to open.

use keyward_crypto::RecordIdentity;

/// What a secret version's value is bound to: `id` is `mount/path`.
pub fn secret_identity(id: &str, version: u64) -> RecordIdentity<'_> {
    RecordIdentity {
        table: "secret_versions",
        id,
        field: "value",
        version,
    }
}

/// What a secret's custom metadata is bound to: `id` is `mount/path`. The
/// metadata has no versions of its own; 0 keeps it apart from every value.
pub fn metadata_identity(id: &str) -> RecordIdentity<'_> {
    RecordIdentity {
        table: "secret_meta",
        id,
        field: "custom_metadata",
        version: 0,
    }
}

/// What a transit key version's material is bound to.
pub fn identity(name: &str, version: u32) -> RecordIdentity<'_> {
    RecordIdentity {
        table: "transit_key_versions",
        id: name,
        field: "material",
        version: u64::from(version),
    }
}

/// What a user's TOTP secret is bound to, pending or confirmed: the
/// confirmation moves the envelope from one column to the other.
pub fn totp_identity(user_id: &str) -> RecordIdentity<'_> {
    RecordIdentity {
        table: "users",
        id: user_id,
        field: "totp_secret",
        version: 0,
    }
}

/// What a key's HMAC signing secret is bound to.
pub fn signing_identity(key_id: &str) -> RecordIdentity<'_> {
    RecordIdentity {
        table: "keys",
        id: key_id,
        field: "signing_secret",
        version: 0,
    }
}

/// What a key owner's TOTP secret is bound to, pending or confirmed.
pub fn owner_totp_identity(owner: &str) -> RecordIdentity<'_> {
    RecordIdentity {
        table: "owner_factors",
        id: owner,
        field: "totp_secret",
        version: 0,
    }
}

/// What the private half of an audit checkpoint key is bound to.
pub fn audit_key_identity(id: &str) -> RecordIdentity<'_> {
    RecordIdentity {
        table: "audit_keys",
        id,
        field: "private_key",
        version: 0,
    }
}
