//! Agent accounts over the API: supervisors list and read them, admins create and change
//! them (role, name, password, capacity, disabled).

use super::auth::{answer, caller, need};
use super::error::{ApiError, Body, ErrorBody, Params};
use super::Api;
use crate::accounts::{self, Role};
use crate::api_keys::Scope;
use crate::store::AccountRow;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;

/// Accounts per page, at most.
const PAGE_MAX: u32 = 500;

/// An agent's account (never its password).
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(super) struct Agent {
    id: String,
    site: String,
    display_name: Option<String>,
    role: Role,
    /// Most conversations at once; none: the deployment's `agent_capacity`.
    max_conversations: Option<u32>,
    disabled: bool,
    /// Whether it can log in over HTTP (agents only seen by the store cannot).
    has_password: bool,
    /// The teams it takes conversations for (as well as those for no team).
    teams: Vec<String>,
    /// Connected to a gateway now (any device).
    online: bool,
}

/// An account as shown, with whether its agent is online.
fn shown(api: &Api, a: AccountRow) -> Agent {
    let online = api.notices.is_online(&a.id);
    Agent { online, ..a.into() }
}

impl From<AccountRow> for Agent {
    fn from(a: AccountRow) -> Self {
        Self {
            role: Role::parse(&a.role).unwrap_or(Role::Agent),
            has_password: a.password_hash.is_some(),
            id: a.id,
            site: a.site,
            display_name: a.display_name,
            max_conversations: a.max_conversations,
            disabled: a.disabled,
            teams: a.teams,
            online: false,
        }
    }
}

/// A page of accounts; `next`: the `after` of the next page, when there may be one.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct AgentPage {
    agents: Vec<Agent>,
    next: Option<String>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Accounts with ids after this one (default: from the first).
    after: Option<String>,
    /// How many, at most (1-500; default 100).
    limit: Option<u32>,
}

/// A new account.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAgent {
    /// 1-64 of A-Z a-z 0-9 . _ @ -
    id: String,
    /// At least 8 characters.
    password: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    max_conversations: Option<u32>,
    /// Team names, each 1-32 of a-z 0-9 _ -.
    #[serde(default)]
    teams: Vec<String>,
    /// The site it works for (default: the caller's). Only admins of the deployment's own
    /// site may name another: that is how a new site gets its first admin.
    #[serde(default)]
    site: Option<String>,
}

/// Changes to an account: what is given changes, the rest stays.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentPatch {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    /// A new password (at least 8 characters).
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    max_conversations: Option<u32>,
    #[serde(default)]
    disabled: Option<bool>,
    /// The teams, all of them (replacing the old list).
    #[serde(default)]
    teams: Option<Vec<String>>,
}

fn check_teams(teams: &[String]) -> Result<(), ApiError> {
    if teams.len() > 32
        || !teams
            .iter()
            .all(|t| switchboard_protocol::token::is_team(t))
    {
        return Err(ApiError::bad_request(
            "teams: at most 32, each 1-32 of a-z 0-9 _ -",
        ));
    }
    Ok(())
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no agent {id:?}"),
    )
}

/// Lists accounts in id order (supervisors and admins).
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of accounts", body = AgentPage),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or disabled", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    Params(q): Params<PageQuery>,
    headers: HeaderMap,
) -> Result<Json<AgentPage>, ApiError> {
    let me = caller(
        &api,
        &headers,
        need(Role::Supervisor, Some(Scope::AgentsManage)),
    )
    .await?;
    let limit = q.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let rows = api
        .reads
        .store
        .accounts(&me.site, q.after.as_deref().unwrap_or(""), limit)
        .await
        .map_err(|e| ApiError::store("agents", e))?;
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|a| a.id.clone()))
        .flatten();
    Ok(Json(AgentPage {
        agents: rows.into_iter().map(|a| shown(&api, a)).collect(),
        next,
    }))
}

