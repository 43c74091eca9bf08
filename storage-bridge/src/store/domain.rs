//! What the REST API reads and writes of the customer-service domain (sites, conversations
//! and their search, API keys, canned replies, accounts listed, ratings, reports), each
//! query written once for both databases (see `sql`). Everything here is scoped by site:
//! a caller names its site and sees nothing of another's.

use super::sql::{Row, Val};
use super::{
    id_from_db, id_to_db, teams_from_db, AccountRow, ApiKeyRow, CannedRow, ConvRow, Store,
    StoreError,
};
use switchboard_protocol::{ConvId, VisitorId};

/// A site as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRow {
    pub id: String,
    pub name: String,
    /// Signs the visitor identities the site's back end computes (HMAC-SHA256, hex).
    pub visitor_secret: String,
    /// Exact `Origin` values its widget may be served from; none: any.
    pub origins: Vec<String>,
    pub teams: Vec<String>,
    /// Business hours (see `switchboard_protocol::hours`); empty: always open.
    pub hours: String,
    pub welcome_text: Option<String>,
    pub offline_text: Option<String>,
    pub created_at: i64,
}

/// Which conversations a search wants. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct ConvFilter {
    pub site: String,
    /// `all`, `waiting`, `open` or `closed`.
    pub status: String,
    pub agent: String,
    pub visitor: Option<VisitorId>,
    pub tag: String,
    /// Words in any of its messages (case-insensitive).
    pub text: String,
    /// Opened at or after, before (Unix milliseconds).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// One agent's figures over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub agent: String,
    pub conversations: i64,
    pub closed: i64,
    /// From opening to the agent's first message, in milliseconds, on average.
    pub first_response_ms: Option<f64>,
    /// From opening to closing, on average.
    pub resolution_ms: Option<f64>,
    pub csat: Option<f64>,
    pub ratings: i64,
}

/// A site's figures over a period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// (day since the epoch, conversations opened that day).
    pub per_day: Vec<(i64, i64)>,
    pub per_agent: Vec<ReportRow>,
}

/// A conversation's columns as `conv_row` reads them.
macro_rules! conv_select {
    () => {
        "SELECT c.id, c.visitor, c.agent, c.opened_at, c.assigned_at, c.closed_at, c.closed_by,
            c.site, c.context, r.score, r.comment
        FROM conversations c LEFT JOIN ratings r ON r.conv = c.id"
    };
}

fn conv_row(r: &Row) -> ConvRow {
    ConvRow {
        id: ConvId(id_from_db(r.int(0))),
        visitor: VisitorId(id_from_db(r.int(1))),
        agent: r.opt_text(2),
        opened_at: r.int(3),
        assigned_at: r.opt_int(4),
        closed_at: r.opt_int(5),
        closed_by: r.opt_text(6),
        site: r.text(7),
        context: r.opt_text(8),
        rating: r.opt_int(9),
        rating_comment: r.opt_text(10),
    }
}

fn key_row(r: &Row) -> ApiKeyRow {
    ApiKeyRow {
        id: r.text(0),
        site: r.text(1),
        secret_sha256: r.text(2),
        name: r.text(3),
        scopes: r.text(4),
        created_by: r.text(5),
        created_at: r.int(6),
        revoked_at: r.opt_int(7),
    }
}

fn canned_row(r: &Row) -> CannedRow {
    CannedRow {
        id: r.text(0),
        site: r.text(1),
        owner: r.opt_text(2),
        shortcut: r.text(3),
        body: r.text(4),
        created_at: r.int(5),
        team: r.opt_text(6),
    }
}

fn account_row(r: &Row) -> AccountRow {
    AccountRow {
        id: r.text(0),
        site: r.text(1),
        display_name: r.opt_text(2),
        password_hash: r.opt_text(3),
        role: r.text(4),
        max_conversations: r.opt_int(5).map(|v| v as u32),
        disabled: r.int(6) != 0,
        teams: teams_from_db(&r.text(7)),
    }
}

fn site_row(r: &Row) -> SiteRow {
    let list = |s: String| -> Vec<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    SiteRow {
        id: r.text(0),
        name: r.text(1),
        visitor_secret: r.text(2),
        origins: list(r.text(3)),
        teams: list(r.text(4)),
        hours: r.text(5),
        welcome_text: r.opt_text(6),
        offline_text: r.opt_text(7),
        created_at: r.int(8),
    }
}

