//! Teams, as a site has them: the names its settings list (`teams` of the site) and those
//! its agents' accounts carry, each with its members and who of them is online. A team is
//! made by naming it (on the site, or on an account: `PATCH /api/v1/agents/{id}`), and is
//! gone when nothing names it.

use super::auth::{caller, need};
use super::error::{ApiError, ErrorBody};
use super::Api;
use crate::accounts::Role;
use crate::api_keys::Scope;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use std::collections::BTreeMap;

/// A team's member.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Member {
    id: String,
    online: bool,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Team {
    name: String,
    members: Vec<Member>,
    /// Members online now.
    online: usize,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TeamList {
    teams: Vec<Team>,
}

/// The site's teams, with their members and presence (supervisors; keys with
/// `agents:manage`).
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "agents",
    responses(
        (status = 200, description = "The teams", body = TeamList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or a key without agents:manage", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<TeamList>, ApiError> {
    let me = caller(
        &api,
        &headers,
        need(Role::Supervisor, Some(Scope::AgentsManage)),
    )
    .await?;
    let store = &api.reads.store;
    let fail = |e| ApiError::store("teams", e);
    let mut teams: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    if let Some(site) = store.site(&me.site).await.map_err(fail)? {
        for t in site.teams {
            teams.entry(t).or_default();
        }
    }
    for (id, names) in store.team_members(&me.site).await.map_err(fail)? {
        for t in names {
            teams.entry(t).or_default().push(Member {
                id: id.clone(),
                online: api.notices.is_online(&id),
            });
        }
    }
    Ok(Json(TeamList {
        teams: teams
            .into_iter()
            .map(|(name, members)| Team {
                online: members.iter().filter(|m| m.online).count(),
                name,
                members,
            })
            .collect(),
    }))
}
