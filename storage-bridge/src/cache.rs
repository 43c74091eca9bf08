//! The Redis cache of recent messages: per conversation, a list of its newest messages
//! (JSON), newest first, trimmed to a bound. It is written after each commit and read first
//! for history and resume; any Redis failure falls back to the database, so everything
//! works without Redis.

use redis::aio::ConnectionManager;
use switchboard_protocol::bridge::StoredMessage;
use switchboard_protocol::ConvId;

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    keep: usize,
    prefix: String,
    /// Conversations whose cached list may miss a write: read from the database until the
    /// process restarts. Why a mutex: the cache is shared by the bridge's tokio tasks.
    dirty: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<ConvId>>>,
}

fn key(prefix: &str, conv: ConvId) -> String {
    format!("{prefix}conv:{conv}:recent")
}

impl Cache {
    pub async fn connect(url: &str, keep: usize, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(1))
            .set_response_timeout(std::time::Duration::from_secs(1))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            keep: keep.max(1),
            prefix: prefix.to_string(),
            dirty: Default::default(),
        })
    }

    /// Adds committed messages (in seq order per conversation). Best effort.
    pub async fn append(&self, messages: &[StoredMessage]) {
        if messages.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        let mut convs = Vec::new();
        for m in messages {
            let k = key(&self.prefix, m.conv);
            pipe.lpush(&k, serde_json::to_string(m).expect("serialises"))
                .ignore();
            if !convs.contains(&m.conv) {
                convs.push(m.conv);
            }
        }
        for c in convs {
            let k = key(&self.prefix, c);
            pipe.ltrim(&k, 0, self.keep as isize - 1).ignore();
            pipe.expire(&k, 7 * 24 * 3600).ignore();
        }
        let mut conn = self.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            metrics::counter!("bridge_cache_errors_total").increment(1);
            tracing::debug!(error = %e, "cache write failed");
            let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            dirty.extend(messages.iter().map(|m| m.conv));
        }
    }

    /// Messages with `after < seq < before`, the newest `limit`, oldest first, if the cache
    /// certainly holds all of them; `None` means "ask the database".
    pub async fn range(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
    ) -> Option<Vec<StoredMessage>> {
        if self
            .dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&conv)
        {
            return None;
        }
        let mut conn = self.conn.clone();
        let raw: Vec<String> = match redis::cmd("LRANGE")
            .arg(key(&self.prefix, conv))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("bridge_cache_errors_total").increment(1);
                tracing::debug!(error = %e, "cache read failed");
                return None;
            }
        };
        let mut cached: Vec<StoredMessage> = raw
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        cached.sort_by_key(|m| m.seq);
        cached.dedup_by_key(|m| m.seq);
        let oldest = cached.first()?.seq;
        // Contiguous and reaching back far enough?
        let contiguous = cached.windows(2).all(|w| w[1].seq == w[0].seq + 1);
        let wanted: Vec<StoredMessage> = cached
            .into_iter()
            .filter(|m| m.seq > after && m.seq < before)
            .collect();
        let reaches = oldest <= after + 1 || wanted.len() >= limit as usize;
        if !contiguous || !reaches {
            metrics::counter!("bridge_cache_misses_total").increment(1);
            return None;
        }
        metrics::counter!("bridge_cache_hits_total").increment(1);
        let skip = wanted.len().saturating_sub(limit as usize);
        Some(wanted.into_iter().skip(skip).collect())
    }
}