/// A LIKE pattern matching `text` anywhere, lowercased, its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

const SEARCH_SQL: &str = concat!(
    conv_select!(),
    " WHERE c.site = $1
      AND ($2 = 'all'
        OR ($2 = 'waiting' AND c.closed_at IS NULL AND c.agent IS NULL)
        OR ($2 = 'open' AND c.closed_at IS NULL)
        OR ($2 = 'closed' AND c.closed_at IS NOT NULL))
      AND ($3 = '' OR c.agent = $3)
      AND ($4 = '' OR c.visitor = $5)
      AND ($6 = '' OR EXISTS (SELECT 1 FROM conversation_tags t WHERE t.conv = c.id AND t.tag = $6))
      AND ($7 = '' OR EXISTS (SELECT 1 FROM messages m WHERE m.conv = c.id
            AND LOWER(m.body) LIKE $7 ESCAPE '\\'))
      AND c.opened_at >= $8 AND c.opened_at < $9
      AND c.id > $10
    ORDER BY c.id LIMIT $11"
);

impl Store {
    /// Conversations matching `f`, after `after` in id order, at most `limit`.
    pub async fn conversations(
        &self,
        f: &ConvFilter,
        after: Option<ConvId>,
        limit: u32,
    ) -> Result<Vec<ConvRow>, StoreError> {
        let text = if f.text.is_empty() {
            String::new()
        } else {
            contains_pattern(&f.text)
        };
        let rows = self
            .query(
                SEARCH_SQL,
                vec![
                    f.site.clone().into(),
                    f.status.clone().into(),
                    f.agent.clone().into(),
                    if f.visitor.is_some() { "y" } else { "" }.into(),
                    id_to_db(f.visitor.map_or(0, |v| v.0)).into(),
                    f.tag.clone().into(),
                    text.into(),
                    f.from_ms.unwrap_or(i64::MIN).into(),
                    f.to_ms.unwrap_or(i64::MAX).into(),
                    after.map_or(i64::MIN, |c| id_to_db(c.0)).into(),
                    i64::from(limit).into(),
                ],
            )
            .await?;
        Ok(rows.iter().map(conv_row).collect())
    }

    /// One conversation's row, if the store has it (of whatever site: callers check).
    pub async fn conversation(&self, conv: ConvId) -> Result<Option<ConvRow>, StoreError> {
        const SQL: &str = concat!(conv_select!(), " WHERE c.id = $1");
        let rows = self.query(SQL, vec![id_to_db(conv.0).into()]).await?;
        Ok(rows.first().map(conv_row))
    }

    /// Records what the visitor's widget said of a conversation (JSON).
    pub async fn set_context(&self, conv: ConvId, context: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE conversations SET context = $2 WHERE id = $1";
        self.execute(SQL, vec![id_to_db(conv.0).into(), context.into()])
            .await?;
        Ok(())
    }

    /// Records the visitor's rating of a conversation (a second one replaces the first).
    pub async fn put_rating(
        &self,
        conv: ConvId,
        score: i64,
        comment: Option<String>,
        at: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO ratings (conv, score, comment, rated_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (conv) DO UPDATE SET score = excluded.score,
                comment = excluded.comment, rated_at = excluded.rated_at";
        let vals = vec![
            id_to_db(conv.0).into(),
            score.into(),
            comment.into(),
            at.into(),
        ];
        self.execute(SQL, vals).await?;
        Ok(())
    }

    /// Writes or replaces a visitor's profile (JSON), as its site's back end described it.
    pub async fn put_profile(
        &self,
        site: &str,
        visitor: VisitorId,
        external_id: &str,
        profile: &str,
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO visitor_profiles (id, site, external_id, profile, updated_at)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET site = excluded.site,
                external_id = excluded.external_id, profile = excluded.profile,
                updated_at = excluded.updated_at";
        let vals = vec![
            id_to_db(visitor.0).into(),
            site.into(),
            external_id.into(),
            profile.into(),
            super::now_ms().into(),
        ];
        self.execute(SQL, vals).await?;
        Ok(())
    }

    /// A visitor's profile (JSON), if `site`'s back end gave one.
    pub async fn profile(
        &self,
        site: &str,
        visitor: VisitorId,
    ) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT profile FROM visitor_profiles WHERE id = $1 AND site = $2";
        let rows = self
            .query(SQL, vec![id_to_db(visitor.0).into(), site.into()])
            .await?;
        Ok(rows.first().map(|r| r.text(0)))
    }

