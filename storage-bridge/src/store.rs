//! One store interface over two databases: PostgreSQL (`tokio-postgres`, pooled) when a
//! database URL is configured, and an embedded SQLite file otherwise. Both apply the same
//! versioned migrations at start and pass the same test suite (`tests/store.rs`).
//!
//! Writes are idempotent: a message is unique on (conversation, seq) and on
//! (conversation, sender, client message id), and a replayed batch changes nothing.

mod domain;
mod events;
mod postgres;
mod sql;
mod sqlite;

pub use domain::{ConvFilter, Report, ReportRow, SiteRow};
pub use sql::{Row, Statement, Val};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
use switchboard_protocol::bridge::{ConvEvent, ConvInfo, OpenConv, SeenCid, StoredMessage};
use switchboard_protocol::ConvId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error(
        "the database schema is at version {found}, newer than this bridge knows (up to \
         {known}): it was migrated by a newer storage-bridge; run that version or newer"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// Errors worth retrying (the database is away or busy), as opposed to bugs.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
            ),
            Self::Postgres(_) | Self::Pool(_) => true,
            _ => false,
        }
    }
}

/// Refuses a database migrated past what this build knows: an older bridge would write
/// rows a newer schema may not expect, and its migrations would not notice.
pub(crate) fn check_schema_version(applied_max: Option<i64>) -> Result<(), StoreError> {
    let known = MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0);
    match applied_max {
        Some(found) if found > known => Err(StoreError::NewerSchema { found, known }),
        _ => Ok(()),
    }
}

/// Versioned schema migrations, shared by both databases (the SQL is the common subset).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE conversations (
        id BIGINT PRIMARY KEY,
        visitor BIGINT NOT NULL,
        agent TEXT,
        opened_at BIGINT NOT NULL,
        assigned_at BIGINT,
        closed_at BIGINT,
        closed_by TEXT
    );
    CREATE TABLE messages (
        conv BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        sender TEXT NOT NULL,
        cid TEXT NOT NULL,
        body TEXT NOT NULL,
        ts BIGINT NOT NULL,
        PRIMARY KEY (conv, seq),
        UNIQUE (conv, sender, cid)
    );
    CREATE TABLE visitors (
        id BIGINT PRIMARY KEY,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );",
    ),
    // Seq leases (docs/protocol.md, "a seq, once seen by anyone, always names the same
    // message"): seqs up to `seq_lease` may have been shown to clients.
    (
        2,
        // A table of their own (not a column of `conversations`): a lease written by a batch
        // that commits before the conversation's opening batch (batches commit concurrently)
        // must still count.
        "CREATE TABLE IF NOT EXISTS seq_leases (conv BIGINT PRIMARY KEY, upto BIGINT NOT NULL)",
    ),
    // Agent accounts (issue 13): the `agents` rows the store kept of agents seen become
    // accounts; those without a password can only use tokens minted at the command line.
    (
        3,
        "ALTER TABLE agents ADD COLUMN site TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE agents ADD COLUMN display_name TEXT;
    ALTER TABLE agents ADD COLUMN password_hash TEXT;
    ALTER TABLE agents ADD COLUMN role TEXT NOT NULL DEFAULT 'agent';
    ALTER TABLE agents ADD COLUMN max_conversations BIGINT;
    ALTER TABLE agents ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0",
    ),
    // Visitors the site's back end identified (issue 13): the customer's id on the site and
    // what it said of them, as JSON.
    (
        4,
        "CREATE TABLE visitor_profiles (
        id BIGINT PRIMARY KEY,
        external_id TEXT NOT NULL,
        profile TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    ),
    // API keys for the site's other systems (issue 13): only a hash of each secret is kept.
    (
        5,
        "CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        site TEXT NOT NULL DEFAULT 'default',
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    )",
    ),
    // Canned replies (issue 13): site-wide (no owner) or an agent's own.
    (
        6,
        "CREATE TABLE canned_replies (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL DEFAULT 'default',
        owner TEXT,
        shortcut TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    ),
    // Outbound webhooks (issue 13), and the deliveries that failed every attempt.
    (
        7,
        "CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        events TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE webhook_dead_letters (
        id TEXT PRIMARY KEY,
        webhook TEXT NOT NULL,
        event TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT NOT NULL,
        failed_at BIGINT NOT NULL
    )",
    ),
    // Agents' teams (issue 13): comma-separated team names.
    (
        8,
        "ALTER TABLE agents ADD COLUMN teams TEXT NOT NULL DEFAULT ''",
    ),
    // Internal notes and tags on conversations (issue 13): agents only, never the visitor.
    (
        9,
        "CREATE TABLE conversation_notes (
        id TEXT PRIMARY KEY,
        conv BIGINT NOT NULL,
        author TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX conversation_notes_by_conv ON conversation_notes (conv, created_at);
    CREATE TABLE conversation_tags (
        conv BIGINT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (conv, tag)
    )",
    ),
    // Sites (issue 13): one deployment serves several websites or brands, each with its
    // own visitor secret, origins, teams, hours and texts; conversations belong to one.
    // What the visitor's widget said at connect, and the visitor's rating at close.
    (
        10,
        "CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        visitor_secret TEXT NOT NULL,
        origins TEXT NOT NULL DEFAULT '',
        teams TEXT NOT NULL DEFAULT '',
        hours TEXT NOT NULL DEFAULT '',
        welcome_text TEXT,
        offline_text TEXT,
        created_at BIGINT NOT NULL
    );
    ALTER TABLE conversations ADD COLUMN site TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE conversations ADD COLUMN context TEXT;
    ALTER TABLE visitor_profiles ADD COLUMN site TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE canned_replies ADD COLUMN team TEXT;
    CREATE INDEX conversations_by_site ON conversations (site, opened_at);
    CREATE TABLE ratings (
        conv BIGINT PRIMARY KEY,
        score BIGINT NOT NULL,
        comment TEXT,
        rated_at BIGINT NOT NULL
    )",
    ),
    // Several gateway nodes (issue 16): each load of a conversation raises its lease's
    // epoch, and an extension from an older epoch is refused (docs/cluster.md, "Fencing").
    (
        11,
        "ALTER TABLE seq_leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
    ),
];

