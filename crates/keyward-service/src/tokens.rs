//! Admin tokens. They form a tree (each names the token that created it),
//! and power only narrows down the tree:
//! - a token creates tokens with at most its own scopes and reach, expiring
//!   no later than itself: a later expiry, or none, is capped to its own;
//! - a token sees (lists, revokes) only tokens within its reach: no more
//!   scopes, APIs or environments than its own. Any other token answers as
//!   an absent one does, `NOT_FOUND`;
//! - revoking a token revokes every token below it, in one transaction,
//!   with an audit event for each naming where the cascade began;
//! - the admin API refuses to revoke the last usable token that can grant
//!   every scope (`LAST_ROOT_TOKEN`); `keyward operator root-token` and a
//!   leak report still can.
//!
//! Invariant: a revocation drops every revoked token from this node's
//! token cache before it returns.

use keyward_core::AuditAction;
use std::collections::HashMap;

use keyward_core::model::check_text;
use keyward_core::{
    AdminScope, AdminToken, ApiId, Environment, GrantView, PlaintextKey, Prefix, TokenId,
};
use keyward_store::{LastFullToken, Page, StoreError};
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::to_millis;
use crate::{audit_event, now, Actor, Error, Service};

/// A token to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<String>,
    /// No limit when absent (refused unless the creator has none).
    pub api_ids: Option<Vec<String>>,
    pub environments: Option<Vec<Environment>>,
    /// No limit when absent (for a session, the workspaces of its grants).
    pub workspaces: Option<Vec<String>>,
    /// Capped to the creator's.
    pub expires_at: Option<OffsetDateTime>,
    /// Binds the token to this client certificate of mutual TLS (the
    /// SHA-256 of its DER, hex). A token created by a bound token is bound
    /// to the creator's certificate unless another is named.
    pub client_cert: Option<String>,
}

impl Service {
    /// The actor's own token, as authenticated: any usable token may read
    /// itself (Vault's `lookup-self`), whatever its scopes. It holds no
    /// secret; the digest stays with the caller's code, never a view.
    pub fn own_token(&self, actor: &Actor) -> std::sync::Arc<AdminToken> {
        std::sync::Arc::clone(&actor.token)
    }

