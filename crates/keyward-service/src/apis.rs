//! The provider's APIs, each with its own key prefix.
//!
//! Invariant: an API the actor reaches in none of its environments is
//! `NOT_FOUND`, like an absent one.

use keyward_core::model::check_text;
use keyward_core::AuditAction;
use keyward_core::{AdminScope, Api, ApiId, Environment, Prefix};
use serde_json::json;

use crate::{audit_event, now, Actor, Error, Service};

/// An API to create.
#[derive(Debug, Clone)]
pub struct NewApi {
    pub name: String,
    pub prefix: String,
    /// Every environment when absent.
    pub environments: Option<Vec<Environment>>,
    /// `default` when absent.
    pub workspace: Option<String>,
}

impl Service {
    /// Creates an API in a workspace. Only an actor whose grant reaches the
    /// whole workspace (no API or environment limit) may: a new API is
    /// outside every grant limited to APIs.
    pub async fn create_api(&self, actor: &Actor, new: NewApi) -> Result<Api, Error> {
        actor.require(AdminScope::ApisWrite)?;
        let workspace = new
            .workspace
            .unwrap_or_else(|| keyward_core::DEFAULT_WORKSPACE.to_owned());
        keyward_core::access::check_name("workspace", &workspace)?;
        if !actor.reaches_workspace(AdminScope::ApisWrite, &workspace) {
            return Err(Error::Forbidden(
                "creating an API needs a grant of apis:write over its whole workspace, without \
                 API or environment limits",
            ));
        }
        if self.store.get_workspace(&workspace).await?.is_none() {
            return Err(Error::NotFound("workspace"));
        }
        check_text("name", &new.name, 256)?;
        let prefix = Prefix::parse(&new.prefix)
            .map_err(|e| Error::InvalidRequest(e.to_string().replace("key prefix", "prefix")))?;
        if prefix.is_admin() {
            return Err(Error::InvalidRequest(
                "the prefixes kwa and kws are reserved for admin and session tokens".into(),
            ));
        }
        let mut environments = new
            .environments
            .unwrap_or_else(|| Environment::ALL.to_vec());
        environments.sort();
        environments.dedup();
        if environments.is_empty() {
            return Err(Error::InvalidRequest(
                "an API needs at least one environment".into(),
            ));
        }
        let now = now();
        let api = Api {
            id: ApiId::generate(now).map_err(Error::internal)?,
            name: new.name,
            prefix,
            environments,
            workspace,
            created_at: now,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::ApiCreate,
            api.id.as_str(),
            json!({"name": api.name, "prefix": api.prefix, "environments": api.environments,
                "workspace": api.workspace}),
            now,
        )?;
        self.store.create_api(&api, &event).await?;
        self.verifier
            .remember_workspace(&api.id, api.workspace.as_str().into());
        Ok(api)
    }

    /// Every API the actor reaches.
    pub async fn list_apis(&self, actor: &Actor) -> Result<Vec<Api>, Error> {
        actor.require(AdminScope::ApisRead)?;
        let apis = self.store.list_apis().await?;
        Ok(apis.into_iter().filter(|a| reaches(actor, a)).collect())
    }

    /// An API by the id a caller gave.
    pub async fn api(&self, actor: &Actor, id: &str) -> Result<Api, Error> {
        actor.require(AdminScope::ApisRead)?;
        let id = ApiId::parse(id).map_err(|_| Error::NotFound("api"))?;
        self.store
            .get_api(&id)
            .await?
            .filter(|a| reaches(actor, a))
            .ok_or(Error::NotFound("api"))
    }
}

fn reaches(actor: &Actor, api: &Api) -> bool {
    api.environments
        .iter()
        .any(|env| actor.can(AdminScope::ApisRead, &api.id, Some(&api.workspace), *env))
}
