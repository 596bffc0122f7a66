//! Who is asking: the admin token an operation runs for — a service token,
//! or a signed-in user's session with the grants of the user's roles.

use std::sync::Arc;

use keyward_core::{AdminScope, AdminToken, ApiId, Environment, TokenId, UserId};
use time::{Duration, OffsetDateTime};

use crate::Error;

/// The authenticated admin token an operation runs for. Every operation
/// takes one and checks it before anything else.
#[derive(Debug, Clone)]
pub struct Actor {
    pub token: Arc<AdminToken>,
}

impl Actor {
    pub fn new(token: Arc<AdminToken>) -> Self {
        Actor { token }
    }

    /// Refuses the operation unless some grant of the token carries
    /// `scope`. Where the operation acts on records, their reach is checked
    /// against the grants holding `scope` ([`Actor::can`]).
    pub fn require(&self, scope: AdminScope) -> Result<(), Error> {
        if self.token.has_scope(scope) {
            Ok(())
        } else {
            Err(Error::MissingScope(scope))
        }
    }

    /// Whether a grant holding `scope` reaches records of `api` (in
    /// `workspace`) in `environment`.
    pub fn can(
        &self,
        scope: AdminScope,
        api: &ApiId,
        workspace: Option<&str>,
        environment: Environment,
    ) -> bool {
        self.token.reaches(scope, api, workspace, environment)
    }

    /// Whether a grant holding `scope` reaches `environment` outside any API
    /// (secrets mounts are bound to one environment and to no API).
    pub fn reaches_environment(&self, scope: AdminScope, environment: Environment) -> bool {
        self.token.reaches_environment(scope, environment)
    }

    /// Whether one grant holds all of `scopes` with no limit.
    pub fn is_node_wide_for(&self, scopes: &[AdminScope]) -> bool {
        self.token
            .any_grant(|g| g.is_unlimited() && scopes.iter().all(|s| g.has(*s)))
    }

    /// Whether some grant, whatever its scopes, reaches `environment`:
    /// what decides whether a secrets mount is seen at all.
    pub fn sees_environment(&self, environment: Environment) -> bool {
        self.token.any_grant(|g| g.reaches_environment(environment))
    }

    /// Whether the grants holding `scope` reach everything: no API,
    /// workspace or environment limit.
    pub fn is_node_wide(&self, scope: AdminScope) -> bool {
        self.token.is_node_wide(scope)
    }

    /// Whether a grant holding `scope` reaches all of workspace `name`:
    /// every API in it, present and future, in every environment.
    pub fn reaches_workspace(&self, scope: AdminScope, name: &str) -> bool {
        self.token.any_grant(|g| {
            g.has(scope)
                && g.api_ids.is_none()
                && g.environments.is_none()
                && g.workspaces.is_none_or(|w| w.iter().any(|n| n == name))
        })
    }

    /// Refuses a critical operation of a session whose user gave no second
    /// factor within `window`. Service tokens are not interactive: they
    /// hold a critical scope only when it was granted to them explicitly,
    /// and need no step-up.
    pub fn require_step_up(&self, window: Duration, now: OffsetDateTime) -> Result<(), Error> {
        if !self.token.is_session() {
            return Ok(());
        }
        match self.token.stepped_up_at {
            Some(at) if at + window >= now && at <= now + Duration::seconds(5) => Ok(()),
            _ => Err(Error::StepUpRequired),
        }
    }

    pub fn id(&self) -> &TokenId {
        &self.token.id
    }

    /// The signed-in user, for a session.
    pub fn user_id(&self) -> Option<&UserId> {
        self.token.user_id.as_ref()
    }
}
