//! Reports over a period, for the caller's site: conversations opened per day; per agent and
//! per team, conversations handled and closed, the average first-response time (opening to
//! the agent's first message), the average resolution time (opening to closing) and the
//! visitors' satisfaction (CSAT, the average rating, 1-5). A team's figures are its agents'
//! together (an agent in two teams counts in both).

use super::auth::{caller, need};
use super::error::{ApiError, ErrorBody, Params};
use super::Api;
use crate::accounts::Role;
use crate::api_keys::Scope;
use crate::store::ReportRow;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use std::collections::BTreeMap;

const DAY_MS: i64 = 86_400_000;
/// The longest period one report covers.
const MAX_DAYS: i64 = 366;

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportQuery {
    /// Conversations opened at or after (Unix milliseconds; default: 30 days ago).
    from: Option<i64>,
    /// Conversations opened before (Unix milliseconds; default: now). At most 366 days
    /// after `from`.
    to: Option<i64>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Day {
    /// `YYYY-MM-DD`, UTC.
    day: String,
    conversations: i64,
}

/// One agent's or team's figures.
#[derive(serde::Serialize, utoipa::ToSchema, Default, Clone)]
pub(super) struct Figures {
    conversations: i64,
    closed: i64,
    /// Average, in seconds; none without any reply.
    first_response_s: Option<f64>,
    /// Average, in seconds; none without any closed conversation.
    resolution_s: Option<f64>,
    /// The average rating (1-5); none without ratings.
    csat: Option<f64>,
    ratings: i64,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Report {
    site: String,
    /// Unix milliseconds.
    from: i64,
    to: i64,
    per_day: Vec<Day>,
    per_agent: BTreeMap<String, Figures>,
    per_team: BTreeMap<String, Figures>,
}

/// `YYYY-MM-DD` of a day counted from the Unix epoch (civil from days, Howard Hinnant's).
fn date_of(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn figures(r: &ReportRow) -> Figures {
    Figures {
        conversations: r.conversations,
        closed: r.closed,
        first_response_s: r.first_response_ms.map(|ms| ms / 1000.0),
        resolution_s: r.resolution_ms.map(|ms| ms / 1000.0),
        csat: r.csat,
        ratings: r.ratings,
    }
}

/// Several agents' figures as one: sums, and averages weighted by what each averaged over.
fn combine(rows: &[&ReportRow]) -> Figures {
    let weighted = |value: fn(&ReportRow) -> Option<f64>, weight: fn(&ReportRow) -> i64| {
        let (sum, n) = rows.iter().fold((0.0, 0i64), |(s, n), r| match value(r) {
            Some(v) => (s + v * weight(r) as f64, n + weight(r)),
            None => (s, n),
        });
        (n > 0).then(|| sum / n as f64)
    };
    Figures {
        conversations: rows.iter().map(|r| r.conversations).sum(),
        closed: rows.iter().map(|r| r.closed).sum(),
        // First responses average over conversations, resolutions over closed ones.
        first_response_s: weighted(|r| r.first_response_ms, |r| r.conversations)
            .map(|ms| ms / 1000.0),
        resolution_s: weighted(|r| r.resolution_ms, |r| r.closed).map(|ms| ms / 1000.0),
        csat: weighted(|r| r.csat, |r| r.ratings),
        ratings: rows.iter().map(|r| r.ratings).sum(),
    }
}

/// The site's figures over a period (supervisors, and keys with `history:read`).
#[utoipa::path(
    get,
    path = "/api/v1/reports",
    tag = "reports",
    params(ReportQuery),
    responses(
        (status = 200, description = "The figures", body = Report),
        (status = 400, description = "A bad period", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or a key without history:read", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("agent_token" = []))
)]
pub(super) async fn report(
    State(api): State<Api>,
    Params(q): Params<ReportQuery>,
    headers: HeaderMap,
) -> Result<Json<Report>, ApiError> {
    let me = caller(
        &api,
        &headers,
        need(Role::Supervisor, Some(Scope::HistoryRead)),
    )
    .await?;
    let to = q.to.unwrap_or_else(crate::store::now_ms);
    let from = q.from.unwrap_or(to.saturating_sub(30 * DAY_MS));
    if from >= to || to.saturating_sub(from) > MAX_DAYS * DAY_MS {
        return Err(ApiError::bad_request(
            "from must be before to, and at most 366 days before it",
        ));
    }
    let store = &api.reads.store;
    let fail = |e| ApiError::store("reports", e);
    let r = store.report(&me.site, from, to).await.map_err(fail)?;
    let teams_of: BTreeMap<String, Vec<String>> = store
        .team_members(&me.site)
        .await
        .map_err(fail)?
        .into_iter()
        .collect();
    let mut by_team: BTreeMap<String, Vec<&ReportRow>> = BTreeMap::new();
    for row in &r.per_agent {
        for team in teams_of.get(&row.agent).into_iter().flatten() {
            by_team.entry(team.clone()).or_default().push(row);
        }
    }
    Ok(Json(Report {
        site: me.site,
        from,
        to,
        per_day: r
            .per_day
            .iter()
            .map(|(day, n)| Day {
                day: date_of(*day),
                conversations: *n,
            })
            .collect(),
        per_agent: r
            .per_agent
            .iter()
            .map(|row| (row.agent.clone(), figures(row)))
            .collect(),
        per_team: by_team
            .into_iter()
            .map(|(team, rows)| (team, combine(&rows)))
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_civil_dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(20_788), "2026-12-01");
        assert_eq!(date_of(-1), "1969-12-31");
        assert_eq!(date_of(11_016), "2000-02-29");
    }

    #[test]
    fn teams_average_their_agents_by_what_each_averaged_over() {
        let row = |conversations, closed, first, resolve, csat, ratings| ReportRow {
            agent: "a".into(),
            conversations,
            closed,
            first_response_ms: first,
            resolution_ms: resolve,
            csat,
            ratings,
        };
        let a = row(3, 1, Some(10_000.0), Some(60_000.0), Some(5.0), 1);
        let b = row(1, 1, Some(50_000.0), None, Some(1.0), 3);
        let f = combine(&[&a, &b]);
        assert_eq!((f.conversations, f.closed, f.ratings), (4, 2, 4));
        assert_eq!(f.first_response_s, Some(20.0));
        assert_eq!(f.resolution_s, Some(60.0));
        assert_eq!(f.csat, Some(2.0));
    }
}