/// One account (supervisors and admins; any agent for its own).
#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The account", body = Agent),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Another agent's, without the supervisor role", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn get_one(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Agent>, ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, Some(Scope::AgentsManage))).await?;
    if me.id != id && me.role < Role::Supervisor {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs the supervisor role",
        ));
    }
    let row = api
        .reads
        .store
        .account(&id)
        .await
        .map_err(|e| ApiError::store("agents", e))?;
    row.filter(|a| a.site == me.site)
        .map(|a| Json(shown(&api, a)))
        .ok_or_else(|| not_found(&id))
}

/// Creates an account (admins).
#[utoipa::path(
    post,
    path = "/api/v1/agents",
    tag = "agents",
    request_body = NewAgent,
    responses(
        (status = 201, description = "Created", body = Agent),
        (status = 400, description = "A bad id, a weak password, not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin, or disabled", body = ErrorBody),
        (status = 409, description = "The account exists", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    Body(new): Body<NewAgent>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    let me = caller(&api, &headers, need(Role::Admin, Some(Scope::AgentsManage))).await?;
    let store = &api.reads.store;
    let site = match new.site {
        Some(s) if s != me.site => {
            if !me.manages_sites() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "only admins of the default site make accounts for other sites",
                ));
            }
            let known = store
                .site(&s)
                .await
                .map_err(|e| ApiError::store("sites", e))?;
            known.ok_or_else(|| ApiError::bad_request(format!("no site {s:?}")))?;
            s
        }
        _ => me.site.clone(),
    };
    if store
        .account(&new.id)
        .await
        .map_err(|e| ApiError::store("agents", e))?
        .is_some_and(|a| a.password_hash.is_some())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("agent {:?} exists", new.id),
        ));
    }
    check_teams(&new.teams)?;
    let role = new.role.unwrap_or(Role::Agent);
    if switchboard_protocol::AgentId::new(&new.id).is_none() {
        return Err(answer(accounts::AccountError::BadId));
    }
    // One write, with its site: never an account of the default site on the way.
    let row = AccountRow {
        id: new.id,
        site,
        display_name: new.display_name,
        password_hash: Some(accounts::new_hash(&new.password).await.map_err(answer)?),
        role: role.as_str().into(),
        max_conversations: new.max_conversations,
        disabled: false,
        teams: new.teams,
    };
    store
        .put_account(row.clone())
        .await
        .map_err(|e| ApiError::store("agents", e))?;
    Ok((StatusCode::CREATED, Json(shown(&api, row))))
}

/// Changes an account (admins): name, role, password, capacity, disabled. Disabling one
/// closes its agent's live connections at once (close code 4002).
#[utoipa::path(
    patch,
    path = "/api/v1/agents/{id}",
    tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = AgentPatch,
    responses(
        (status = 200, description = "The account as changed", body = Agent),
        (status = 400, description = "A weak password, not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin, or disabled", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn update(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(patch): Body<AgentPatch>,
) -> Result<Json<Agent>, ApiError> {
    let me = caller(&api, &headers, need(Role::Admin, Some(Scope::AgentsManage))).await?;
    let store = &api.reads.store;
    let mut row = store
        .account(&id)
        .await
        .map_err(|e| ApiError::store("agents", e))?
        .filter(|a| a.site == me.site)
        .ok_or_else(|| not_found(&id))?;
    if let Some(p) = &patch.password {
        row.password_hash = Some(accounts::new_hash(p).await.map_err(answer)?);
    }
    if let Some(name) = patch.display_name {
        row.display_name = Some(name);
    }
    if let Some(role) = patch.role {
        row.role = role.as_str().into();
    }
    if let Some(max) = patch.max_conversations {
        row.max_conversations = Some(max);
    }
    if let Some(teams) = patch.teams {
        check_teams(&teams)?;
        row.teams = teams;
    }
    let access_changed = patch.disabled.is_some_and(|d| d != row.disabled);
    if let Some(disabled) = patch.disabled {
        row.disabled = disabled;
    }
    store
        .put_account(row.clone())
        .await
        .map_err(|e| ApiError::store("agents", e))?;
    if access_changed {
        // Every gateway shard closes the agent's devices, or lets it in again.
        api.notices.access(&row.id, row.disabled);
    }
    Ok(Json(row.into()))
}
