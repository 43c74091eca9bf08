//! Conversations over the API: listed by status (waiting for an agent, open, closed) and
//! agent; one with its tags and internal notes; notes added and tags set. Supervisors and
//! keys with `history:read` see every one; an agent sees its own and the waiting ones, and
//! writes notes and tags on those. The visitor never sees notes or tags.

use super::auth::{caller, need};
use super::error::{ApiError, Body, ErrorBody, Params};
use super::Api;
use crate::accounts::Role;
use crate::api_keys::Scope;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use switchboard_protocol::ConvId;

const PAGE_MAX: u32 = 500;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ConvQuery {
    /// `waiting` (no agent yet: left while nobody was online, or queued), `open`, `closed`,
    /// or `all` (the default).
    status: Option<String>,
    /// Only this agent's (agents always see only their own).
    agent: Option<String>,
    /// Only this visitor's, `v` + 16 hex digits.
    visitor: Option<String>,
    /// Only those with this tag.
    tag: Option<String>,
    /// Only those with a message containing this text (case-insensitive, 1-200 characters).
    q: Option<String>,
    /// Only those opened at or after this time (Unix milliseconds).
    from: Option<i64>,
    /// Only those opened before this time (Unix milliseconds).
    to: Option<i64>,
    /// Conversations after this id, `c` + 16 hex digits (paging).
    after: Option<String>,
    /// How many, at most (1-500; default 100).
    limit: Option<u32>,
}

/// The visitor's rating, asked at close.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Rating {
    /// 1 (bad) to 5 (excellent).
    score: i64,
    comment: Option<String>,
}

/// A conversation.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Conversation {
    id: String,
    site: String,
    visitor: String,
    agent: Option<String>,
    /// Unix milliseconds.
    opened_at: i64,
    assigned_at: Option<i64>,
    closed_at: Option<i64>,
    closed_by: Option<String>,
    /// What the visitor's widget said at connect: page, referrer, user agent, language,
    /// attributes.
    #[schema(value_type = Option<Object>)]
    context: Option<serde_json::Value>,
    rating: Option<Rating>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ConversationPage {
    conversations: Vec<Conversation>,
    /// The `after` of the next page, when there may be one.
    next: Option<String>,
}

/// The search a query asks for, as the caller may make it: an agent sees its own and the
/// waiting ones; supervisors and keys whatever they ask; everyone only its site's.
pub(super) fn filter_of(
    me: &super::auth::Caller,
    q: &ConvQuery,
) -> Result<crate::store::ConvFilter, ApiError> {
    let status = q.status.as_deref().unwrap_or("all");
    if !["all", "waiting", "open", "closed"].contains(&status) {
        return Err(ApiError::bad_request(
            "status: all, waiting, open or closed",
        ));
    }
    let visitor = match &q.visitor {
        None => None,
        Some(v) => Some(
            switchboard_protocol::VisitorId::parse(v)
                .ok_or_else(|| ApiError::bad_request("visitor: a visitor id"))?,
        ),
    };
    let text = q.q.clone().unwrap_or_default();
    if text.chars().count() > 200 {
        return Err(ApiError::bad_request("q: at most 200 characters"));
    }
    let agent = if me.role >= Role::Supervisor || me.is_key() || status == "waiting" {
        q.agent.clone().unwrap_or_default()
    } else {
        me.id.clone()
    };
    Ok(crate::store::ConvFilter {
        site: me.site.clone(),
        status: status.to_owned(),
        agent,
        visitor,
        tag: q.tag.clone().unwrap_or_default(),
        text,
        from_ms: q.from,
        to_ms: q.to,
    })
}

/// Lists and searches conversations: by status, agent, visitor, tag, text and date.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    params(ConvQuery),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationPage),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled, or a key without history:read", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn list(
    State(api): State<Api>,
    Params(q): Params<ConvQuery>,
    headers: HeaderMap,
) -> Result<Json<ConversationPage>, ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, Some(Scope::HistoryRead))).await?;
    let filter = filter_of(&me, &q)?;
    let after = match &q.after {
        None => None,
        Some(a) => Some(
            ConvId::parse(a).ok_or_else(|| ApiError::bad_request("after: a conversation id"))?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let rows = api
        .reads
        .store
        .conversations(&filter, after, limit)
        .await
        .map_err(|e| ApiError::store("conversations", e))?;
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(Json(ConversationPage {
        conversations: rows.into_iter().map(conversation_of).collect(),
        next,
    }))
}

/// A conversation with what agents noted on it, and its transcript.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ConversationDetail {
    #[serde(flatten)]
    conversation: Conversation,
    tags: Vec<String>,
    notes: Vec<Note>,
    /// Its newest messages (up to 500), oldest first; page back with `/messages`.
    messages: Vec<super::history::HistoryItem>,
}