/// An internal note on a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteRow {
    pub id: String,
    pub conv: ConvId,
    pub author: String,
    pub body: String,
    pub created_at: i64,
}

pub(crate) const PUT_NOTE_SQL: &str =
    "INSERT INTO conversation_notes (id, conv, author, body, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const NOTES_SQL: &str =
    "SELECT id, conv, author, body, created_at FROM conversation_notes
    WHERE conv = $1 ORDER BY created_at, id LIMIT 1000";
pub(crate) const CLEAR_TAGS_SQL: &str = "DELETE FROM conversation_tags WHERE conv = $1";
pub(crate) const ADD_TAG_SQL: &str =
    "INSERT INTO conversation_tags (conv, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING";
pub(crate) const TAGS_SQL: &str = "SELECT tag FROM conversation_tags WHERE conv = $1 ORDER BY tag";

/// A webhook subscription as stored (its secret signs deliveries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub secret: String,
    /// Comma-separated event names.
    pub events: String,
    pub created_by: String,
    pub created_at: i64,
}

/// A delivery that failed every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRow {
    pub id: String,
    pub webhook: String,
    pub event: String,
    pub body: String,
    pub attempts: i64,
    pub last_error: String,
    pub failed_at: i64,
}

pub(crate) const PUT_HOOK_SQL: &str =
    "INSERT INTO webhooks (id, url, secret, events, created_by, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const HOOKS_SQL: &str =
    "SELECT id, url, secret, events, created_by, created_at FROM webhooks ORDER BY id LIMIT 1000";
