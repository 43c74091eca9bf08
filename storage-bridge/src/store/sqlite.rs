//! The embedded store: one SQLite file in the data directory, in WAL mode with full sync (a
//! committed batch survives power loss). SQLite calls block, so they run on tokio's blocking
//! pool; one connection behind a mutex serialises writers, which SQLite does anyway.

use super::events::{context_json, CONTEXT_SQL, RATING_SQL};
use super::sql::{sqlite as shared, Row, Statement, Val};
use super::{
    after_id, check_schema_version, id_from_db, id_to_db, now_ms, seen_cids, site_of_db,
    AccountRow, ConvHead, DeadLetterRow, From, NoteRow, StoreError, WebhookRow, ACCOUNT_SQL,
    ADD_TAG_SQL, CLEAR_TAGS_SQL, DEAD_SQL, DELETE_CANNED_SQL, DELETE_HOOK_SQL, DISABLED_SQL,
    HOOKS_SQL, MIGRATIONS, NOTES_SQL, PUT_ACCOUNT_SQL, PUT_DEAD_SQL, PUT_HOOK_SQL, PUT_NOTE_SQL,
    REVOKE_KEY_SQL, TAGS_SQL,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};
use switchboard_protocol::bridge::{ConvEvent, OpenConv, SeenCid, StoredMessage};
use switchboard_protocol::token::DEFAULT_SITE;
use switchboard_protocol::{ConvId, VisitorId};

