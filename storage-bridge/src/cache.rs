//! The Redis cache of recent messages: per conversation, a list of its newest messages
//! (JSON), newest first, trimmed to a bound. It is written after each commit (before the
//! ack) and read first for history; any doubt sends the read to the database, so
//! everything works without Redis, and a wrong answer is worse than a miss.
//!
//! What could make a cached list wrong, and what stops it:
//! - Writes made while the cache was not in use (Redis down, or another bridge process
//!   before this one): each time the bridge (re)starts using Redis it opens a new
//!   *namespace* (`{prefix}e{N}:`, N from `INCR {prefix}epoch`), so a list only ever holds
//!   what this process wrote into it. Older namespaces are deleted in the background.
//! - A write that failed or was skipped: the namespace is abandoned (failed) or was not
//!   open (skipped), so later writes go to a new one whose lists start above it; and the
//!   conversation gets a *hole* at the batch's highest seq, its list answering only once
//!   everything at or below the hole is trimmed out of it. Both rest on batches reaching
//!   the cache in the order they were formed (`commit.rs`), so a list only ever grows at
//!   its newest end.
//! - Redis restarted and restored an older snapshot, or lost everything: every write also
//!   increments the namespace's write counter; a read that finds the counter lower than a
//!   value already seen knows writes were lost, and abandons the namespace.
//! - Any Redis error abandons the namespace too; a new one is opened on the next use, at
//!   most once a second.

use crate::store::From;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use switchboard_protocol::bridge::StoredMessage;
use switchboard_protocol::ConvId;

/// How often a lost Redis connection or namespace is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Lists and counters expire this long after their last write.
const TTL_SECONDS: i64 = 7 * 24 * 3600;

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    keep: usize,
    prefix: String,
    /// Set once the first connection succeeds; it reconnects by itself after that.
    conn: OnceLock<ConnectionManager>,
    /// Why a mutex: the cache is shared by the bridge's tokio tasks; never held across an
    /// await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The namespace in use; `None` before the first one and after an abandoned one.
    epoch: Option<u64>,
    /// The highest value of the namespace's write counter seen in a reply.
    writes_seen: u64,
    /// A namespace is being opened (only one at a time), and when that was last tried.
    opening: bool,
    last_open_try: Option<Instant>,
    /// Per conversation, the highest seq whose cache write failed or was skipped.
    holes: HashMap<ConvId, u64>,
}

/// A namespace ready for one operation.
struct Namespace {
    conn: ConnectionManager,
    epoch: u64,
    writes_seen: u64,
}

