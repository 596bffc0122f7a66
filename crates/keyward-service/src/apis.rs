//! The provider's APIs, each with its own key prefix.
//!
//! Invariant: an API the actor reaches in none of its environments is
//! `NOT_FOUND`, like an absent one.

use std::collections::BTreeMap;

use keyward_core::model::{check_text, normalize_scopes, MAX_ROLES};
use keyward_core::AuditAction;
use keyward_core::{AdminScope, Api, ApiId, Environment, KeyRoles, Prefix, RoleName, Scope};
use keyward_store::ApiPatch;
use serde_json::json;

use crate::{audit_event, now, Actor, Error, Service};

/// Most scopes one role stands for, and most critical scopes of an API.
const MAX_ROLE_SCOPES: usize = 64;

/// An API to create.
#[derive(Debug, Clone)]
pub struct NewApi {
    pub name: String,
    pub prefix: String,
    /// Every environment when absent.
    pub environments: Option<Vec<Environment>>,
    /// `default` when absent.
    pub workspace: Option<String>,
    /// Key roles by name, each with the scopes it stands for; none when
    /// empty.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Scopes whose use needs the key owner's second factor.
    pub critical_scopes: Vec<String>,
    /// Which requests must be signed; none when absent.
    pub signing: Option<SigningRules>,
}

/// Which requests to an API's keys must be signed, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct SigningRules {
    /// Every request: keys are issued only with a signing key.
    pub all: bool,
    /// Requests needing any of these scopes.
    pub scopes: Vec<String>,
    /// A valid Ed25519 signature stands in for the owner's one-time code.
    pub ed25519_replaces_otp: bool,
}