#[derive(Clone)]
pub struct SqliteStore {
    /// Why a mutex: rusqlite connections are not `Sync`; calls run on blocking threads.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("{}: {e}", dir.display())))?;
        }
        // Conversations are private: the database (and SQLite's -wal/-shm files, which take
        // its mode) is owner-only.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // SQLite's defaults (a 2 MB page cache, a checkpoint every 1,000 WAL pages) made the
        // store fall behind at 15k messages/s, most of the bridge's CPU copying pages in and
        // out of the kernel (perf): ack p50 83 ms, p99 405 ms. With a 64 MiB cache (the
        // indexes' hot pages) and checkpoints ten times rarer: p50 6-13 ms, p99 57-120 ms
        // over several runs of `bench/persist.sh sqlite 1000 15`. A map (mmap_size) made no
        // further difference.
        conn.pragma_update(None, "cache_size", -65_536)?;
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Caps the database size (SQLite's max_page_count); past it writes fail with
    /// SQLITE_FULL, the same error as a full disk.
    pub fn set_max_bytes(&self, bytes: u64) -> Result<(), StoreError> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let page: u64 = c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
        c.query_row(
            &format!("PRAGMA max_page_count = {}", (bytes / page).max(1)),
            [],
            |_| Ok(()),
        )?;
        Ok(())
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Other(format!("store task: {e}")))?
    }

    pub async fn query(&self, sql: &'static str, vals: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        self.run(move |c| {
            let mut q = c.prepare_cached(&shared::sql(sql))?;
            let rows = q.query_map(rusqlite::params_from_iter(vals.iter()), shared::row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Runs the statements in one transaction: the rows each changed.
    pub async fn transaction(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let mut changed = Vec::with_capacity(statements.len());
            for (sql, vals) in &statements {
                let n = tx.execute(&shared::sql(sql), rusqlite::params_from_iter(vals.iter()))?;
                changed.push(n as u64);
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    pub async fn migrate(&self, upto: i64) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")?;
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= upto) {
                let tx = c.transaction()?;
                let applied: Option<i64> =
                    tx.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| r.get(0))?;
                check_schema_version(applied)?;
                let done: Option<i64> =
                    tx.query_row("SELECT version FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0)).optional()?;
                if done.is_none() {
                    tx.execute_batch(sql)?;
                    tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", params![version, now_ms()])?;
                }
                tx.commit()?;
            }
            Ok(())
        })
        .await
    }

    pub async fn persist(
        &self,
        messages: Vec<StoredMessage>,
        events: Vec<ConvEvent>,
    ) -> Result<Vec<ConvId>, StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let mut fenced = Vec::new();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO messages (conv, seq, sender, cid, body, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for m in &messages {
                    insert.execute(params![id_to_db(m.conv.0), m.seq as i64, m.sender, m.cid, m.body, m.ts as i64])?;
                }
                for e in &events {
                    if !apply_event(&tx, e)? {
                        if let ConvEvent::SeqLease { conv, .. } = e {
                            fenced.push(*conv);
                        }
                    }
                }
            }
            tx.commit()?;
            Ok(fenced)
        })
        .await
    }

    pub(crate) async fn conv_head(&self, conv: ConvId) -> Result<Option<ConvHead>, StoreError> {
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT visitor, agent, closed_at IS NOT NULL, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?1),
                        (SELECT COALESCE(MAX(upto), 0) FROM seq_leases WHERE conv = ?1), site,
                        (SELECT COALESCE(MAX(epoch), 0) FROM seq_leases WHERE conv = ?1)
                 FROM conversations WHERE id = ?1",
                [id_to_db(conv.0)],
                |r| {
                    Ok(ConvHead {
                        visitor: VisitorId(id_from_db(r.get(0)?)),
                        agent: r.get(1)?,
                        closed: r.get(2)?,
                        last_seq: r.get::<_, i64>(3)? as u64,
                        seq_lease: r.get::<_, i64>(4)? as u64,
                        epoch: r.get::<_, i64>(6)? as u64,
                        site: site_of_db(r.get(5)?),
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    pub(crate) async fn recent_cids(
        &self,
        conv: ConvId,
        n: u32,
    ) -> Result<Vec<SeenCid>, StoreError> {
        self.run(move |c| {
            let mut q = c.prepare_cached(
                "SELECT seq, sender, cid FROM messages WHERE conv = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let rows = q.query_map(params![id_to_db(conv.0), n as i64], |r| {
                Ok(SeenCid {
                    seq: r.get::<_, i64>(0)? as u64,
                    sender: r.get(1)?,
                    cid: r.get(2)?,
                })
            })?;
            Ok(seen_cids(rows.collect::<Result<Vec<_>, _>>()?))
        })
        .await
    }

    pub(crate) async fn take_lease(
        &self,
        conv: ConvId,
        count: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        self.run(move |c| {
            Ok(c.query_row(
                "INSERT INTO seq_leases (conv, upto, epoch)
                 SELECT ?1, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?1) + ?2, 1
                 WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?1)
                 ON CONFLICT (conv) DO UPDATE SET upto = MAX(upto,
                     (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = ?1)) + ?2,
                     epoch = epoch + 1
                 RETURNING upto, epoch",
                params![id_to_db(conv.0), count as i64],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?)
        })
        .await
    }

    pub async fn put_account(&self, a: AccountRow) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                &PUT_ACCOUNT_SQL.replace('$', "?"),
                params![
                    a.id,
                    now_ms(),
                    a.site,
                    a.display_name,
                    a.password_hash,
                    a.role,
                    a.max_conversations.map(i64::from),
                    i64::from(a.disabled),
                    a.teams.join(",")
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn account(&self, id: String) -> Result<Option<AccountRow>, StoreError> {
        self.run(move |c| {
            Ok(
                c.query_row(&ACCOUNT_SQL.replace('$', "?"), [id], account_row)
                    .optional()?,
            )
        })
        .await
    }

    pub async fn revoke_key(&self, id: String) -> Result<bool, StoreError> {
        self.run(move |c| {
            Ok(c.execute(&REVOKE_KEY_SQL.replace('$', "?"), params![id, now_ms()])? == 1)
        })
        .await
    }

    pub async fn delete_canned(&self, id: String) -> Result<bool, StoreError> {
        self.run(move |c| Ok(c.execute(&DELETE_CANNED_SQL.replace('$', "?"), [id])? == 1))
            .await
    }

    pub async fn put_webhook(&self, w: WebhookRow) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                &PUT_HOOK_SQL.replace('$', "?"),
                params![w.id, w.url, w.secret, w.events, w.created_by, w.created_at],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        self.run(move |c| {
            let mut q = c.prepare_cached(HOOKS_SQL)?;
            let rows = q.query_map([], |r| {
                Ok(WebhookRow {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    events: r.get(3)?,
                    created_by: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn delete_webhook(&self, id: String) -> Result<bool, StoreError> {
        self.run(move |c| Ok(c.execute(&DELETE_HOOK_SQL.replace('$', "?"), [id])? == 1))
            .await
    }

    pub async fn put_dead_letter(&self, d: DeadLetterRow) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                &PUT_DEAD_SQL.replace('$', "?"),
                params![
                    d.id,
                    d.webhook,
                    d.event,
                    d.body,
                    d.attempts,
                    d.last_error,
                    d.failed_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn dead_letters(&self, webhook: String) -> Result<Vec<DeadLetterRow>, StoreError> {
        self.run(move |c| {
            let mut q = c.prepare_cached(&DEAD_SQL.replace('$', "?"))?;
            let rows = q.query_map([webhook], |r| {
                Ok(DeadLetterRow {
                    id: r.get(0)?,
                    webhook: r.get(1)?,
                    event: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get(4)?,
                    last_error: r.get(5)?,
                    failed_at: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn put_note(&self, n: NoteRow) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                &PUT_NOTE_SQL.replace('$', "?"),
                params![n.id, id_to_db(n.conv.0), n.author, n.body, n.created_at],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn notes(&self, conv: i64) -> Result<Vec<NoteRow>, StoreError> {
        self.run(move |c| {
            let mut q = c.prepare_cached(&NOTES_SQL.replace('$', "?"))?;
            let rows = q.query_map([conv], |r| {
                Ok(NoteRow {
                    id: r.get(0)?,
                    conv: ConvId(id_from_db(r.get(1)?)),
                    author: r.get(2)?,
                    body: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn set_tags(&self, conv: i64, tags: Vec<String>) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(&CLEAR_TAGS_SQL.replace('$', "?"), [conv])?;
            for t in &tags {
                tx.execute(&ADD_TAG_SQL.replace('$', "?"), params![conv, t])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn tags(&self, conv: i64) -> Result<Vec<String>, StoreError> {
        self.run(move |c| {
            let mut q = c.prepare_cached(&TAGS_SQL.replace('$', "?"))?;
            let rows = q.query_map([conv], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    pub async fn disabled_agents(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        self.run(move |c| {
            let mut q = c.prepare_cached(&DISABLED_SQL.replace('$', "?"))?;
            let rows = q.query_map([limit as i64], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }

    pub async fn open_conversations(
        &self,
        after: Option<ConvId>,
        limit: u32,
    ) -> Result<Vec<OpenConv>, StoreError> {
        let (after, first) = after_id(after);
        self.run(move |c| {
            let mut q = c.prepare_cached(
                "SELECT id, visitor, agent, site FROM conversations
                 WHERE closed_at IS NULL AND (?2 OR id > ?1) ORDER BY id LIMIT ?3",
            )?;
            let rows = q.query_map(params![after, first, limit as i64], |r| {
                Ok(OpenConv {
                    conv: ConvId(id_from_db(r.get(0)?)),
                    visitor: VisitorId(id_from_db(r.get(1)?)),
                    agent: r.get(2)?,
                    site: site_of_db(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn read(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
        from: From,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.run(move |c| {
            let sql = match from {
                From::Oldest => "SELECT seq, sender, cid, body, ts FROM messages WHERE conv = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq ASC LIMIT ?4",
                From::Newest => "SELECT seq, sender, cid, body, ts FROM messages WHERE conv = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
            };
            let mut q = c.prepare_cached(sql)?;
            let after = after.min(i64::MAX as u64) as i64;
            let before = before.min(i64::MAX as u64) as i64;
            let rows = q.query_map(params![id_to_db(conv.0), after, before, limit as i64], |r| {
                Ok(StoredMessage {
                    conv,
                    seq: r.get::<_, i64>(0)? as u64,
                    sender: r.get(1)?,
                    cid: r.get(2)?,
                    body: r.get(3)?,
                    ts: r.get::<_, i64>(4)? as u64,
                })
            })?;
            let mut out = rows.collect::<Result<Vec<_>, _>>()?;
            if from == From::Newest {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }
}

/// Applies one event; false for a lease extension refused (its epoch is not the lease's).
fn apply_event(tx: &rusqlite::Transaction<'_>, e: &ConvEvent) -> Result<bool, StoreError> {
    match e {
        ConvEvent::Opened {
            conv,
            visitor,
            ts,
            lease,
            site,
        } => {
            tx.execute(
                "INSERT OR IGNORE INTO conversations (id, visitor, opened_at, site) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id_to_db(conv.0),
                    id_to_db(visitor.0),
                    *ts as i64,
                    site.as_deref().unwrap_or(DEFAULT_SITE)
                ],
            )?;
            if *lease > 0 {
                tx.execute(
                    "INSERT INTO seq_leases (conv, upto) VALUES (?1, ?2)
                     ON CONFLICT (conv) DO UPDATE SET upto = MAX(upto, excluded.upto)",
                    params![id_to_db(conv.0), *lease as i64],
                )?;
            }
            tx.execute(
                "INSERT INTO visitors (id, first_seen, last_seen) VALUES (?1, ?2, ?2)
                 ON CONFLICT (id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                params![id_to_db(visitor.0), *ts as i64],
            )?;
        }
        ConvEvent::Assigned { conv, agent, ts } => {
            tx.execute(
                "UPDATE conversations SET agent = ?2, assigned_at = ?3 WHERE id = ?1",
                params![id_to_db(conv.0), agent, *ts as i64],
            )?;
            tx.execute(
                "INSERT INTO agents (id, first_seen, last_seen) VALUES (?1, ?2, ?2)
                 ON CONFLICT (id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                params![agent, *ts as i64],
            )?;
        }
        ConvEvent::SeqLease { conv, upto, epoch } => {
            let changed = tx.execute(
                "INSERT INTO seq_leases (conv, upto, epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (conv) DO UPDATE SET upto = MAX(upto, excluded.upto)
                 WHERE epoch = excluded.epoch",
                params![id_to_db(conv.0), *upto as i64, *epoch as i64],
            )?;
            return Ok(changed > 0);
        }
        ConvEvent::SeqRelease { conv, at, held } => {
            tx.execute(
                "UPDATE seq_leases SET upto = ?2 WHERE conv = ?1 AND upto > ?2 AND upto <= ?3",
                params![id_to_db(conv.0), *at as i64, *held as i64],
            )?;
        }
        ConvEvent::Closed { conv, by, ts } => {
            tx.execute(
                "UPDATE conversations SET closed_at = ?2, closed_by = ?3 WHERE id = ?1 AND closed_at IS NULL",
                params![id_to_db(conv.0), *ts as i64, by],
            )?;
        }
        ConvEvent::Context { conv, context } => {
            tx.execute(
                &super::sql::sqlite::sql(CONTEXT_SQL),
                params![id_to_db(conv.0), context_json(context)],
            )?;
        }
        ConvEvent::Rated {
            conv,
            score,
            comment,
            ts,
        } => {
            tx.execute(
                &super::sql::sqlite::sql(RATING_SQL),
                params![id_to_db(conv.0), i64::from(*score), comment, *ts as i64],
            )?;
        }
    }
    Ok(true)
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        id: r.get(0)?,
        site: r.get(1)?,
        display_name: r.get(2)?,
        password_hash: r.get(3)?,
        role: r.get(4)?,
        max_conversations: r.get::<_, Option<i64>>(5)?.map(|v| v as u32),
        disabled: r.get::<_, i64>(6)? != 0,
        teams: super::teams_from_db(&r.get::<_, String>(7)?),
    })
}