pub(crate) const DELETE_HOOK_SQL: &str = "DELETE FROM webhooks WHERE id = $1";
pub(crate) const PUT_DEAD_SQL: &str = "INSERT INTO webhook_dead_letters
    (id, webhook, event, body, attempts, last_error, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const DEAD_SQL: &str = "SELECT id, webhook, event, body, attempts, last_error, failed_at
    FROM webhook_dead_letters WHERE webhook = $1 ORDER BY failed_at DESC, id LIMIT 1000";

/// A conversation as listed by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvRow {
    pub id: ConvId,
    pub visitor: switchboard_protocol::VisitorId,
    pub agent: Option<String>,
    pub opened_at: i64,
    pub assigned_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
    pub site: String,
    /// What the visitor's widget said of it at connect (JSON), if anything.
    pub context: Option<String>,
    /// The visitor's rating (1-5), if given.
    pub rating: Option<i64>,
    pub rating_comment: Option<String>,
}

/// A canned reply as stored: site-wide when it has no `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedRow {
    pub id: String,
    pub site: String,
    /// A team's reply (its agents'), when not an agent's own nor the whole site's.
    pub team: Option<String>,
    pub owner: Option<String>,
    pub shortcut: String,
    pub body: String,
    pub created_at: i64,
}

pub(crate) const DELETE_CANNED_SQL: &str = "DELETE FROM canned_replies WHERE id = $1";

/// An API key as stored: never its secret, only the secret's SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: String,
    /// The site it acts for.
    pub site: String,
    pub secret_sha256: String,
    pub name: String,
    /// Comma-separated.
    pub scopes: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

pub(crate) const REVOKE_KEY_SQL: &str =
    "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An agent's account as stored (see `crate::accounts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: String,
    pub site: String,
    pub display_name: Option<String>,
    /// An argon2 PHC string; `None`: no password (cannot log in over HTTP).
    pub password_hash: Option<String>,
    pub role: String,
    pub max_conversations: Option<u32>,
    pub disabled: bool,
    /// The teams it takes conversations for.
    pub teams: Vec<String>,
}

/// Writes or replaces an account (keeping when the agent was first and last seen).
pub(crate) const PUT_ACCOUNT_SQL: &str = "INSERT INTO agents
    (id, first_seen, last_seen, site, display_name, password_hash, role, max_conversations, disabled, teams)
    VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (id) DO UPDATE SET site = excluded.site, display_name = excluded.display_name,
        password_hash = excluded.password_hash, role = excluded.role,
        max_conversations = excluded.max_conversations, disabled = excluded.disabled,
        teams = excluded.teams";

pub(crate) const ACCOUNT_SQL: &str = "SELECT id, site, display_name, password_hash, role,
    max_conversations, disabled, teams FROM agents WHERE id = $1";

/// Disabled accounts (at most `$1`), as a bridge tells each gateway link when it starts.
pub(crate) const DISABLED_SQL: &str =
    "SELECT id FROM agents WHERE disabled <> 0 ORDER BY id LIMIT $1";

/// Teams as stored: comma-separated.
pub(crate) fn teams_from_db(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Which end of a range a read takes when more messages match than it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The oldest (a resume reading forward).
    Oldest,
    /// The newest (history reading back).
    Newest,
}

/// A conversation's row, with its newest stored seq.
pub(crate) struct ConvHead {
    pub visitor: switchboard_protocol::VisitorId,
    pub agent: Option<String>,
    pub closed: bool,
    pub last_seq: u64,
    pub seq_lease: u64,
    pub epoch: u64,
    pub site: Option<String>,
}

/// A site as stored (`default` for the default site) as the link says it (none for it).
pub(crate) fn site_of_db(site: String) -> Option<String> {
    (site != switchboard_protocol::token::DEFAULT_SITE).then_some(site)
}

/// Where a page of the open-conversation listing starts (ids compared as stored), and
/// whether it is the first page.
pub(crate) fn after_id(after: Option<ConvId>) -> (i64, bool) {
    (after.map_or(i64::MIN, |c| id_to_db(c.0)), after.is_none())
}

/// The first `SeenCid`s of rows (seq, sender, cid) read newest first, oldest first.
pub(crate) fn seen_cids(mut rows: Vec<SeenCid>) -> Vec<SeenCid> {
    rows.reverse();
    rows
}

/// Ids are u64 on the wire and BIGINT (i64) in the databases: the same 64 bits.
pub fn id_to_db(id: u64) -> i64 {
    id as i64
}
pub fn id_from_db(v: i64) -> u64 {
    v as u64
}