/// Most messages an export holds.
const EXPORT_MAX: u32 = 10_000;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ExportQuery {
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

/// A conversation's whole transcript (up to 10,000 messages), as a file.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Export {
    #[serde(flatten)]
    conversation: Conversation,
    tags: Vec<String>,
    messages: Vec<super::history::HistoryItem>,
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A transcript as CSV: a header line, then one line per message.
fn transcript_csv(conv: &str, messages: &[switchboard_protocol::bridge::StoredMessage]) -> String {
    let mut out = String::from("conversation,seq,from,ts,body\r\n");
    for m in messages {
        out.push_str(&format!(
            "{conv},{},{},{},{}\r\n",
            m.seq,
            csv_field(&m.sender),
            m.ts,
            csv_field(&m.body)
        ));
    }
    out
}

/// Exports a conversation's transcript as JSON or CSV.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/export",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation"), ExportQuery),
    responses(
        (status = 200, description = "The transcript, as an attachment (`text/csv` with format=csv)", body = Export),
        (status = 400, description = "Not a conversation id, or a bad format", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled, or a key without history:read", body = ErrorBody),
        (status = 404, description = "No such conversation (or another agent's)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn export(
    State(api): State<Api>,
    Path(id): Path<String>,
    Params(q): Params<ExportQuery>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let me = caller(&api, &headers, need(Role::Agent, Some(Scope::HistoryRead))).await?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::bad_request("format: json or csv")),
    };
    let row = visible(&api, &me, &id).await?;
    let fail = |e| ApiError::store("conversations", e);
    let messages = api
        .reads
        .store
        .history(row.id, 0, u64::MAX, EXPORT_MAX)
        .await
        .map_err(fail)?;
    let name = row.id.to_string();
    let (content_type, body) = if csv {
        ("text/csv; charset=utf-8", transcript_csv(&name, &messages))
    } else {
        let tags = api.reads.store.tags(row.id).await.map_err(fail)?;
        let export = Export {
            conversation: conversation_of(row),
            tags,
            messages: messages.into_iter().map(Into::into).collect(),
        };
        (
            "application/json",
            serde_json::to_string(&export).expect("exports serialise"),
        )
    };
    let disposition = format!(
        "attachment; filename=\"{name}.{}\"",
        if csv { "csv" } else { "json" }
    );
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// An internal note: agents only.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Note {
    id: String,
    author: String,
    body: String,
    /// Unix milliseconds.
    created_at: i64,
}

/// A note to add.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewNote {
    /// 1-4000 characters.
    body: String,
}

/// A conversation's tags, all of them.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Tags {
    /// At most 32, each 1-64 characters.
    tags: Vec<String>,
}

fn conversation_of(c: crate::store::ConvRow) -> Conversation {
    Conversation {
        id: c.id.to_string(),
        site: c.site,
        visitor: c.visitor.to_string(),
        agent: c.agent,
        opened_at: c.opened_at,
        assigned_at: c.assigned_at,
        closed_at: c.closed_at,
        closed_by: c.closed_by,
        context: c.context.and_then(|j| serde_json::from_str(&j).ok()),
        rating: c.rating.map(|score| Rating {
            score,
            comment: c.rating_comment,
        }),
    }
}

/// The conversation `id`, if `me` may see it: of its site, supervisors and keys any, an
/// agent its own or a waiting one.
pub(super) async fn visible(
    api: &Api,
    me: &super::auth::Caller,
    id: &str,
) -> Result<crate::store::ConvRow, ApiError> {
    let conv = ConvId::parse(id)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", "not a conversation id"))?;
    let row = api
        .reads
        .store
        .conversation(conv)
        .await
        .map_err(|e| ApiError::store("conversations", e))?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such conversation");
    let row = row.ok_or_else(not_found)?;
    let allowed = row.site == me.site
        && (me.role >= Role::Supervisor
            || me.is_key()
            || row.agent.is_none()
            || row.agent.as_deref() == Some(me.id.as_str()));
    // Another site's or another agent's conversation is not shown to exist.
    allowed.then_some(row).ok_or_else(not_found)
}