    pub async fn put_key(&self, k: ApiKeyRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO api_keys
            (id, site, secret_sha256, name, scopes, created_by, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let vals = vec![
            k.id.into(),
            k.site.into(),
            k.secret_sha256.into(),
            k.name.into(),
            k.scopes.into(),
            k.created_by.into(),
            k.created_at.into(),
        ];
        self.execute(SQL, vals).await?;
        Ok(())
    }

    pub async fn key(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        const SQL: &str = "SELECT id, site, secret_sha256, name, scopes, created_by, created_at,
            revoked_at FROM api_keys WHERE id = $1";
        Ok(self.query(SQL, vec![id.into()]).await?.first().map(key_row))
    }

    /// A site's keys (revoked ones too), in id order, at most `limit`.
    pub async fn keys(&self, site: &str, limit: u32) -> Result<Vec<ApiKeyRow>, StoreError> {
        const SQL: &str = "SELECT id, site, secret_sha256, name, scopes, created_by, created_at,
            revoked_at FROM api_keys WHERE site = $1 ORDER BY id LIMIT $2";
        let rows = self
            .query(SQL, vec![site.into(), i64::from(limit).into()])
            .await?;
        Ok(rows.iter().map(key_row).collect())
    }

    pub async fn put_canned(&self, c: CannedRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO canned_replies
            (id, site, owner, shortcut, body, created_at, team)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (id) DO UPDATE SET shortcut = excluded.shortcut, body = excluded.body";
        let vals = vec![
            c.id.into(),
            c.site.into(),
            c.owner.into(),
            c.shortcut.into(),
            c.body.into(),
            c.created_at.into(),
            c.team.into(),
        ];
        self.execute(SQL, vals).await?;
        Ok(())
    }

    /// The canned replies `agent` of `site`, in `teams`, may use: the site's, its teams'
    /// and its own, by shortcut.
    pub async fn canned_for(
        &self,
        site: &str,
        agent: &str,
        teams: &[String],
    ) -> Result<Vec<CannedRow>, StoreError> {
        const SQL: &str = "SELECT id, site, owner, shortcut, body, created_at, team
            FROM canned_replies
            WHERE site = $1 AND (owner = $2 OR (owner IS NULL
                AND (team IS NULL OR $3 LIKE ('%,' || REPLACE(team, '_', '\\_') || ',%') ESCAPE '\\')))
            ORDER BY shortcut, id LIMIT 1000";
        let teams = format!(",{},", teams.join(","));
        let rows = self
            .query(SQL, vec![site.into(), agent.into(), teams.into()])
            .await?;
        Ok(rows.iter().map(canned_row).collect())
    }

    pub async fn canned(&self, id: &str) -> Result<Option<CannedRow>, StoreError> {
        const SQL: &str = "SELECT id, site, owner, shortcut, body, created_at, team
            FROM canned_replies WHERE id = $1";
        Ok(self
            .query(SQL, vec![id.into()])
            .await?
            .first()
            .map(canned_row))
    }

    /// A site's accounts in id order after `after` (empty: from the first), at most `limit`.
    pub async fn accounts(
        &self,
        site: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<AccountRow>, StoreError> {
        const SQL: &str = "SELECT id, site, display_name, password_hash, role,
            max_conversations, disabled, teams FROM agents
            WHERE site = $1 AND id > $2 ORDER BY id LIMIT $3";
        let vals = vec![site.into(), after.into(), i64::from(limit).into()];
        Ok(self
            .query(SQL, vals)
            .await?
            .iter()
            .map(account_row)
            .collect())
    }

    /// The site's accounts that are in teams, with their teams (at most 10,000, by id).
    pub async fn team_members(&self, site: &str) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        const SQL: &str = "SELECT id, teams FROM agents WHERE site = $1 AND teams <> ''
            ORDER BY id LIMIT 10000";
        let rows = self.query(SQL, vec![site.into()]).await?;
        Ok(rows
            .iter()
            .map(|r| (r.text(0), teams_from_db(&r.text(1))))
            .collect())
    }

    /// Writes or replaces a site.
    pub async fn put_site(&self, s: SiteRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sites (id, name, visitor_secret, origins, teams, hours,
            welcome_text, offline_text, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                visitor_secret = excluded.visitor_secret, origins = excluded.origins,
                teams = excluded.teams, hours = excluded.hours,
                welcome_text = excluded.welcome_text, offline_text = excluded.offline_text";
        let vals = vec![
            s.id.into(),
            s.name.into(),
            s.visitor_secret.into(),
            s.origins.join(",").into(),
            s.teams.join(",").into(),
            s.hours.into(),
            s.welcome_text.into(),
            s.offline_text.into(),
            s.created_at.into(),
        ];
        self.execute(SQL, vals).await?;
        Ok(())
    }

    pub async fn site(&self, id: &str) -> Result<Option<SiteRow>, StoreError> {
        const SQL: &str = "SELECT id, name, visitor_secret, origins, teams, hours, welcome_text,
            offline_text, created_at FROM sites WHERE id = $1";
        Ok(self
            .query(SQL, vec![id.into()])
            .await?
            .first()
            .map(site_row))
    }

    /// Every site, in id order (at most 10,000).
    pub async fn sites(&self) -> Result<Vec<SiteRow>, StoreError> {
        const SQL: &str = "SELECT id, name, visitor_secret, origins, teams, hours, welcome_text,
            offline_text, created_at FROM sites ORDER BY id LIMIT 10000";
        Ok(self
            .query(SQL, vec![])
            .await?
            .iter()
            .map(site_row)
            .collect())
    }

    /// Deletes a site: whether it existed. Its conversations and accounts stay (and belong
    /// to no site any caller has, until one of that name is made again).
    pub async fn delete_site(&self, id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM sites WHERE id = $1";
        Ok(self.execute(SQL, vec![id.into()]).await? > 0)
    }

    /// A site's figures for conversations opened in `[from_ms, to_ms)`.
    pub async fn report(&self, site: &str, from_ms: i64, to_ms: i64) -> Result<Report, StoreError> {
        const PER_DAY: &str = "SELECT opened_at / 86400000, COUNT(*) FROM conversations
            WHERE site = $1 AND opened_at >= $2 AND opened_at < $3
            GROUP BY opened_at / 86400000 ORDER BY 1";
        const PER_AGENT: &str = "SELECT agent, COUNT(*),
                SUM(CASE WHEN closed_at IS NULL THEN 0 ELSE 1 END),
                AVG(first_ms), AVG(resolve_ms), AVG(score), COUNT(score)
            FROM (SELECT c.agent AS agent, c.closed_at AS closed_at,
                    CAST((SELECT MIN(m.ts) FROM messages m WHERE m.conv = c.id
                        AND m.sender = c.agent) - c.opened_at AS DOUBLE PRECISION) AS first_ms,
                    CAST(c.closed_at - c.opened_at AS DOUBLE PRECISION) AS resolve_ms,
                    CAST(r.score AS DOUBLE PRECISION) AS score
                FROM conversations c LEFT JOIN ratings r ON r.conv = c.id
                WHERE c.site = $1 AND c.opened_at >= $2 AND c.opened_at < $3
                    AND c.agent IS NOT NULL) x
            GROUP BY agent ORDER BY agent";
        let vals = || vec![Val::from(site), from_ms.into(), to_ms.into()];
        let per_day = self.query(PER_DAY, vals()).await?;
        let per_agent = self.query(PER_AGENT, vals()).await?;
        Ok(Report {
            per_day: per_day.iter().map(|r| (r.int(0), r.int(1))).collect(),
            per_agent: per_agent
                .iter()
                .map(|r| ReportRow {
                    agent: r.text(0),
                    conversations: r.int(1),
                    closed: r.int(2),
                    first_response_ms: r.opt_float(3),
                    resolution_ms: r.opt_float(4),
                    csat: r.opt_float(5),
                    ratings: r.int(6),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn search_text_is_lowercased_and_its_wildcards_escaped() {
        assert_eq!(contains_pattern("Refund"), "%refund%");
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
