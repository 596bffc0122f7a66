//! What an actor's grants reach, as the store filters listings and bulk
//! revocations: one rectangle (APIs × environments) per grant, with its
//! workspaces resolved to the APIs they hold.

use keyward_core::{AdminScope, ApiId, Environment};

use crate::{Actor, Error, Service};

/// One grant's reach: `None` limits nothing.
type Rectangle = (Option<Vec<ApiId>>, Option<Vec<Environment>>);

/// The reach of an actor's grants holding one scope.
#[derive(Debug, Clone)]
pub struct Coverage {
    rectangles: Vec<Rectangle>,
}

impl Coverage {
    /// Each grant's reach, for operations the store runs per filter.
    pub fn rectangles(&self) -> Vec<Rectangle> {
        self.rectangles.clone()
    }

    /// Whether one filter says exactly what is reached.
    pub fn is_exact(&self) -> bool {
        self.rectangles.len() <= 1
    }

    /// The APIs some grant reaches; `None`: any.
    pub fn api_ids(&self) -> Option<Vec<ApiId>> {
        let mut union = Vec::new();
        for (apis, _) in &self.rectangles {
            union.extend(apis.clone()?);
        }
        union.sort();
        union.dedup();
        Some(union)
    }

    /// The environments some grant reaches; `None`: any.
    pub fn environments(&self) -> Option<Vec<Environment>> {
        let mut union = Vec::new();
        for (_, envs) in &self.rectangles {
            union.extend(envs.clone()?);
        }
        union.sort();
        union.dedup();
        Some(union)
    }

    /// Whether some grant reaches records of `api` in `environment`.
    pub fn covers(&self, api: &ApiId, environment: Environment) -> bool {
        self.rectangles.iter().any(|(apis, envs)| {
            apis.as_ref().is_none_or(|a| a.contains(api))
                && envs.as_ref().is_none_or(|e| e.contains(&environment))
        })
    }
}

impl Service {
    /// The reach of the actor's grants holding `scope`.
    pub(crate) async fn reach_of(
        &self,
        actor: &Actor,
        scope: AdminScope,
    ) -> Result<Coverage, Error> {
        if actor.is_node_wide(scope) {
            return Ok(Coverage {
                rectangles: vec![(None, None)],
            });
        }
        let mut grants = Vec::new();
        actor.token.any_grant(|g| {
            if g.has(scope) {
                grants.push((
                    g.workspaces.map(<[String]>::to_vec),
                    g.api_ids.map(<[ApiId]>::to_vec),
                    g.environments.map(<[Environment]>::to_vec),
                ));
            }
            false
        });
        let apis = if grants.iter().any(|(w, _, _)| w.is_some()) {
            self.store.list_apis().await?
        } else {
            Vec::new()
        };
        let rectangles = grants
            .into_iter()
            .map(|(workspaces, api_ids, environments)| {
                let api_ids = match workspaces {
                    None => api_ids,
                    Some(names) => Some(
                        apis.iter()
                            .filter(|a| names.contains(&a.workspace))
                            .filter(|a| api_ids.as_ref().is_none_or(|ids| ids.contains(&a.id)))
                            .map(|a| a.id.clone())
                            .collect(),
                    ),
                };
                (api_ids, environments)
            })
            .collect();
        Ok(Coverage { rectangles })
    }

    /// Whether a grant of the actor holding `scope` reaches records of
    /// `api` in `environment`.
    pub(crate) async fn reaches_key(
        &self,
        actor: &Actor,
        scope: AdminScope,
        api: &ApiId,
        environment: Environment,
    ) -> Result<bool, Error> {
        if actor.is_node_wide(scope) {
            return Ok(true);
        }
        let workspace = self.verifier.load_workspace(api).await?;
        Ok(actor.can(scope, api, workspace.as_deref(), environment))
    }
}
