//! PostgreSQL through `tokio-postgres` with a `deadpool` connection pool. A batch is one
//! transaction: messages go in with a single multi-row `INSERT ... SELECT FROM UNNEST(...)`,
//! and the batch's conversation events, folded to one row per key, with one statement per
//! table (a burst of new conversations once cost four round trips each).

use super::events::{EventRows, CONTEXT_SQL, RATING_SQL};
use super::sql::{postgres as shared, Row, Statement, Val};
use super::{
    after_id, check_schema_version, id_from_db, id_to_db, now_ms, seen_cids, site_of_db,
    AccountRow, ConvHead, DeadLetterRow, From, NoteRow, StoreError, WebhookRow, ACCOUNT_SQL,
    ADD_TAG_SQL, CLEAR_TAGS_SQL, DEAD_SQL, DELETE_CANNED_SQL, DELETE_HOOK_SQL, DISABLED_SQL,
    HOOKS_SQL, MIGRATIONS, NOTES_SQL, PUT_ACCOUNT_SQL, PUT_DEAD_SQL, PUT_HOOK_SQL, PUT_NOTE_SQL,
    REVOKE_KEY_SQL, TAGS_SQL,
};
use deadpool_postgres::Transaction;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use switchboard_protocol::bridge::{ConvEvent, OpenConv, SeenCid, StoredMessage};
use switchboard_protocol::{ConvId, VisitorId};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

