//! Keys and admin tokens found where they should not be: each one that is
//! still valid is revoked at once (reason `leaked`), with where it was
//! found in the audit log. A leaked admin token takes every token it
//! created with it, and is revoked even when it is the last full-access
//! one — which is then said loudly.

use keyward_core::key::ADMIN_PREFIX;
use keyward_core::{AdminScope, AdminToken, AuditAction, KeyDigest, ParsedKey};
use keyward_store::LastFullToken;
use serde_json::json;
use time::OffsetDateTime;

use crate::{audit_event, now, Actor, Error, Service};

/// Who reports a leak.
#[derive(Debug, Clone, Copy)]
pub enum Reporter<'a> {
    /// An admin token; it needs `leaks:report`.
    Token(&'a Actor),
    /// A secret-scanning partner whose signature over the report the
    /// caller has verified.
    Partner,
}

impl Service {
    /// Revokes the key or admin token `presented` if it is one and still
    /// valid. `None` when it is not a well-formed key; otherwise whether a key
    /// or token with this digest exists (revoked now or before).
    pub async fn revoke_leaked(
        &self,
        reporter: Reporter<'_>,
        presented: &str,
        found: serde_json::Value,
    ) -> Result<Option<bool>, Error> {
        let caller = match reporter {
            Reporter::Token(actor) => {
                actor.require(AdminScope::LeaksReport)?;
                Some(actor)
            }
            Reporter::Partner => None,
        };
        let Ok(parsed) = ParsedKey::parse(presented.trim()) else {
            return Ok(None);
        };
        let digest: KeyDigest = parsed.digest();
        let now = now();
        let details = json!({ "reason": "leaked", "found": found });
        if parsed.prefix() == ADMIN_PREFIX {
            let Some(token) = self
                .store
                .find_token_by_digest(&digest)
                .await?
                .filter(|t| t.digest.ct_eq(&digest))
            else {
                return Ok(Some(false));
            };
            // A leaked token is revoked whatever it leaves, and so is every
            // token it created: whoever holds it may have minted them.
            let event = audit_event(
                caller,
                AuditAction::TokenRevoke,
                token.id.as_str(),
                details,
                now,
            )?;
            let revoked = self
                .store
                .revoke_token_tree(&token.id, now, &event, LastFullToken::Revoke)
                .await?;
            self.tokens.forget(&digest);
            for child in &revoked {
                self.tokens.forget(&child.digest);
            }
            if !revoked.is_empty() {
                tracing::warn!(
                    token = %token.id,
                    revoked = revoked.len(),
                    "a leaked admin token was revoked, with the tokens it created"
                );
                if token.is_usable(now)
                    && token.is_full_access()
                    && !self.store.has_full_token(now).await?
                {
                    self.lost_last_full_token(caller, &token, now).await?;
                }
            }
            return Ok(Some(true));
        }
        let Some(record) = self
            .store
            .find_key_by_digest(&digest)
            .await?
            .filter(|k| k.digest.ct_eq(&digest))
        else {
            return Ok(Some(false));
        };
        let event = audit_event(
            caller,
            AuditAction::KeyRevoke,
            record.id.as_str(),
            details,
            now,
        )?;
        let (_, revoked) = self
            .store
            .revoke_key(&record.id, "leaked", now, &event)
            .await?;
        if revoked {
            tracing::warn!(key = %record.id, "a leaked key was revoked");
        }
        self.verifier.key_changed(&record.digest);
        Ok(Some(true))
    }

    /// Says loudly that the last token able to grant every scope was revoked as
    /// leaked: that is right (whoever found it could do anything), but until an
    /// operator issues a new one nobody can administer the install in full. An
    /// error in the log, an audit event and a warning in `/ready`.
    async fn lost_last_full_token(
        &self,
        caller: Option<&Actor>,
        token: &AdminToken,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        tracing::error!(
            token = %token.id,
            "the last full-access admin token was revoked as leaked; \
             run `keyward operator root-token` to issue a new one"
        );
        let event = audit_event(
            caller,
            AuditAction::TokenLastFullRevoked,
            token.id.as_str(),
            json!({
                "reason": "leaked",
                "remedy": "run `keyward operator root-token` to issue a new full-access token",
            }),
            now,
        )?;
        self.store.append_audit(&[event]).await?;
        Ok(())
    }
}
