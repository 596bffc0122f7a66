//! Who is asking: the admin token an operation runs for.

use std::sync::Arc;

use keyward_core::{AdminScope, AdminToken, ApiId, Environment, TokenId};

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

    /// Refuses the operation unless the token carries `scope`.
    pub fn require(&self, scope: AdminScope) -> Result<(), Error> {
        if self.token.has_scope(scope) {
            Ok(())
        } else {
            Err(Error::MissingScope(scope))
        }
    }

    /// Whether records of `api` in `environment` are within this token's reach.
    pub fn can_access(&self, api: &ApiId, environment: Environment) -> bool {
        self.token.can_access(api, environment)
    }

    /// Whether the token reaches `environment` (secrets mounts are bound to
    /// one environment and to no API).
    pub fn reaches_environment(&self, environment: Environment) -> bool {
        self.token
            .environments
            .as_ref()
            .is_none_or(|envs| envs.contains(&environment))
    }

    /// Whether the token is limited to some APIs or environments.
    pub fn is_restricted(&self) -> bool {
        self.token.api_ids.is_some() || self.token.environments.is_some()
    }

    pub fn id(&self) -> &TokenId {
        &self.token.id
    }
}