impl Cache {
    /// The cache at `url`. Connects once before returning (so a bridge started with Redis
    /// up caches from its first message); if Redis is not answering it keeps trying in the
    /// background and works without the cache meanwhile. Fails only on a malformed URL.
    pub async fn start(url: &str, keep: usize, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let cache = Cache {
            inner: Arc::new(Inner {
                keep: keep.max(1),
                prefix: prefix.to_string(),
                conn: OnceLock::new(),
                state: Mutex::new(State::default()),
            }),
        };
        metrics::gauge!("bridge_cache_up").set(0.0);
        match connect(&client).await {
            Ok(conn) => {
                let _ = cache.inner.conn.set(conn);
                cache.open().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis unavailable at start; running without the cache until it answers");
                let cache = cache.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(RETRY).await;
                        if let Ok(conn) = connect(&client).await {
                            let _ = cache.inner.conn.set(conn);
                            tracing::info!("redis answers; caching recent messages");
                            cache.open().await;
                            return;
                        }
                    }
                });
            }
        }
        Ok(cache)
    }

    /// Adds committed messages (in seq order per conversation). Best effort: a batch not
    /// written leaves a hole in its conversations.
    pub async fn append(&self, messages: &[StoredMessage]) {
        if messages.is_empty() {
            return;
        }
        let Some(mut ns) = self.namespace() else {
            self.holes(messages);
            return;
        };
        // One LPUSH per conversation with its messages in seq order (the list ends newest
        // first, as with one LPUSH each), then its trim and expiry.
        let mut by_conv: HashMap<ConvId, Vec<String>> = HashMap::new();
        for m in messages {
            let json = serde_json::to_string(m).expect("serialises");
            by_conv.entry(m.conv).or_default().push(json);
        }
        let mut pipe = redis::pipe();
        for (conv, values) in by_conv {
            let k = self.list_key(ns.epoch, conv);
            pipe.lpush(&k, values).ignore();
            pipe.ltrim(&k, 0, self.inner.keep as isize - 1).ignore();
            pipe.expire(&k, TTL_SECONDS).ignore();
        }
        let writes = self.writes_key(ns.epoch);
        pipe.incr(&writes, 1u64)
            .expire(&writes, TTL_SECONDS)
            .ignore();
        match pipe.query_async::<(u64,)>(&mut ns.conn).await {
            Ok((count,)) => {
                let mut state = self.state();
                if state.epoch == Some(ns.epoch) {
                    state.writes_seen = state.writes_seen.max(count);
                }
            }
            Err(e) => {
                metrics::counter!("bridge_cache_errors_total").increment(1);
                tracing::debug!(error = %e, "cache write failed");
                self.holes(messages);
                self.abandon(ns.epoch, "error");
            }
        }
    }

    /// Messages with `after < seq < before`, `limit` of them from `from`, oldest first, if
    /// the cache certainly holds all of them; `None` means "ask the database".
    pub async fn range(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
        from: From,
    ) -> Option<Vec<StoredMessage>> {
        let mut ns = self.namespace()?;
        let reply = redis::pipe()
            .get(self.writes_key(ns.epoch))
            .lrange(self.list_key(ns.epoch, conv), 0, -1)
            .query_async::<(Option<u64>, Vec<String>)>(&mut ns.conn)
            .await;
        let (writes, raw) = match reply {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("bridge_cache_errors_total").increment(1);
                tracing::debug!(error = %e, "cache read failed");
                self.abandon(ns.epoch, "error");
                return None;
            }
        };
        if writes.unwrap_or(0) < ns.writes_seen {
            tracing::warn!(
                epoch = ns.epoch,
                "the cache lost writes (Redis restarted?); starting a new namespace"
            );
            self.abandon(ns.epoch, "lost_writes");
            return None;
        }
        let mut cached: Vec<StoredMessage> = raw
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        cached.sort_by_key(|m| m.seq);
        cached.dedup_by_key(|m| m.seq);
        let hole = self.hole(conv);
        if let (Some(h), Some(oldest)) = (hole, cached.first()) {
            if h < oldest.seq {
                // Every message the hole stands for is older than the list: it is moot.
                self.state().holes.remove(&conv);
            }
        }
        let answer = answer_from(&cached, hole, after, before, limit, from);
        match &answer {
            Some(_) => metrics::counter!("bridge_cache_hits_total").increment(1),
            None => metrics::counter!("bridge_cache_misses_total").increment(1),
        }
        answer
    }

    /// The namespace in use, if any. Without one it opens a new one in the background (at
    /// most once per `RETRY`): no commit waits on a Redis that does not answer.
    fn namespace(&self) -> Option<Namespace> {
        let conn = self.inner.conn.get()?;
        let mut state = self.state();
        if let Some(epoch) = state.epoch {
            return Some(Namespace {
                conn: conn.clone(),
                epoch,
                writes_seen: state.writes_seen,
            });
        }
        if !state.opening && state.last_open_try.is_none_or(|t| t.elapsed() >= RETRY) {
            state.opening = true;
            state.last_open_try = Some(Instant::now());
            let cache = self.clone();
            tokio::spawn(async move { cache.open().await });
        }
        None
    }

    /// Opens a new namespace: a number no process has used under this prefix.
    async fn open(&self) {
        let Some(mut conn) = self.inner.conn.get().cloned() else {
            return;
        };
        let opened: Result<u64, _> = redis::cmd("INCR")
            .arg(format!("{}epoch", self.inner.prefix))
            .query_async(&mut conn)
            .await;
        let mut state = self.state();
        state.opening = false;
        match opened {
            Ok(epoch) => {
                state.epoch = Some(epoch);
                state.writes_seen = 0;
                drop(state);
                metrics::gauge!("bridge_cache_up").set(1.0);
                tracing::info!(epoch, "cache namespace opened");
                tokio::spawn(delete_other_namespaces(
                    conn,
                    self.inner.prefix.clone(),
                    epoch,
                ));
            }
            Err(e) => {
                metrics::counter!("bridge_cache_errors_total").increment(1);
                tracing::debug!(error = %e, "opening a cache namespace failed");
            }
        }
    }

    fn abandon(&self, epoch: u64, reason: &'static str) {
        let mut state = self.state();
        if state.epoch == Some(epoch) {
            state.epoch = None;
            metrics::gauge!("bridge_cache_up").set(0.0);
            metrics::counter!("bridge_cache_resets_total", "reason" => reason).increment(1);
        }
    }

    fn holes(&self, messages: &[StoredMessage]) {
        let mut state = self.state();
        for m in messages {
            let hole = state.holes.entry(m.conv).or_insert(0);
            *hole = (*hole).max(m.seq);
        }
    }

    fn hole(&self, conv: ConvId) -> Option<u64> {
        self.state().holes.get(&conv).copied()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list_key(&self, epoch: u64, conv: ConvId) -> String {
        format!("{}e{epoch}:conv:{conv}:recent", self.inner.prefix)
    }

    fn writes_key(&self, epoch: u64) -> String {
        format!("{}e{epoch}:writes", self.inner.prefix)
    }
}