impl PgStore {
    /// Connects lazily: the pool opens connections when first used.
    pub fn new(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let pg: tokio_postgres::Config = url.parse()?;
        let mgr = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size)
            .build()
            .map_err(pool_err)?;
        Ok(Self { pool })
    }

    pub async fn query(&self, sql: &'static str, vals: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let stmt = c.prepare_cached(sql).await?;
        c.query(&stmt, &shared::params(&vals))
            .await?
            .iter()
            .map(shared::row)
            .collect()
    }

    /// Runs the statements in one transaction: the rows each changed.
    pub async fn transaction(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        let mut changed = Vec::with_capacity(statements.len());
        for (sql, vals) in &statements {
            let stmt = tx.prepare_cached(sql).await?;
            changed.push(tx.execute(&stmt, &shared::params(vals)).await?);
        }
        tx.commit().await?;
        Ok(changed)
    }

    pub async fn migrate(&self, upto: i64) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        c.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .await?;
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= upto) {
            let tx = c.transaction().await?;
            // Serialise concurrent starts: one migrator at a time.
            tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                .await?;
            let applied: Option<i64> = tx
                .query_one("SELECT MAX(version) FROM schema_migrations", &[])
                .await?
                .get(0);
            check_schema_version(applied)?;
            let done = tx
                .query_opt(
                    "SELECT version FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?;
            if done.is_none() {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, (extract(epoch from now()) * 1000)::bigint)",
                    &[version],
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Writes a batch. Messages go in with a plain `INSERT` first: with `ON CONFLICT`
    /// PostgreSQL probes both unique indexes before inserting into them, twice the index
    /// descents for the rare batch that repeats a message (a replay after a restart). Such a
    /// batch fails with a unique violation and is written again, skipping what is stored.
    pub async fn persist(
        &self,
        messages: &[StoredMessage],
        events: &[ConvEvent],
    ) -> Result<Vec<ConvId>, StoreError> {
        match self.write_batch(messages, events, false).await {
            Err(StoreError::Postgres(e)) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                metrics::counter!("bridge_batches_with_repeats_total").increment(1);
                self.write_batch(messages, events, true).await
            }
            other => other,
        }
    }

    async fn write_batch(
        &self,
        messages: &[StoredMessage],
        events: &[ConvEvent],
        skip_stored: bool,
    ) -> Result<Vec<ConvId>, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        if !messages.is_empty() {
            let convs: Vec<i64> = messages.iter().map(|m| id_to_db(m.conv.0)).collect();
            let seqs: Vec<i64> = messages.iter().map(|m| m.seq as i64).collect();
            let senders: Vec<&str> = messages.iter().map(|m| m.sender.as_str()).collect();
            let cids: Vec<&str> = messages.iter().map(|m| m.cid.as_str()).collect();
            let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
            let tss: Vec<i64> = messages.iter().map(|m| m.ts as i64).collect();
            let insert = "INSERT INTO messages (conv, seq, sender, cid, body, ts)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[])";
            let stmt = if skip_stored {
                tx.prepare_cached(&format!("{insert} ON CONFLICT DO NOTHING"))
                    .await?
            } else {
                tx.prepare_cached(insert).await?
            };
            tx.execute(&stmt, &[&convs, &seqs, &senders, &cids, &bodies, &tss])
                .await?;
        }
        let rows = EventRows::fold(events);
        if !rows.opened.is_empty() {
            let convs: Vec<i64> = rows.opened.iter().map(|r| id_to_db(r.0 .0)).collect();
            let visitors: Vec<i64> = rows.opened.iter().map(|r| id_to_db(r.1 .0)).collect();
            let tss: Vec<i64> = rows.opened.iter().map(|r| r.2 as i64).collect();
            let sites: Vec<&str> = rows.opened.iter().map(|r| r.3.as_str()).collect();
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO conversations (id, visitor, opened_at, site)
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[])
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            tx.execute(&stmt, &[&convs, &visitors, &tss, &sites])
                .await?;
        }
        let mut fenced = Vec::new();
        if !rows.leases.is_empty() {
            // Only ever up, whatever order batches commit in, and only in the epoch the
            // asking home loaded (a row not updated is a home fenced off).
            let convs: Vec<i64> = rows.leases.iter().map(|r| id_to_db(r.0 .0)).collect();
            let uptos: Vec<i64> = rows.leases.iter().map(|r| r.1 as i64).collect();
            let epochs: Vec<i64> = rows.leases.iter().map(|r| r.2 as i64).collect();
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO seq_leases (conv, upto, epoch)
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[])
                     ON CONFLICT (conv) DO UPDATE SET upto = GREATEST(seq_leases.upto, EXCLUDED.upto)
                     WHERE seq_leases.epoch = EXCLUDED.epoch
                     RETURNING conv",
                )
                .await?;
            let taken: std::collections::HashSet<i64> = tx
                .query(&stmt, &[&convs, &uptos, &epochs])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            fenced.extend(
                rows.leases
                    .iter()
                    .filter(|r| !taken.contains(&id_to_db(r.0 .0)))
                    .map(|r| r.0),
            );
        }
        if !rows.releases.is_empty() {
            // After `leases`: a lease handed back comes down, never below what was used.
            let convs: Vec<i64> = rows.releases.iter().map(|r| id_to_db(r.0 .0)).collect();
            let ats: Vec<i64> = rows.releases.iter().map(|r| r.1 as i64).collect();
            let helds: Vec<i64> = rows.releases.iter().map(|r| r.2 as i64).collect();
            let stmt = tx
                .prepare_cached(
                    "UPDATE seq_leases SET upto = u.at
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, at, held)
                     WHERE seq_leases.conv = u.id AND seq_leases.upto > u.at
                       AND seq_leases.upto <= u.held",
                )
                .await?;
            tx.execute(&stmt, &[&convs, &ats, &helds]).await?;
        }
        if !rows.visitors.is_empty() {
            let ids: Vec<i64> = rows.visitors.iter().map(|r| id_to_db(r.0 .0)).collect();
            let tss: Vec<i64> = rows.visitors.iter().map(|r| r.1 as i64).collect();
            seen(&tx, "visitors", "bigint", &ids, &tss).await?;
        }
        if !rows.agents.is_empty() {
            let ids: Vec<&str> = rows.agents.iter().map(|r| r.0.as_str()).collect();
            let tss: Vec<i64> = rows.agents.iter().map(|r| r.1 as i64).collect();
            seen(&tx, "agents", "text", &ids, &tss).await?;
        }
        if !rows.assigned.is_empty() {
            let set = "agent = u.who, assigned_at = u.ts";
            update_conversations(&tx, set, "", &rows.assigned).await?;
        }
        if !rows.closed.is_empty() {
            let set = "closed_at = u.ts, closed_by = u.who";
            let only_open = "AND conversations.closed_at IS NULL";
            update_conversations(&tx, set, only_open, &rows.closed).await?;
        }
        for (conv, context) in &rows.contexts {
            tx.execute(CONTEXT_SQL, &[&id_to_db(conv.0), context])
                .await?;
        }
        for (conv, score, comment, ts) in &rows.ratings {
            tx.execute(RATING_SQL, &[&id_to_db(conv.0), score, comment, ts])
                .await?;
        }
        tx.commit().await?;
        Ok(fenced)
    }

    pub(crate) async fn conv_head(&self, conv: ConvId) -> Result<Option<ConvHead>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT visitor, agent, closed_at IS NOT NULL, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = $1),
                        (SELECT COALESCE(MAX(upto), 0) FROM seq_leases WHERE conv = $1), site,
                        (SELECT COALESCE(MAX(epoch), 0) FROM seq_leases WHERE conv = $1)
                 FROM conversations WHERE id = $1",
                &[&id_to_db(conv.0)],
            )
            .await?;
        Ok(row.map(|row| ConvHead {
            visitor: VisitorId(id_from_db(row.get(0))),
            agent: row.get(1),
            closed: row.get(2),
            last_seq: row.get::<_, i64>(3) as u64,
            seq_lease: row.get::<_, i64>(4) as u64,
            epoch: row.get::<_, i64>(6) as u64,
            site: site_of_db(row.get(5)),
        }))
    }

    pub(crate) async fn recent_cids(
        &self,
        conv: ConvId,
        n: u32,
    ) -> Result<Vec<SeenCid>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT seq, sender, cid FROM messages WHERE conv = $1 ORDER BY seq DESC LIMIT $2",
                &[&id_to_db(conv.0), &(n as i64)],
            )
            .await?;
        Ok(seen_cids(
            rows.iter()
                .map(|r| SeenCid {
                    seq: r.get::<_, i64>(0) as u64,
                    sender: r.get(1),
                    cid: r.get(2),
                })
                .collect(),
        ))
    }

    pub(crate) async fn take_lease(
        &self,
        conv: ConvId,
        count: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "INSERT INTO seq_leases (conv, upto, epoch)
                 SELECT $1, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = $1) + $2, 1
                 WHERE EXISTS (SELECT 1 FROM conversations WHERE id = $1)
                 ON CONFLICT (conv) DO UPDATE SET upto = GREATEST(seq_leases.upto,
                     (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conv = $1)) + $2,
                     epoch = seq_leases.epoch + 1
                 RETURNING upto, epoch",
                &[&id_to_db(conv.0), &(count as i64)],
            )
            .await?;
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
    }

    pub async fn put_account(&self, a: &AccountRow) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let max = a.max_conversations.map(i64::from);
        let teams = a.teams.join(",");
        c.execute(
            PUT_ACCOUNT_SQL,
            &[
                &a.id,
                &now_ms(),
                &a.site,
                &a.display_name,
                &a.password_hash,
                &a.role,
                &max,
                &i64::from(a.disabled),
                &teams,
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c.query_opt(ACCOUNT_SQL, &[&id]).await?;
        Ok(row.as_ref().map(account_row))
    }

    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.execute(REVOKE_KEY_SQL, &[&id, &now_ms()]).await? == 1)
    }

    pub async fn delete_canned(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.execute(DELETE_CANNED_SQL, &[&id]).await? == 1)
    }

    pub async fn put_webhook(&self, w: &WebhookRow) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            PUT_HOOK_SQL,
            &[
                &w.id,
                &w.url,
                &w.secret,
                &w.events,
                &w.created_by,
                &w.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.query(HOOKS_SQL, &[])
            .await?
            .iter()
            .map(|r| WebhookRow {
                id: r.get(0),
                url: r.get(1),
                secret: r.get(2),
                events: r.get(3),
                created_by: r.get(4),
                created_at: r.get(5),
            })
            .collect())
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.execute(DELETE_HOOK_SQL, &[&id]).await? == 1)
    }

    pub async fn put_dead_letter(&self, d: &DeadLetterRow) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            PUT_DEAD_SQL,
            &[
                &d.id,
                &d.webhook,
                &d.event,
                &d.body,
                &d.attempts,
                &d.last_error,
                &d.failed_at,
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn dead_letters(&self, webhook: &str) -> Result<Vec<DeadLetterRow>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.query(DEAD_SQL, &[&webhook])
            .await?
            .iter()
            .map(|r| DeadLetterRow {
                id: r.get(0),
                webhook: r.get(1),
                event: r.get(2),
                body: r.get(3),
                attempts: r.get(4),
                last_error: r.get(5),
                failed_at: r.get(6),
            })
            .collect())
    }

    pub async fn put_note(&self, n: &NoteRow) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let conv = id_to_db(n.conv.0);
        c.execute(
            PUT_NOTE_SQL,
            &[&n.id, &conv, &n.author, &n.body, &n.created_at],
        )
        .await?;
        Ok(())
    }

    pub async fn notes(&self, conv: i64) -> Result<Vec<NoteRow>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.query(NOTES_SQL, &[&conv])
            .await?
            .iter()
            .map(|r| NoteRow {
                id: r.get(0),
                conv: ConvId(id_from_db(r.get(1))),
                author: r.get(2),
                body: r.get(3),
                created_at: r.get(4),
            })
            .collect())
    }

    pub async fn set_tags(&self, conv: i64, tags: &[String]) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        tx.execute(CLEAR_TAGS_SQL, &[&conv]).await?;
        for t in tags {
            tx.execute(ADD_TAG_SQL, &[&conv, t]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn tags(&self, conv: i64) -> Result<Vec<String>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.query(TAGS_SQL, &[&conv])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    pub async fn disabled_agents(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c.query(DISABLED_SQL, &[&(limit as i64)]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn open_conversations(
        &self,
        after: Option<ConvId>,
        limit: u32,
    ) -> Result<Vec<OpenConv>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let (after, first) = after_id(after);
        let rows = c
            .query(
                "SELECT id, visitor, agent, site FROM conversations
                 WHERE closed_at IS NULL AND ($2 OR id > $1) ORDER BY id LIMIT $3",
                &[&after, &first, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| OpenConv {
                conv: ConvId(id_from_db(r.get(0))),
                visitor: VisitorId(id_from_db(r.get(1))),
                agent: r.get(2),
                site: site_of_db(r.get(3)),
            })
            .collect())
    }

    pub async fn read(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
        from: From,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let (id, after, before, limit) = (
            id_to_db(conv.0),
            after.min(i64::MAX as u64) as i64,
            before.min(i64::MAX as u64) as i64,
            limit as i64,
        );
        let order = match from {
            From::Oldest => "ASC",
            From::Newest => "DESC",
        };
        let stmt = c
            .prepare_cached(&format!(
                "SELECT seq, sender, cid, body, ts FROM messages
                 WHERE conv = $1 AND seq > $2 AND seq < $3 ORDER BY seq {order} LIMIT $4"
            ))
            .await?;
        let rows = c.query(&stmt, &[&id, &after, &before, &limit]).await?;
        let mut out: Vec<StoredMessage> = rows
            .iter()
            .map(|r| StoredMessage {
                conv,
                seq: r.get::<_, i64>(0) as u64,
                sender: r.get(1),
                cid: r.get(2),
                body: r.get(3),
                ts: r.get::<_, i64>(4) as u64,
            })
            .collect();
        if from == From::Newest {
            out.reverse();
        }
        Ok(out)
    }
}

/// Records visitors or agents as seen, keeping each one's newest `last_seen`.
async fn seen(
    tx: &Transaction<'_>,
    table: &'static str,
    id_type: &'static str,
    ids: &(dyn ToSql + Sync),
    tss: &[i64],
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO {table} (id, first_seen, last_seen)
         SELECT id, ts, ts FROM UNNEST($1::{id_type}[], $2::bigint[]) AS u(id, ts)
         ON CONFLICT (id) DO UPDATE SET last_seen = GREATEST({table}.last_seen, EXCLUDED.last_seen)"
    );
    let stmt = tx.prepare_cached(&sql).await?;
    tx.execute(&stmt, &[ids, &tss]).await.map(drop)
}

/// Applies (conversation, who, when) rows to `conversations` with one `UPDATE ... FROM
/// UNNEST`; `set` names the columns from `u.who` and `u.ts`.
async fn update_conversations(
    tx: &Transaction<'_>,
    set: &'static str,
    condition: &'static str,
    rows: &[(ConvId, String, u64)],
) -> Result<(), tokio_postgres::Error> {
    let convs: Vec<i64> = rows.iter().map(|r| id_to_db(r.0 .0)).collect();
    let whos: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let tss: Vec<i64> = rows.iter().map(|r| r.2 as i64).collect();
    let sql = format!(
        "UPDATE conversations SET {set}
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[]) AS u(id, who, ts)
         WHERE conversations.id = u.id {condition}"
    );
    let stmt = tx.prepare_cached(&sql).await?;
    tx.execute(&stmt, &[&convs, &whos, &tss]).await.map(drop)
}

fn account_row(r: &tokio_postgres::Row) -> AccountRow {
    AccountRow {
        id: r.get(0),
        site: r.get(1),
        display_name: r.get(2),
        password_hash: r.get(3),
        role: r.get(4),
        max_conversations: r.get::<_, Option<i64>>(5).map(|v| v as u32),
        disabled: r.get::<_, i64>(6) != 0,
        teams: super::teams_from_db(&r.get::<_, String>(7)),
    }
}