/// The configured store.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Applies every migration not yet applied. Safe to run at every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrate_to(i64::MAX).await
    }

    /// Applies the migrations up to version `upto` only (tests of upgrades: a database as
    /// an older bridge left it).
    pub async fn migrate_to(&self, upto: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.migrate(upto).await,
            Self::Postgres(s) => s.migrate(upto).await,
        }
    }

    /// Rows of a query written once for both databases (see `sql`).
    pub async fn query(&self, sql: &'static str, vals: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        match self {
            Self::Sqlite(s) => s.query(sql, vals).await,
            Self::Postgres(s) => s.query(sql, vals).await,
        }
    }

    /// Runs statements written once for both databases in one transaction: the rows each
    /// changed.
    pub async fn transaction(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        match self {
            Self::Sqlite(s) => s.transaction(statements).await,
            Self::Postgres(s) => s.transaction(statements).await,
        }
    }

    /// Runs one statement: the rows it changed.
    pub async fn execute(&self, sql: &'static str, vals: Vec<Val>) -> Result<u64, StoreError> {
        Ok(self.transaction(vec![(sql, vals)]).await?[0])
    }

    /// Stores a batch in one transaction. Returns the conversations whose lease extensions
    /// were refused: another home loaded them since (a newer epoch).
    pub async fn persist(
        &self,
        messages: Vec<StoredMessage>,
        events: Vec<ConvEvent>,
    ) -> Result<Vec<ConvId>, StoreError> {
        match self {
            Self::Sqlite(s) => s.persist(messages, events).await,
            Self::Postgres(s) => s.persist(&messages, &events).await,
        }
    }

    /// What is stored of a conversation: its newest `recent` messages and the cids of its
    /// newest `cids` messages. Its lease is as stored (`seq_floor` is the newest seq);
    /// [`Self::take_lease`] takes a new one.
    pub async fn load_conv(
        &self,
        conv: ConvId,
        recent: u32,
        cids: u32,
    ) -> Result<Option<ConvInfo>, StoreError> {
        let head = match self {
            Self::Sqlite(s) => s.conv_head(conv).await?,
            Self::Postgres(s) => s.conv_head(conv).await?,
        };
        let Some(head) = head else { return Ok(None) };
        let recent = self.history(conv, 0, u64::MAX, recent).await?;
        let cids = match self {
            Self::Sqlite(s) => s.recent_cids(conv, cids).await?,
            Self::Postgres(s) => s.recent_cids(conv, cids).await?,
        };
        Ok(Some(ConvInfo {
            visitor: head.visitor,
            agent: head.agent,
            site: head.site,
            closed: head.closed,
            last_seq: head.last_seq,
            seq_floor: head.last_seq,
            seq_lease: head.seq_lease,
            epoch: head.epoch,
            recent,
            cids,
        }))
    }

    /// Raises a conversation's seq lease to `count` seqs above everything that may have been
    /// used (the newest stored seq, or the lease before, whichever is higher), in one
    /// statement, raising its epoch (the new home's fencing token). Returns (that floor, the
    /// new lease, its epoch), or `None` for an unknown conversation.
    pub async fn take_lease(
        &self,
        conv: ConvId,
        count: u64,
    ) -> Result<Option<(u64, u64, u64)>, StoreError> {
        let taken = match self {
            Self::Sqlite(s) => s.take_lease(conv, count).await?,
            Self::Postgres(s) => s.take_lease(conv, count).await?,
        };
        Ok(taken.map(|(u, epoch)| (u - count, u, epoch)))
    }

    /// Messages with `after < seq < before`, oldest first; the newest `limit` of them.
    pub async fn history(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(conv, after, before, limit, From::Newest).await
    }

    /// Messages with `after < seq < before`, oldest first; `limit` of them from `from`.
    pub async fn read(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
        from: From,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        match self {
            Self::Sqlite(s) => s.read(conv, after, before, limit, from).await,
            Self::Postgres(s) => s.read(conv, after, before, limit, from).await,
        }
    }

    /// Conversations not closed with an id above `after`, in id order, at most `limit`.
    pub async fn open_conversations(
        &self,
        after: Option<ConvId>,
        limit: u32,
    ) -> Result<Vec<OpenConv>, StoreError> {
        match self {
            Self::Sqlite(s) => s.open_conversations(after, limit).await,
            Self::Postgres(s) => s.open_conversations(after, limit).await,
        }
    }

    /// Writes or replaces an agent's account.
    pub async fn put_account(&self, a: AccountRow) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.put_account(a).await,
            Self::Postgres(s) => s.put_account(&a).await,
        }
    }

    /// The account of agent `id`, if it has one (an agent only seen has a row without a
    /// password).
    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>, StoreError> {
        match self {
            Self::Sqlite(s) => s.account(id.to_owned()).await,
            Self::Postgres(s) => s.account(id).await,
        }
    }

    /// Revokes key `id`: whether it was live.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.revoke_key(id.to_owned()).await,
            Self::Postgres(s) => s.revoke_key(id).await,
        }
    }

    pub async fn delete_canned(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.delete_canned(id.to_owned()).await,
            Self::Postgres(s) => s.delete_canned(id).await,
        }
    }

    pub async fn put_webhook(&self, w: WebhookRow) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.put_webhook(w).await,
            Self::Postgres(s) => s.put_webhook(&w).await,
        }
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        match self {
            Self::Sqlite(s) => s.webhooks().await,
            Self::Postgres(s) => s.webhooks().await,
        }
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.delete_webhook(id.to_owned()).await,
            Self::Postgres(s) => s.delete_webhook(id).await,
        }
    }

    pub async fn put_dead_letter(&self, d: DeadLetterRow) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.put_dead_letter(d).await,
            Self::Postgres(s) => s.put_dead_letter(&d).await,
        }
    }

    pub async fn dead_letters(&self, webhook: &str) -> Result<Vec<DeadLetterRow>, StoreError> {
        match self {
            Self::Sqlite(s) => s.dead_letters(webhook.to_owned()).await,
            Self::Postgres(s) => s.dead_letters(webhook).await,
        }
    }

    pub async fn put_note(&self, n: NoteRow) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.put_note(n).await,
            Self::Postgres(s) => s.put_note(&n).await,
        }
    }

    pub async fn notes(&self, conv: ConvId) -> Result<Vec<NoteRow>, StoreError> {
        let id = id_to_db(conv.0);
        match self {
            Self::Sqlite(s) => s.notes(id).await,
            Self::Postgres(s) => s.notes(id).await,
        }
    }

    /// Replaces a conversation's tags, in one transaction.
    pub async fn set_tags(&self, conv: ConvId, tags: Vec<String>) -> Result<(), StoreError> {
        let id = id_to_db(conv.0);
        match self {
            Self::Sqlite(s) => s.set_tags(id, tags).await,
            Self::Postgres(s) => s.set_tags(id, &tags).await,
        }
    }

    pub async fn tags(&self, conv: ConvId) -> Result<Vec<String>, StoreError> {
        let id = id_to_db(conv.0);
        match self {
            Self::Sqlite(s) => s.tags(id).await,
            Self::Postgres(s) => s.tags(id).await,
        }
    }

    /// The ids of disabled accounts, at most `limit`.
    pub async fn disabled_agents(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(s) => s.disabled_agents(limit).await,
            Self::Postgres(s) => s.disabled_agents(limit).await,
        }
    }

    /// Messages stored for a conversation (tests and checks).
    pub async fn count_messages(&self, conv: ConvId) -> Result<u64, StoreError> {
        Ok(self.history(conv, 0, u64::MAX, u32::MAX).await?.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_schema_newer_than_the_migrations_is_refused() {
        let known = MIGRATIONS.last().unwrap().0;
        assert!(check_schema_version(None).is_ok());
        assert!(check_schema_version(Some(known)).is_ok());
        assert!(matches!(
            check_schema_version(Some(known + 1)),
            Err(StoreError::NewerSchema { found, .. }) if found == known + 1
        ));
    }
}
