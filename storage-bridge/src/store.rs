//! One store interface over two databases: PostgreSQL (`tokio-postgres`, pooled) when a
//! database URL is configured, and an embedded SQLite file otherwise. Both apply the same
//! versioned migrations at start and pass the same test suite (`tests/store.rs`).
//!
//! Writes are idempotent: a message is unique on (conversation, seq) and on
//! (conversation, sender, client message id), and a replayed batch changes nothing.

mod events;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
use switchboard_protocol::bridge::{ConvEvent, ConvInfo, OpenConv, StoredMessage};
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
pub const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

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
        match self {
            Self::Sqlite(s) => s.migrate().await,
            Self::Postgres(s) => s.migrate().await,
        }
    }

    /// Stores a batch in one transaction.
    pub async fn persist(
        &self,
        messages: Vec<StoredMessage>,
        events: Vec<ConvEvent>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.persist(messages, events).await,
            Self::Postgres(s) => s.persist(&messages, &events).await,
        }
    }

    pub async fn load_conv(
        &self,
        conv: ConvId,
        recent: u32,
    ) -> Result<Option<ConvInfo>, StoreError> {
        match self {
            Self::Sqlite(s) => s.load_conv(conv, recent).await,
            Self::Postgres(s) => s.load_conv(conv, recent).await,
        }
    }

    /// Messages with `after < seq < before`, oldest first; the newest `limit` of them.
    pub async fn history(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        match self {
            Self::Sqlite(s) => s.history(conv, after, before, limit).await,
            Self::Postgres(s) => s.history(conv, after, before, limit).await,
        }
    }

    /// Conversations not closed, oldest first, at most `limit`.
    pub async fn open_conversations(&self, limit: u32) -> Result<Vec<OpenConv>, StoreError> {
        match self {
            Self::Sqlite(s) => s.open_conversations(limit).await,
            Self::Postgres(s) => s.open_conversations(limit).await,
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