/// One conversation, with its tags and internal notes.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation, `c` + 16 hex digits")),
    responses(
        (status = 200, description = "The conversation", body = ConversationDetail),
        (status = 400, description = "Not a conversation id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled, or a key without history:read", body = ErrorBody),
        (status = 404, description = "No such conversation (or another agent's)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn get_one(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ConversationDetail>, ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, Some(Scope::HistoryRead))).await?;
    let row = visible(&api, &me, &id).await?;
    let store = &api.reads.store;
    let fail = |e| ApiError::store("conversations", e);
    let tags = store.tags(row.id).await.map_err(fail)?;
    let notes = store.notes(row.id).await.map_err(fail)?;
    let messages = store
        .history(row.id, 0, u64::MAX, super::MAX_LIMIT)
        .await
        .map_err(fail)?;
    Ok(Json(ConversationDetail {
        messages: messages.into_iter().map(Into::into).collect(),
        conversation: conversation_of(row),
        tags,
        notes: notes
            .into_iter()
            .map(|n| Note {
                id: n.id,
                author: n.author,
                body: n.body,
                created_at: n.created_at,
            })
            .collect(),
    }))
}

/// Adds an internal note (agents of the conversation, supervisors).
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/notes",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation")),
    request_body = NewNote,
    responses(
        (status = 201, description = "Added", body = Note),
        (status = 400, description = "Not a note, or not a conversation id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled, or an API key", body = ErrorBody),
        (status = 404, description = "No such conversation (or another agent's)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn add_note(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(new): Body<NewNote>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, None)).await?;
    if !(1..=4000).contains(&new.body.chars().count()) {
        return Err(ApiError::bad_request("body must be 1-4000 characters"));
    }
    let row = visible(&api, &me, &id).await?;
    let note = crate::store::NoteRow {
        id: crate::random::id('n'),
        conv: row.id,
        author: me.id,
        body: new.body,
        created_at: crate::store::now_ms(),
    };
    api.reads
        .store
        .put_note(note.clone())
        .await
        .map_err(|e| ApiError::store("notes", e))?;
    Ok((
        StatusCode::CREATED,
        Json(Note {
            id: note.id,
            author: note.author,
            body: note.body,
            created_at: note.created_at,
        }),
    ))
}

/// Sets a conversation's tags, replacing them (agents of the conversation, supervisors).
#[utoipa::path(
    put,
    path = "/api/v1/conversations/{id}/tags",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation")),
    request_body = Tags,
    responses(
        (status = 200, description = "The tags now", body = Tags),
        (status = 400, description = "Bad tags, or not a conversation id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Disabled, or an API key", body = ErrorBody),
        (status = 404, description = "No such conversation (or another agent's)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn set_tags(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(new): Body<Tags>,
) -> Result<Json<Tags>, ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, None)).await?;
    let mut tags = new.tags;
    tags.sort();
    tags.dedup();
    if tags.len() > 32 || tags.iter().any(|t| !(1..=64).contains(&t.chars().count())) {
        return Err(ApiError::bad_request(
            "at most 32 tags, each 1-64 characters",
        ));
    }
    let row = visible(&api, &me, &id).await?;
    api.reads
        .store
        .set_tags(row.id, tags.clone())
        .await
        .map_err(|e| ApiError::store("tags", e))?;
    Ok(Json(Tags { tags }))
}

/// A transfer asked over the API: to agent `to`, to `team`'s queue, or to whoever has room.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferTo {
    #[serde(default)]
    to: Option<String>,
    /// 1-32 of a-z 0-9 _ -.
    #[serde(default)]
    team: Option<String>,
    /// For the next agent only (at most 1000 bytes).
    #[serde(default)]
    note: Option<String>,
}

/// A conversation `me` may act on: visible to it, and its own unless it supervises.
async fn actionable(
    api: &Api,
    me: &super::auth::Caller,
    id: &str,
) -> Result<crate::store::ConvRow, ApiError> {
    let row = visible(api, me, id).await?;
    if me.role < Role::Supervisor && row.agent.as_deref() != Some(me.id.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only its agent or a supervisor may do this",
        ));
    }
    Ok(row)
}

/// What a gateway's answer means for the caller.
fn command_answer(e: crate::server::CommandError) -> ApiError {
    use crate::server::CommandError;
    match e {
        CommandError::Refused(why) => ApiError::new(StatusCode::CONFLICT, "refused", why),
        CommandError::NoGateway | CommandError::Timeout => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    }
}

/// Closes a conversation (its agent, or a supervisor), as the close button does: the
/// visitor is told, and may rate it.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/close",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation")),
    responses(
        (status = 204, description = "Closed"),
        (status = 400, description = "Not a conversation id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Another agent's, disabled, or an API key", body = ErrorBody),
        (status = 404, description = "No such conversation (or another site's)", body = ErrorBody),
        (status = 409, description = "Already closed", body = ErrorBody),
        (status = 503, description = "No gateway answered", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn close(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, None)).await?;
    let row = actionable(&api, &me, &id).await?;
    if row.closed_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "refused",
            "the conversation is closed",
        ));
    }
    api.notices
        .command(
            row.id,
            &me.id,
            me.role < Role::Supervisor,
            switchboard_protocol::bridge::ApiAction::Close,
        )
        .await
        .map_err(command_answer)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Transfers a conversation (its agent, or a supervisor for any): to an agent, to a team's