    /// Creates a token below the actor's. The plaintext is returned here
    /// and kept nowhere.
    pub async fn create_token(
        &self,
        actor: &Actor,
        new: NewToken,
    ) -> Result<(AdminToken, PlaintextKey), Error> {
        actor.require(AdminScope::TokensWrite)?;
        check_text("name", &new.name, 256)?;
        let mut scopes = new
            .scopes
            .iter()
            .map(|s| AdminScope::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(Error::InvalidRequest(
                "a token needs at least one scope".into(),
            ));
        }
        if !scopes.iter().all(|s| actor.token.has_scope(*s)) {
            return Err(Error::Forbidden(
                "a token cannot grant scopes it does not hold",
            ));
        }
        let api_ids = new
            .api_ids
            .map(|ids| {
                ids.iter()
                    .map(|i| ApiId::parse(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if let Some(names) = &new.workspaces {
            for name in names {
                keyward_core::access::check_name("workspace", name)?;
            }
        }
        let session = actor.token.is_session();
        // A token says its limits; one grant of the creator must hold all
        // of them. A session whose grants name workspaces gives the token
        // the workspaces of the grants that hold its scopes when it names
        // none.
        let (api_ids, environments, workspaces) = if session {
            // Left out, a limit is the session's own: none when a grant
            // holding the scopes has none, else those of the grants that
            // hold them.
            let workspaces = match new.workspaces {
                Some(names) => Some(names),
                None => session_limit(&actor.token, &scopes, |g| g.workspaces),
            };
            let environments = match new.environments {
                Some(envs) => Some(envs),
                None => session_limit(&actor.token, &scopes, |g| g.environments),
            };
            (api_ids, environments, workspaces)
        } else {
            (api_ids, new.environments, new.workspaces)
        };
        let covered = actor.token.any_grant(|g| {
            scopes.iter().all(|s| g.has(*s))
                && within(api_ids.as_deref(), g.api_ids)
                && within(environments.as_deref(), g.environments)
                && within(workspaces.as_deref(), g.workspaces)
        });
        if !covered {
            return Err(Error::Forbidden(
                "a token cannot reach APIs, workspaces or environments its creator cannot",
            ));
        }
        let client_cert = match new.client_cert.as_deref() {
            Some(text) => Some(parse_fingerprint(text)?),
            None => actor.token.client_cert,
        };
        let now = now();
        if session && scopes.iter().any(|s| s.is_critical()) {
            actor.require_step_up(self.auth.step_up_window, now)?;
        }
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::InvalidRequest(
                "expires_at must be in the future".into(),
            ));
        }
        // A child never outlives its creator: a later expiry, or none,
        // becomes the creator's. Times are kept to the millisecond, as
        // stored. A session is short-lived: what its user creates is a
        // service token of its own, outside the session's tree.
        let creator_expiry = if session {
            None
        } else {
            actor.token.expires_at
        };
        let expires_at = match (new.expires_at.map(to_millis), creator_expiry) {
            (Some(at), Some(limit)) => Some(at.min(limit)),
            (None, limit) => limit,
            (at, None) => at,
        };
        let plaintext =
            PlaintextKey::generate(&Prefix::admin(), Environment::Live).map_err(Error::internal)?;
        let token = AdminToken {
            id: TokenId::generate(now).map_err(Error::internal)?,
            name: new.name,
            digest: plaintext.digest(),
            start: plaintext.display_start(),
            scopes,
            api_ids,
            environments,
            created_by: (!session).then(|| actor.id().clone()),
            created_at: now,
            expires_at,
            revoked_at: None,
            workspaces,
            user_id: None,
            grants: Vec::new(),
            stepped_up_at: None,
            client_cert,
            last_used_at: None,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::TokenCreate,
            token.id.as_str(),
            json!({
                "name": token.name,
                "scopes": token.scopes,
                "api_ids": token.api_ids,
                "environments": token.environments,
                "workspaces": token.workspaces,
                "client_cert": token.client_cert.map(|c| base16ct::lower::encode_string(&c)),
                "start": token.start,
                "expires_at": token
                    .expires_at
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            }),
            now,
        )?;
        self.store.create_token(&token, &event).await?;
        Ok((token, plaintext))
    }

    /// Up to `page.limit` tokens within the actor's reach, after
    /// `page.after`, and the cursor of the next page when there may be
    /// more. A token's `created_by` is left out when its creator is beyond
    /// the actor's reach.
    pub async fn list_tokens(
        &self,
        actor: &Actor,
        mut page: Page,
    ) -> Result<(Vec<AdminToken>, Option<String>), Error> {
        actor.require(AdminScope::TokensRead)?;
        let limit = page.limit as usize;
        // Tokens are few; those out of reach are skipped here, reading on
        // until the page is full or the table ends.
        let mut tokens = Vec::with_capacity(limit);
        let mut creators = Creators::default();
        let mut next = None;
        'scan: loop {
            let batch = self.store.list_tokens(&page).await?;
            let full_batch = batch.len() == page.limit as usize;
            for token in batch {
                page.after = Some(token.id.as_str().to_owned());
                if within_reach(&actor.token, &token) {
                    tokens.push(creators.mask(self, actor, token).await?);
                    if tokens.len() == limit {
                        next = page.after.clone();
                        break 'scan;
                    }
                }
            }
            if !full_batch {
                break;
            }
        }
        Ok((tokens, next))
    }

    /// Revokes a token within the actor's reach and every token below it;
    /// returns the token as it is now.
    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<AdminToken, Error> {
        actor.require(AdminScope::TokensWrite)?;
        let id = TokenId::parse(id).map_err(|_| Error::NotFound("token"))?;
        self.store
            .get_token(&id)
            .await?
            .filter(|target| within_reach(&actor.token, target))
            .ok_or(Error::NotFound("token"))?;
        let now = now();
        let event = audit_event(
            Some(actor),
            AuditAction::TokenRevoke,
            id.as_str(),
            json!({}),
            now,
        )?;
        let revoked = self
            .store
            .revoke_token_tree(&id, now, &event, LastFullToken::Keep)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => Error::NotFound("token"),
                other => other.into(),
            })?;
        for token in &revoked {
            self.tokens.forget(&token.digest);
        }
        if revoked.len() > 1 {
            tracing::info!(token = %id, cascade = revoked.len() - 1, "revoked a token and the tokens it created");
        }
        let after = self
            .store
            .get_token(&id)
            .await?
            .ok_or(Error::NotFound("token"))?;
        Creators::default().mask(self, actor, after).await
    }
}

