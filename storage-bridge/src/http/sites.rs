//! Sites: one deployment serving several websites or brands. Admins of the deployment's
//! own (`default`) site make, change and delete them; a site's admins read their own. Each
//! site has a visitor secret its back end signs customer ids with (`POST
//! /api/v1/sites/{id}/identify` trades a signed id for a visitor token of that site), its
//! allowed origins, teams, business hours, welcome and offline texts. Every gateway shard
//! hears of each change at once (`sites` on the bridge link).

use super::auth::{caller, need, Caller};
use super::error::{ApiError, Body, ErrorBody};
use super::visitors::{token_for, visitor_of, VisitorToken};
use super::Api;
use crate::accounts::Role;
use crate::store::SiteRow;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use switchboard_protocol::hours::Hours;
use switchboard_protocol::token::{is_team, DEFAULT_SITE};

const MAX_TEXT: usize = 1000;
/// Sites one deployment serves, at most (each gateway link hears of all of them).
const MAX_SITES: usize = 1000;

/// A site, with its visitor secret (admins only ever see it).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Site {
    id: String,
    name: String,
    /// The site's back end signs customer ids with it: hex HMAC-SHA256 of the id.
    visitor_secret: String,
    origins: Vec<String>,
    teams: Vec<String>,
    /// `mon-fri 09:00-17:30; sat 10:00-14:00; utc+01:00`; empty: always open.
    hours: String,
    welcome_text: Option<String>,
    offline_text: Option<String>,
    /// Unix milliseconds.
    created_at: i64,
}

impl From<SiteRow> for Site {
    fn from(s: SiteRow) -> Self {
        Self {
            id: s.id,
            name: s.name,
            visitor_secret: s.visitor_secret,
            origins: s.origins,
            teams: s.teams,
            hours: s.hours,
            welcome_text: s.welcome_text,
            offline_text: s.offline_text,
            created_at: s.created_at,
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct SiteList {
    sites: Vec<Site>,
}

/// A new site.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSite {
    /// 1-32 of a-z 0-9 _ - (not `default`): what visitors' entries name (`?site=`).
    id: String,
    /// 1-128 characters.
    name: String,
    #[serde(default)]
    origins: Vec<String>,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    hours: String,
    #[serde(default)]
    welcome_text: Option<String>,
    #[serde(default)]
    offline_text: Option<String>,
}

/// Changes to a site: what is given changes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SitePatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    origins: Option<Vec<String>>,
    #[serde(default)]
    teams: Option<Vec<String>>,
    #[serde(default)]
    hours: Option<String>,
    #[serde(default)]
    welcome_text: Option<String>,
    #[serde(default)]
    offline_text: Option<String>,
    /// A new visitor secret: ids signed with the old one are refused from now on.
    #[serde(default)]
    rotate_secret: bool,
}

/// A customer id the site's back end signed.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignedVisitor {
    /// The customer's id on the site (1-256 characters).
    external_id: String,
    /// Hex HMAC-SHA256 of `external_id` with the site's visitor secret.
    signature: String,
}

fn check(row: &SiteRow) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::bad_request(m));
    if !(1..=128).contains(&row.name.chars().count()) {
        return bad("name must be 1-128 characters".into());
    }
    if let Some(o) = row.origins.iter().find(|o| {
        !(o.starts_with("http://") || o.starts_with("https://")) || o.contains(',') || o.len() > 256
    }) {
        return bad(format!("origin {o:?} must be like https://example.com"));
    }
    if let Some(t) = row.teams.iter().find(|t| !is_team(t)) {
        return bad(format!("team {t:?} must be 1-32 of a-z 0-9 _ -"));
    }
    if row.hours.len() > 512 {
        return bad("hours: at most 512 characters".into());
    }
    if let Err(e) = Hours::parse(&row.hours) {
        return bad(format!("hours: {e}"));
    }
    let long = |t: &Option<String>| t.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT);
    if long(&row.welcome_text) || long(&row.offline_text) {
        return bad(format!("texts are at most {MAX_TEXT} characters"));
    }
    if row.origins.len() > 32 || row.teams.len() > 64 {
        return bad("at most 32 origins and 64 teams".into());
    }
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such site")
}

fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    crate::random::hex(&b)
}

/// Tells every gateway shard the sites as they are now.
async fn publish(api: &Api) -> Result<(), ApiError> {
    let all = api
        .reads
        .store
        .sites()
        .await
        .map_err(|e| ApiError::store("sites", e))?;
    api.notices.sites_changed(&all);
    Ok(())
}

/// The site `id`, if `me` may manage it: admins of the default site any, a site's admins
/// their own.
async fn managed(api: &Api, me: &Caller, id: &str) -> Result<SiteRow, ApiError> {
    if !(me.manages_sites() || me.site == id) {
        return Err(not_found());
    }
    api.reads
        .store
        .site(id)
        .await
        .map_err(|e| ApiError::store("sites", e))?
        .ok_or_else(not_found)
}

const ADMIN: super::auth::Need = need(Role::Admin, None);