async fn connect(client: &redis::Client) -> Result<ConnectionManager, redis::RedisError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1))
        .set_number_of_retries(1);
    ConnectionManager::new_with_config(client.clone(), config).await
}

/// The answer a conversation's cached list (sorted by seq, no repeats) gives, if it
/// certainly has it: no hole at or above its oldest message, no gap, and reaching back
/// far enough.
fn answer_from(
    cached: &[StoredMessage],
    hole: Option<u64>,
    after: u64,
    before: u64,
    limit: u32,
    from: From,
) -> Option<Vec<StoredMessage>> {
    let oldest = cached.first()?.seq;
    if hole.is_some_and(|h| h >= oldest) {
        return None;
    }
    if !cached.windows(2).all(|w| w[1].seq == w[0].seq + 1) {
        return None;
    }
    let wanted: Vec<&StoredMessage> = cached
        .iter()
        .filter(|m| m.seq > after && m.seq < before)
        .collect();
    if from == From::Oldest {
        // Reading forward from `after`: only if the list reaches back to it.
        if oldest > after.saturating_add(1) {
            return None;
        }
        return Some(wanted.into_iter().take(limit as usize).cloned().collect());
    }
    if oldest > after + 1 && wanted.len() < limit as usize {
        return None;
    }
    let skip = wanted.len().saturating_sub(limit as usize);
    Some(wanted.into_iter().skip(skip).cloned().collect())
}

/// Deletes every key under `prefix` but the namespace counter and namespace `epoch`'s
/// keys: what earlier processes (or abandoned namespaces) left. Best effort.
async fn delete_other_namespaces(mut conn: ConnectionManager, prefix: String, epoch: u64) {
    let keep = format!("{prefix}e{epoch}:");
    let counter = format!("{prefix}epoch");
    let mut cursor = 0u64;
    let mut deleted = 0usize;
    loop {
        let (next, keys): (u64, Vec<String>) = match redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "cleaning old cache namespaces stopped");
                return;
            }
        };
        let old: Vec<&String> = keys
            .iter()
            .filter(|k| !k.starts_with(&keep) && **k != counter)
            .collect();
        if !old.is_empty() {
            deleted += old.len();
            let _ = redis::cmd("UNLINK")
                .arg(old)
                .query_async::<()>(&mut conn)
                .await;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if deleted > 0 {
        tracing::info!(deleted, "deleted the keys of earlier cache namespaces");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(seqs: impl IntoIterator<Item = u64>) -> Vec<StoredMessage> {
        seqs.into_iter()
            .map(|seq| StoredMessage {
                conv: ConvId(1),
                seq,
                sender: "v1".into(),
                cid: format!("c{seq}"),
                body: String::new(),
                ts: seq,
            })
            .collect()
    }

    fn seqs(answer: Option<Vec<StoredMessage>>) -> Option<Vec<u64>> {
        answer.map(|a| a.iter().map(|m| m.seq).collect())
    }

    #[test]
    fn a_contiguous_list_answers_what_it_holds() {
        let cached = list(11..=20);
        assert_eq!(
            seqs(answer_from(&cached, None, 0, u64::MAX, 3, From::Newest)),
            Some(vec![18, 19, 20])
        );
        assert_eq!(
            seqs(answer_from(&cached, None, 12, 15, 10, From::Newest)),
            Some(vec![13, 14])
        );
        // Reaching below the oldest cached message with room left: the database's.
        assert_eq!(
            seqs(answer_from(&cached, None, 0, 15, 10, From::Newest)),
            None
        );
        assert_eq!(
            seqs(answer_from(&[], None, 0, u64::MAX, 10, From::Newest)),
            None
        );
        // Reading forward: the oldest after `after`, only when the list reaches back to it.
        assert_eq!(
            seqs(answer_from(&cached, None, 12, u64::MAX, 3, From::Oldest)),
            Some(vec![13, 14, 15])
        );
        assert_eq!(
            seqs(answer_from(&cached, None, 9, u64::MAX, 3, From::Oldest)),
            None
        );
    }

    #[test]
    fn a_gap_or_a_hole_inside_the_list_sends_the_read_to_the_database() {
        let mut gapped = list(1..=5);
        gapped.extend(list(7..=9));
        assert_eq!(
            seqs(answer_from(&gapped, None, 0, u64::MAX, 2, From::Newest)),
            None
        );
        // A failed write of 11..=20 while a lower batch landed: 1..=10 looks whole but is not.
        let cached = list(1..=10);
        assert_eq!(
            seqs(answer_from(&cached, Some(20), 0, u64::MAX, 2, From::Newest)),
            None
        );
        // Once the list starts above the hole it answers again.
        let cached = list(21..=30);
        assert_eq!(
            seqs(answer_from(&cached, Some(20), 0, u64::MAX, 2, From::Newest)),
            Some(vec![29, 30])
        );
    }
}