/// queue, or to whoever else has room, with a note for the next agent. The visitor is told;
/// the transcript goes along.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/transfer",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation")),
    request_body = TransferTo,
    responses(
        (status = 204, description = "Transferred (or queued for the team)"),
        (status = 400, description = "A bad body, team or note", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Another agent's, disabled, or an API key", body = ErrorBody),
        (status = 404, description = "No such conversation (or another site's)", body = ErrorBody),
        (status = 409, description = "Refused: closed, not assigned yet, or nobody can take it", body = ErrorBody),
        (status = 503, description = "No gateway answered", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn transfer(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(t): Body<TransferTo>,
) -> Result<StatusCode, ApiError> {
    let me = caller(&api, &headers, need(Role::Agent, None)).await?;
    if t.to.is_some() && t.team.is_some() {
        return Err(ApiError::bad_request("`to` or `team`, not both"));
    }
    if t.team
        .as_deref()
        .is_some_and(|team| !switchboard_protocol::token::is_team(team))
    {
        return Err(ApiError::bad_request("team must be 1-32 of a-z 0-9 _ -"));
    }
    if t.note.as_ref().is_some_and(|n| n.len() > 1000) {
        return Err(ApiError::bad_request("note: at most 1000 bytes"));
    }
    let row = actionable(&api, &me, &id).await?;
    if let Some(to) = &t.to {
        // Only to an agent of the same site.
        let same_site = api
            .reads
            .store
            .account(to)
            .await
            .map_err(|e| ApiError::store("agents", e))?
            .is_some_and(|a| a.site == me.site);
        if !same_site {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "refused",
                format!("no agent {to:?} on this site"),
            ));
        }
    }
    let action = switchboard_protocol::bridge::ApiAction::Transfer {
        to: t.to,
        team: t.team,
        note: t.note,
    };
    api.notices
        .command(row.id, &me.id, me.role < Role::Supervisor, action)
        .await
        .map_err(command_answer)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A system message to post.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SystemMessage {
    /// The caller's id for it (1-64 bytes): the same again is not posted twice.
    cid: String,
    /// 1-4000 characters.
    body: String,
}

/// Posts a system message (from `system:switchboard`) into an open conversation: its
/// visitor and agents see it, it is stored and in the history (supervisors, and keys with
/// `messages:send`: the site's systems, e.g. "your order has shipped").
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages",
    tag = "messages",
    params(("id" = String, Path, description = "The conversation")),
    request_body = SystemMessage,
    responses(
        (status = 202, description = "Sequenced and delivered; stored shortly after"),
        (status = 400, description = "A bad cid or body", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or a key without messages:send", body = ErrorBody),
        (status = 404, description = "No such conversation (or another site's)", body = ErrorBody),
        (status = 409, description = "Closed, or storage is behind (resend)", body = ErrorBody),
        (status = 503, description = "No gateway answered", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn post_system(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(m): Body<SystemMessage>,
) -> Result<StatusCode, ApiError> {
    let me = caller(
        &api,
        &headers,
        need(Role::Supervisor, Some(Scope::MessagesSend)),
    )
    .await?;
    if !(1..=64).contains(&m.cid.len()) || !(1..=4000).contains(&m.body.chars().count()) {
        return Err(ApiError::bad_request(
            "cid: 1-64 bytes; body: 1-4000 characters",
        ));
    }
    let row = visible(&api, &me, &id).await?;
    let post = switchboard_protocol::bridge::ApiAction::Post {
        cid: m.cid,
        body: m.body,
    };
    // Nobody's conversation in particular: the gateway posts it as the system.
    api.notices
        .command(row.id, "api", false, post)
        .await
        .map_err(command_answer)?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_must_be_quoted() {
        let m = |seq, body: &str| switchboard_protocol::bridge::StoredMessage {
            conv: ConvId(1),
            seq,
            sender: "ann".into(),
            cid: "c".into(),
            body: body.into(),
            ts: 7,
        };
        assert_eq!(
            transcript_csv("c1", &[m(1, "plain"), m(2, "a, \"b\"\nc")]),
            "conversation,seq,from,ts,body\r\nc1,1,ann,7,plain\r\nc1,2,ann,7,\"a, \"\"b\"\"\nc\"\r\n"
        );
    }
}