/// Lists sites: all of them for admins of the default site, its own for a site's admins.
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "sites",
    responses(
        (status = 200, description = "The sites", body = SiteList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<SiteList>, ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    let all = api
        .reads
        .store
        .sites()
        .await
        .map_err(|e| ApiError::store("sites", e))?;
    let sites = all
        .into_iter()
        .filter(|s| me.manages_sites() || s.id == me.site)
        .map(Site::from)
        .collect();
    Ok(Json(SiteList { sites }))
}

/// Makes a site (admins of the default site). Give it an admin with `POST /api/v1/agents`
/// and `site`.
#[utoipa::path(
    post,
    path = "/api/v1/sites",
    tag = "sites",
    request_body = NewSite,
    responses(
        (status = 201, description = "Made", body = Site),
        (status = 400, description = "A bad id, name, origin, team, hours or text", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin of the default site", body = ErrorBody),
        (status = 409, description = "The site exists", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    Body(new): Body<NewSite>,
) -> Result<(StatusCode, Json<Site>), ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    if !me.manages_sites() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only admins of the default site make sites",
        ));
    }
    if !is_team(&new.id) || new.id == DEFAULT_SITE {
        return Err(ApiError::bad_request(
            "id must be 1-32 of a-z 0-9 _ -, not `default`",
        ));
    }
    let row = SiteRow {
        id: new.id,
        name: new.name,
        visitor_secret: new_secret(),
        origins: new.origins,
        teams: new.teams,
        hours: new.hours.trim().to_owned(),
        welcome_text: new.welcome_text,
        offline_text: new.offline_text,
        created_at: crate::store::now_ms(),
    };
    check(&row)?;
    let store = &api.reads.store;
    let fail = |e| ApiError::store("sites", e);
    // Every gateway link hears of every site: a bounded list.
    if store.sites().await.map_err(fail)?.len() >= MAX_SITES {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("at most {MAX_SITES} sites"),
        ));
    }
    if store.site(&row.id).await.map_err(fail)?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("site {:?} exists", row.id),
        ));
    }
    store.put_site(row.clone()).await.map_err(fail)?;
    publish(&api).await?;
    tracing::info!(site = %row.id, by = %me.id, "site made");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// One site (admins of the default site, or of that site).
#[utoipa::path(
    get,
    path = "/api/v1/sites/{id}",
    tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    responses(
        (status = 200, description = "The site", body = Site),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such site (or another's)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn get_one(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Site>, ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    Ok(Json(managed(&api, &me, &id).await?.into()))
}

/// Changes a site (admins of the default site, or of that site).
#[utoipa::path(
    patch,
    path = "/api/v1/sites/{id}",
    tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    request_body = SitePatch,
    responses(
        (status = 200, description = "The site as changed", body = Site),
        (status = 400, description = "A bad name, origin, team, hours or text", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such site (or another's)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn update(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(patch): Body<SitePatch>,
) -> Result<Json<Site>, ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    let mut row = managed(&api, &me, &id).await?;
    if let Some(v) = patch.name {
        row.name = v;
    }
    if let Some(v) = patch.origins {
        row.origins = v;
    }
    if let Some(v) = patch.teams {
        row.teams = v;
    }
    if let Some(v) = patch.hours {
        row.hours = v.trim().to_owned();
    }
    if let Some(v) = patch.welcome_text {
        row.welcome_text = (!v.is_empty()).then_some(v);
    }
    if let Some(v) = patch.offline_text {
        row.offline_text = (!v.is_empty()).then_some(v);
    }
    if patch.rotate_secret {
        row.visitor_secret = new_secret();
    }
    check(&row)?;
    api.reads
        .store
        .put_site(row.clone())
        .await
        .map_err(|e| ApiError::store("sites", e))?;
    publish(&api).await?;
    Ok(Json(row.into()))
}

/// Deletes a site (admins of the default site): its visitors are refused from then on. Its
/// conversations and accounts are kept.
#[utoipa::path(
    delete,
    path = "/api/v1/sites/{id}",
    tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn delete(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let me = caller(&api, &headers, ADMIN).await?;
    if !me.manages_sites() {
        return Err(not_found());
    }
    let gone = api
        .reads
        .store
        .delete_site(&id)
        .await
        .map_err(|e| ApiError::store("sites", e))?;
    if !gone {
        return Err(not_found());
    }
    publish(&api).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Trades a customer id the site's back end signed (with the site's visitor secret) for a
/// visitor token of that site: the customer keeps one visitor id on every device. No other
/// credential: the signature is the proof.
#[utoipa::path(
    post,
    path = "/api/v1/sites/{id}/identify",
    tag = "sites",
    params(("id" = String, Path, description = "The site's id")),
    request_body = SignedVisitor,
    responses(
        (status = 200, description = "The customer's visitor identity", body = VisitorToken),
        (status = 400, description = "Not a signed id", body = ErrorBody),
        (status = 401, description = "A wrong signature, or no such site", body = ErrorBody),
        (status = 503, description = "No token secret, or the store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn identify(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(signed): Body<SignedVisitor>,
) -> Result<Json<VisitorToken>, ApiError> {
    if !(1..=256).contains(&signed.external_id.chars().count()) {
        return Err(ApiError::bad_request(
            "external_id must be 1-256 characters",
        ));
    }
    let signer = api.signer.as_ref().ok_or_else(ApiError::unavailable)?;
    let site = if id == DEFAULT_SITE {
        None
    } else {
        api.reads
            .store
            .site(&id)
            .await
            .map_err(|e| ApiError::store("sites", e))?
    };
    let expected = site
        .as_ref()
        .map(|s| crate::webhooks::sign(&s.visitor_secret, signed.external_id.as_bytes()));
    let valid = expected.is_some_and(|e| {
        constant_time_eq(
            e.as_bytes(),
            signed.signature.to_ascii_lowercase().as_bytes(),
        )
    });
    if !valid {
        return Err(ApiError::unauthorized());
    }
    let visitor = visitor_of(signer, Some(&id), &signed.external_id);
    Ok(Json(token_for(signer, visitor, 0, Some(&id))))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
