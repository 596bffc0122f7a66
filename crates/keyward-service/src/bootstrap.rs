//! The operations run without an admin token: by the server on its first
//! start (the root token, the default secrets mount), and by the operator
//! who lost every full-access token (`keyward operator root-token`), whose
//! proof is the seal rather than a token.
//!
//! Invariant: like every operation, each writes its audit events in the
//! change's transaction (no actor: the server itself, or the operator).

use keyward_core::{
    AdminScope, AdminToken, AuditAction, Environment, PlaintextKey, Prefix, TokenId,
};
use keyward_store::{Page, SecretMount, Store, StoreError};
use serde_json::json;
use time::OffsetDateTime;

use crate::seal::Barrier;
use crate::{audit_event, now, Error};

/// A new root admin token — every scope, no API or environment limit, no
/// expiry, made by no one — and its plaintext.
pub fn new_root_token(at: OffsetDateTime) -> Result<(PlaintextKey, AdminToken), Error> {
    let plaintext =
        PlaintextKey::generate(&Prefix::admin(), Environment::Live).map_err(Error::internal)?;
    let root = AdminToken {
        id: TokenId::generate(at).map_err(Error::internal)?,
        name: "root".to_owned(),
        digest: plaintext.digest(),
        start: plaintext.display_start(),
        scopes: AdminScope::ALL.to_vec(),
        api_ids: None,
        environments: None,
        created_by: None,
        created_at: at,
        expires_at: None,
        revoked_at: None,
        workspaces: None,
        user_id: None,
        grants: Vec::new(),
        stepped_up_at: None,
        client_cert: None,
        last_used_at: None,
    };
    Ok((plaintext, root))
}

/// Creates the root admin token on the first start of a store. Returns its
/// plaintext only to the start that created it.
pub async fn root_token(store: &dyn Store) -> Result<Option<(PlaintextKey, TokenId)>, Error> {
    let at = now();
    let (plaintext, root) = new_root_token(at)?;
    let event = audit_event(
        None,
        AuditAction::TokenCreate,
        root.id.as_str(),
        json!({ "name": "root", "start": root.start, "bootstrap": true }),
        at,
    )?;
    if store.bootstrap(&root, &event).await? {
        Ok(Some((plaintext, root.id)))
    } else {
        Ok(None)
    }
}

/// Mounts `secret` (KV v2, live) on a store that has no secrets mount yet,
/// as Vault's servers do, so Vault clients find it where they look.
pub async fn default_mount(store: &dyn Store) -> Result<(), Error> {
    if !store.list_mounts().await?.is_empty() {
        return Ok(());
    }
    let at = now();
    let mount = SecretMount {
        path: "secret".to_owned(),
        environment: Environment::Live,
        max_versions: 0,
        cas_required: false,
        created_at: at,
    };
    let event = audit_event(
        None,
        AuditAction::MountCreate,
        "secret",
        json!({ "environment": "live", "default": true }),
        at,
    )?;
    match store.create_mount(&mount, &event).await {
        // Another node mounted it first.
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a recovery did.
pub struct Recovered {
    pub root: AdminToken,
    /// Shown once, to the operator.
    pub plaintext: PlaintextKey,
    /// The full-access tokens revoked, their trees handed to the new root.
    pub revoked: Vec<TokenId>,
}

/// Issues a new root token and retires every active full-access token,
/// for an operator who holds none. Refused unless `barrier` is unsealed:
/// opening the seal is the operator's proof. `host_user` is the account
/// that ran it, for the audit.
pub async fn recover_root(
    store: &dyn Store,
    barrier: &Barrier,
    host_user: Option<String>,
) -> Result<Recovered, Error> {
    barrier.keyring()?;
    let at = now();
    let old = full_access_tokens(store).await?;
    let (plaintext, root) = new_root_token(at)?;
    let revoked: Vec<TokenId> = old.iter().map(|t| t.id.clone()).collect();
    let event = audit_event(
        None,
        AuditAction::TokenRecover,
        root.id.as_str(),
        json!({
            "name": root.name,
            "start": root.start,
            "revokes": revoked.iter().map(TokenId::as_str).collect::<Vec<_>>(),
            "seal": barrier.kind().as_str(),
            "host_user": host_user,
        }),
        at,
    )?;
    // The new token first: at no moment is there none.
    store.create_token(&root, &event).await?;
    for token in &old {
        // The tokens the old root made (the services' verify tokens among
        // them) pass to the new root first: revoking takes a token's whole
        // tree, and losing the root must not stop every service.
        let event = audit_event(
            None,
            AuditAction::TokenAdopt,
            root.id.as_str(),
            json!({ "from": token.id.as_str(), "recovery": true }),
            at,
        )?;
        store.adopt_tokens(&token.id, &root.id, &event).await?;
        let event = audit_event(
            None,
            AuditAction::TokenRevoke,
            token.id.as_str(),
            json!({ "name": token.name, "recovery": true, "replaced_by": root.id.as_str() }),
            at,
        )?;
        store.revoke_token(&token.id, at, &event).await?;
    }
    Ok(Recovered {
        root,
        plaintext,
        revoked,
    })
}

/// Every active token with every scope and no limit.
async fn full_access_tokens(store: &dyn Store) -> Result<Vec<AdminToken>, Error> {
    let mut found = Vec::new();
    let mut page = Page {
        after: None,
        limit: 500,
    };
    loop {
        let tokens = store.list_tokens(&page).await?;
        let Some(last) = tokens.last() else {
            return Ok(found);
        };
        page.after = Some(last.id.as_str().to_owned());
        let whole = tokens.len() < page.limit as usize;
        found.extend(
            tokens
                .into_iter()
                .filter(|t| t.revoked_at.is_none() && t.is_full_access()),
        );
        if whole {
            return Ok(found);
        }
    }
}