/// Whether each creator named by the tokens shown is within the actor's
/// reach. A token's `created_by` is shown only then: a limited token reads
/// its own record, and that must not name the root token it came from.
#[derive(Default)]
struct Creators(HashMap<TokenId, bool>);

impl Creators {
    /// `token`, without its creator when that is beyond the actor's reach.
    async fn mask(
        &mut self,
        service: &Service,
        actor: &Actor,
        mut token: AdminToken,
    ) -> Result<AdminToken, Error> {
        if let Some(creator) = token.created_by.clone() {
            let shown = match self.0.get(&creator) {
                Some(shown) => *shown,
                None => {
                    let shown = service
                        .store
                        .get_token(&creator)
                        .await?
                        .is_some_and(|c| within_reach(&actor.token, &c));
                    self.0.insert(creator, shown);
                    shown
                }
            };
            if !shown {
                token.created_by = None;
            }
        }
        Ok(token)
    }
}

/// The union of one limit over a session's grants that hold all of
/// `scopes`; `None` when one of them has no such limit.
fn session_limit<T: Clone + Ord>(
    session: &AdminToken,
    scopes: &[AdminScope],
    limit: impl Fn(GrantView<'_>) -> Option<&[T]>,
) -> Option<Vec<T>> {
    let mut union = Some(Vec::new());
    session.any_grant(|g| {
        if scopes.iter().all(|s| g.has(*s)) {
            match (limit(g), union.as_mut()) {
                (None, _) => union = None,
                (Some(values), Some(all)) => all.extend_from_slice(values),
                (Some(_), None) => {}
            }
        }
        false
    });
    union.map(|mut values: Vec<T>| {
        values.sort();
        values.dedup();
        values
    })
}

/// Whether `token` is within the reach of `holder`: one grant of the
/// holder has every scope, API, workspace and environment each grant of
/// the token has.
pub fn within_reach(holder: &AdminToken, token: &AdminToken) -> bool {
    token.any_grant(|t| {
        holder.any_grant(|h| {
            t.scopes.iter().all(|s| h.has(*s))
                && within(t.api_ids, h.api_ids)
                && within(t.workspaces, h.workspaces)
                && within(t.environments, h.environments)
        })
    })
}

/// Whether a restriction `inner` is at least as narrow as `outer`
/// (`None` = unrestricted).
pub fn within<T: PartialEq>(inner: Option<&[T]>, outer: Option<&[T]>) -> bool {
    match (inner, outer) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(i), Some(o)) => i.iter().all(|x| o.contains(x)),
    }
}

/// A certificate's SHA-256 fingerprint as people copy it: 64 hex digits,
/// optionally with colons (`openssl x509 -fingerprint -sha256`) and a
/// `sha256:` prefix.
fn parse_fingerprint(text: &str) -> Result<[u8; 32], Error> {
    let text = text
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:");
    // Either 64 hex digits, or 32 pairs joined by colons.
    let paired = text.len() == 95 && text.split(':').all(|pair| pair.len() == 2);
    if text.contains(':') && !paired {
        return Err(Error::InvalidRequest(
            "client_cert must be a SHA-256 fingerprint: 64 hex digits, or 32 pairs joined by colons"
                .into(),
        ));
    }
    let hex = text.replace(':', "").to_ascii_lowercase();
    let mut out = [0u8; 32];
    match base16ct::lower::decode(hex.as_bytes(), &mut out) {
        Ok(bytes) if bytes.len() == 32 => Ok(out),
        _ => Err(Error::InvalidRequest(
            "client_cert must be a SHA-256 fingerprint: 64 hex digits, or 32 pairs joined by colons"
                .into(),
        )),
    }
}