/// Changes to an API; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ApiChanges {
    pub name: Option<String>,
    /// Replaces every role. Leaving out a role that unrevoked keys hold is
    /// refused (`Error::RoleInUse`).
    pub roles: Option<BTreeMap<String, Vec<String>>>,
    /// Replaces the critical scopes.
    pub critical_scopes: Option<Vec<String>>,
    /// Replaces the signing rules.
    pub signing: Option<SigningRules>,
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
        let roles = parse_roles(new.roles)?;
        let critical_scopes = parse_critical_scopes(new.critical_scopes)?;
        let signing = new
            .signing
            .map(parse_signing)
            .transpose()?
            .unwrap_or_default();
        let now = now();
        let api = Api {
            id: ApiId::generate(now).map_err(Error::internal)?,
            name: new.name,
            prefix,
            environments,
            workspace,
            created_at: now,
            roles,
            critical_scopes,
            signing,
        };
        let event = audit_event(
            Some(actor),
            AuditAction::ApiCreate,
            api.id.as_str(),
            json!({
                "name": api.name,
                "prefix": api.prefix,
                "environments": api.environments,
                "workspace": api.workspace,
                "roles": api.roles,
                "critical_scopes": api.critical_scopes,
                "signing": api.signing,
            }),
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

impl Service {
    /// Changes an API's name, key roles or critical scopes. A change of
    /// roles applies to every key holding them at its next verify, on
    /// every node: the store writes one `api` change-feed entry and this
    /// node drops the API's cached keys before answering.
    ///
    /// An API's roles shape keys of all its environments, so the actor
    /// must reach every one of them; an actor that reaches some sees the
    /// API but is refused.
    pub async fn update_api(
        &self,
        actor: &Actor,
        id: &str,
        changes: ApiChanges,
    ) -> Result<Api, Error> {
        actor.require(AdminScope::ApisWrite)?;
        let api = self.api_in_reach(actor, id).await?;
        if !api
            .environments
            .iter()
            .all(|env| actor.can(AdminScope::ApisWrite, &api.id, Some(&api.workspace), *env))
        {
            return Err(Error::Forbidden(
                "an API's roles apply in all its environments: changing it needs a token that \
                 reaches every one of them",
            ));
        }
        if let Some(name) = &changes.name {
            check_text("name", name, 256)?;
        }
        let roles = changes.roles.map(parse_roles).transpose()?;
        let critical_scopes = changes
            .critical_scopes
            .map(parse_critical_scopes)
            .transpose()?;
        let signing = changes.signing.map(parse_signing).transpose()?;
        let now = now();
        let mut fields = Vec::new();
        let mut details = json!({});
        if let Some(name) = &changes.name {
            fields.push("name");
            details["name"] = json!(name);
        }
        if let Some(roles) = &roles {
            fields.push("roles");
            details["roles"] = json!(roles);
        }
        if let Some(critical) = &critical_scopes {
            fields.push("critical_scopes");
            details["critical_scopes"] = json!(critical);
        }
        if let Some(signing) = &signing {
            fields.push("signing");
            details["signing"] = json!(signing);
        }
        details["fields"] = json!(fields);
        let event = audit_event(
            Some(actor),
            AuditAction::ApiUpdate,
            api.id.as_str(),
            details,
            now,
        )?;
        let patch = ApiPatch {
            name: changes.name,
            roles,
            critical_scopes,
            signing,
        };
        let updated = self.store.update_api(&api.id, &patch, now, &event).await?;
        if patch.roles.is_some() || patch.critical_scopes.is_some() || patch.signing.is_some() {
            self.verifier.api_changed(&api.id);
        }
        Ok(updated)
    }

    /// An API by the id a caller gave, as `NOT_FOUND` when it is malformed,
    /// absent or outside the actor's reach.
    async fn api_in_reach(&self, actor: &Actor, id: &str) -> Result<Api, Error> {
        let id = ApiId::parse(id).map_err(|_| Error::NotFound("api"))?;
        self.store
            .get_api(&id)
            .await?
            .filter(|a| reaches(actor, a))
            .ok_or(Error::NotFound("api"))
    }
}

/// Checks an API's key roles: at most [`MAX_ROLES`], each a valid name
/// standing for at most [`MAX_ROLE_SCOPES`] valid scopes.
fn parse_roles(roles: BTreeMap<String, Vec<String>>) -> Result<KeyRoles, Error> {
    if roles.len() > MAX_ROLES {
        return Err(Error::InvalidRequest(format!(
            "roles: an API defines at most {MAX_ROLES} roles"
        )));
    }
    let mut parsed = KeyRoles::new();
    for (name, scopes) in roles {
        let name =
            RoleName::parse(&name).map_err(|e| Error::InvalidRequest(format!("roles: {e}")))?;
        if scopes.len() > MAX_ROLE_SCOPES {
            return Err(Error::InvalidRequest(format!(
                "roles: a role stands for at most {MAX_ROLE_SCOPES} scopes"
            )));
        }
        let scopes = scopes
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidRequest(format!("roles: {e}")))?;
        parsed.insert(name, normalize_scopes(scopes));
    }
    Ok(parsed)
}

fn parse_critical_scopes(scopes: Vec<String>) -> Result<Vec<Scope>, Error> {
    if scopes.len() > MAX_ROLE_SCOPES {
        return Err(Error::InvalidRequest(format!(
            "critical_scopes: an API marks at most {MAX_ROLE_SCOPES} scopes critical"
        )));
    }
    let parsed = scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidRequest(format!("critical_scopes: {e}")))?;
    Ok(normalize_scopes(parsed))
}

fn parse_signing(rules: SigningRules) -> Result<keyward_core::ApiSigning, Error> {
    if rules.scopes.len() > MAX_ROLE_SCOPES {
        return Err(Error::InvalidRequest(format!(
            "signing.scopes: at most {MAX_ROLE_SCOPES} scopes"
        )));
    }
    let scopes = rules
        .scopes
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidRequest(format!("signing.scopes: {e}")))?;
    Ok(keyward_core::ApiSigning {
        all: rules.all,
        scopes: normalize_scopes(scopes),
        ed25519_replaces_otp: rules.ed25519_replaces_otp,
    })
}

fn reaches(actor: &Actor, api: &Api) -> bool {
    api.environments
        .iter()
        .any(|env| actor.can(AdminScope::ApisRead, &api.id, Some(&api.workspace), *env))
}
