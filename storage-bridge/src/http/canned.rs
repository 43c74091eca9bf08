//! Canned replies: site-wide ones (made by supervisors) and each agent's own, found by
//! shortcut, with variables (`{visitor.name}`, `{visitor.email}`, `{visitor.plan}`, any of
//! the visitor's custom attributes as `{visitor.<key>}`, `{agent.name}`) filled in for one
//! conversation's visitor when the agent uses one.

use super::auth::{caller, need, Caller};
use super::error::{ApiError, Body, ErrorBody};
use super::Api;
use crate::accounts::Role;
use crate::store::CannedRow;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use std::collections::BTreeMap;
use switchboard_protocol::VisitorId;

const AGENT: super::auth::Need = need(Role::Agent, None);

/// A canned reply.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Canned {
    id: String,
    /// Its agent's, or none: its team's or site-wide.
    owner: Option<String>,
    /// Its team's (their agents'), when not site-wide nor an agent's own.
    team: Option<String>,
    shortcut: String,
    body: String,
}

impl From<CannedRow> for Canned {
    fn from(r: CannedRow) -> Self {
        Self {
            id: r.id,
            owner: r.owner,
            team: r.team,
            shortcut: r.shortcut,
            body: r.body,
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct CannedList {
    replies: Vec<Canned>,
}

/// A reply to keep.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCanned {
    /// What the agent types to find it, e.g. `/refund` (1-64 characters).
    shortcut: String,
    /// 1-4000 characters, with variables in braces.
    body: String,
    /// Site-wide (supervisors only) instead of the caller's own.
    #[serde(default)]
    site_wide: bool,
    /// For a team's agents (supervisors only; 1-32 of a-z 0-9 _ -).
    #[serde(default)]
    team: Option<String>,
}

/// Who the reply is for.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RenderFor {
    /// The visitor, `v` + 16 hex digits: its profile fills `{visitor.*}`.
    #[serde(default)]
    visitor: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Rendered {
    body: String,
}

/// Fills `{name}` variables from `vars`; a `{visitor.*}` the profile lacks becomes empty,
/// anything else in braces stays as written.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if !after[..close].contains('{') => {
                let key = &after[..close];
                match vars.get(key) {
                    Some(v) => out.push_str(v),
                    None if key.starts_with("visitor.") => {}
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such canned reply")
}

/// The replies the caller may use: site-wide and its own, by shortcut.
#[utoipa::path(
    get,
    path = "/api/v1/canned-replies",
    tag = "canned-replies",
    responses(
        (status = 200, description = "The replies (at most 1000)", body = CannedList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled, or an API key", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<CannedList>, ApiError> {
    let me = caller(&api, &headers, AGENT).await?;
    let store = &api.reads.store;
    let fail = |e| ApiError::store("canned replies", e);
    let teams = teams_of(&api, &me).await?;
    let rows = store
        .canned_for(&me.site, &me.id, &teams)
        .await
        .map_err(fail)?;
    Ok(Json(CannedList {
        replies: rows.into_iter().map(Canned::from).collect(),
    }))
}

/// Keeps a reply: the caller's own, or site-wide (supervisors).
#[utoipa::path(
    post,
    path = "/api/v1/canned-replies",
    tag = "canned-replies",
    request_body = NewCanned,
    responses(
        (status = 201, description = "Kept", body = Canned),
        (status = 400, description = "Not a reply, or too long", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Site-wide without the supervisor role", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    Body(new): Body<NewCanned>,
) -> Result<(StatusCode, Json<Canned>), ApiError> {
    let me = caller(&api, &headers, AGENT).await?;
    let len = |s: &str| s.chars().count();
    if !(1..=64).contains(&len(&new.shortcut)) || !(1..=4000).contains(&len(&new.body)) {
        return Err(ApiError::bad_request(
            "shortcut 1-64 characters, body 1-4000",
        ));
    }
    if (new.site_wide || new.team.is_some()) && me.role < Role::Supervisor {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "site-wide and team replies need the supervisor role",
        ));
    }
    if let Some(t) = &new.team {
        if new.site_wide || !switchboard_protocol::token::is_team(t) {
            return Err(ApiError::bad_request(
                "team: 1-32 of a-z 0-9 _ -, and not with site_wide",
            ));
        }
    }
    let shared = new.site_wide || new.team.is_some();
    let row = CannedRow {
        id: crate::random::id('r'),
        owner: (!shared).then(|| me.id.clone()),
        team: new.team,
        site: me.site.clone(),
        shortcut: new.shortcut,
        body: new.body,
        created_at: crate::store::now_ms(),
    };
    api.reads
        .store
        .put_canned(row.clone())
        .await
        .map_err(|e| ApiError::store("canned replies", e))?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// The caller's teams (an API key's: none).
async fn teams_of(api: &Api, me: &Caller) -> Result<Vec<String>, ApiError> {
    let account = api
        .reads
        .store
        .account(&me.id)
        .await
        .map_err(|e| ApiError::store("canned replies", e))?;
    Ok(account.map(|a| a.teams).unwrap_or_default())
}

/// Whether `me` may change `row`: its owner, or a supervisor for a site-wide one.
fn may_change(me: &Caller, row: &CannedRow) -> bool {
    if row.site != me.site {
        return false;
    }
    match &row.owner {
        Some(owner) => *owner == me.id,
        None => me.role >= Role::Supervisor,
    }
}

/// Changes to a reply: what is given changes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CannedPatch {
    #[serde(default)]
    shortcut: Option<String>,
    #[serde(default)]
    body: Option<String>,
}

/// Changes a reply's shortcut or text (its owner; site-wide and team ones: supervisors).
#[utoipa::path(
    patch,
    path = "/api/v1/canned-replies/{id}",
    tag = "canned-replies",
    params(("id" = String, Path, description = "The reply's id")),
    request_body = CannedPatch,
    responses(
        (status = 200, description = "The reply as changed", body = Canned),
        (status = 400, description = "Too long or empty", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not the caller's to change", body = ErrorBody),
        (status = 404, description = "No such reply", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn update(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(patch): Body<CannedPatch>,
) -> Result<Json<Canned>, ApiError> {
    let me = caller(&api, &headers, AGENT).await?;
    let store = &api.reads.store;
    let fail = |e| ApiError::store("canned replies", e);
    let mut row = store
        .canned(&id)
        .await
        .map_err(fail)?
        .filter(|r| r.site == me.site)
        .ok_or_else(not_found)?;
    if !may_change(&me, &row) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "not yours to change",
        ));
    }
    if let Some(v) = patch.shortcut {
        row.shortcut = v;
    }
    if let Some(v) = patch.body {
        row.body = v;
    }
    let len = |s: &str| s.chars().count();
    if !(1..=64).contains(&len(&row.shortcut)) || !(1..=4000).contains(&len(&row.body)) {
        return Err(ApiError::bad_request(
            "shortcut 1-64 characters, body 1-4000",
        ));
    }
    store.put_canned(row.clone()).await.map_err(fail)?;
    Ok(Json(row.into()))
}

/// Deletes a reply (its owner; site-wide ones: supervisors).
#[utoipa::path(
    delete,
    path = "/api/v1/canned-replies/{id}",
    tag = "canned-replies",
    params(("id" = String, Path, description = "The reply's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not the caller's to delete", body = ErrorBody),
        (status = 404, description = "No such reply", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let me = caller(&api, &headers, AGENT).await?;
    let row = api
        .reads
        .store
        .canned(&id)
        .await
        .map_err(|e| ApiError::store("canned replies", e))?
        .ok_or_else(not_found)?;
    if !may_change(&me, &row) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "not yours to delete",
        ));
    }
    api.reads
        .store
        .delete_canned(&id)
        .await
        .map_err(|e| ApiError::store("canned replies", e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A reply with its variables filled in for a visitor, ready to send.
#[utoipa::path(
    post,
    path = "/api/v1/canned-replies/{id}/render",
    tag = "canned-replies",
    params(("id" = String, Path, description = "The reply's id")),
    request_body = RenderFor,
    responses(
        (status = 200, description = "The text to send", body = Rendered),
        (status = 400, description = "Not a visitor id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Another agent's reply", body = ErrorBody),
        (status = 404, description = "No such reply", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn use_one(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(target): Body<RenderFor>,
) -> Result<Json<Rendered>, ApiError> {
    let me = caller(&api, &headers, AGENT).await?;
    let store = &api.reads.store;
    let row = store
        .canned(&id)
        .await
        .map_err(|e| ApiError::store("canned replies", e))?
        .ok_or_else(not_found)?;
    let foreign_team = match &row.team {
        Some(t) => !teams_of(&api, &me).await?.contains(t) && me.role < Role::Supervisor,
        None => false,
    };
    if row.site != me.site || row.owner.as_ref().is_some_and(|o| *o != me.id) || foreign_team {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "another agent's reply",
        ));
    }
    let mut vars = BTreeMap::new();
    let account = store
        .account(&me.id)
        .await
        .map_err(|e| ApiError::store("canned replies", e))?;
    let agent_name = account
        .and_then(|a| a.display_name)
        .unwrap_or_else(|| me.id.clone());
    vars.insert("agent.name".to_owned(), agent_name);
    if let Some(v) = &target.visitor {
        let visitor = VisitorId::parse(v)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", "not a visitor id"))?;
        if let Some(json) = store
            .profile(&me.site, visitor)
            .await
            .map_err(|e| ApiError::store("canned replies", e))?
        {
            let profile: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            for key in ["name", "email", "plan"] {
                if let Some(s) = profile[key].as_str() {
                    vars.insert(format!("visitor.{key}"), s.to_owned());
                }
            }
            if let Some(attrs) = profile["attributes"].as_object() {
                for (k, v) in attrs {
                    if let Some(s) = v.as_str() {
                        vars.entry(format!("visitor.{k}"))
                            .or_insert_with(|| s.to_owned());
                    }
                }
            }
        }
    }
    Ok(Json(Rendered {
        body: render(&row.body, &vars),
    }))
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn variables_fill_missing_visitor_fields_empty_and_leave_other_braces() {
        let vars = [
            ("visitor.name".to_owned(), "Li Wei".to_owned()),
            ("agent.name".to_owned(), "Ann".to_owned()),
        ]
        .into();
        assert_eq!(
            render(
                "Hi {visitor.name}, I'm {agent.name}. Plan: {visitor.plan}.",
                &vars
            ),
            "Hi Li Wei, I'm Ann. Plan: ."
        );
        assert_eq!(
            render("{json} {a{visitor.name}} {", &vars),
            "{json} {aLi Wei} {"
        );
        assert_eq!(render("no variables", &vars), "no variables");
    }
}
