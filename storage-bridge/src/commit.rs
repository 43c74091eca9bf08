//! Group commit: one task takes persist requests from every gateway connection, gathers
//! them until `batch_max` messages or `batch_delay` have passed, writes them in one
//! transaction, and only then confirms each request. A transient store error (database
//! away, disk full) is retried with backoff, holding the batch: nothing confirmed is lost,
//! and nothing is confirmed that is not committed.
//!
//! Batches commit concurrently but reach the Redis cache in the order they were formed, so
//! each conversation's cached list only ever grows at its newest end (`cache.rs` relies on
//! that when it starts a new namespace).

use crate::cache::Cache;
use crate::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::bridge::{BridgeMsg, ConvEvent, StoredMessage};
use switchboard_protocol::ConvId;
use tokio::sync::{mpsc, watch};

/// One `persist` request and where to confirm it.
pub struct CommitJob {
    pub req: u64,
    pub messages: Vec<StoredMessage>,
    pub events: Vec<ConvEvent>,
    pub reply: mpsc::UnboundedSender<BridgeMsg>,
}

#[derive(Clone)]
pub struct Committer {
    pub store: Arc<Store>,
    pub cache: Option<Cache>,
    pub batch_max: usize,
    pub batch_delay: Duration,
    /// Batches committing at once (each on its own database connection). Gateways settle
    /// answers in request order, so batches may finish in any order.
    pub concurrency: usize,
    /// Told of every committed batch (for the site's webhooks).
    pub webhooks: Option<crate::webhooks::Webhooks>,
}

impl Committer {
    /// Runs until every sender of `rx` is gone and the last batch is written.
    pub async fn run(self, mut rx: mpsc::Receiver<CommitJob>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.concurrency.max(1)));
        // Whose turn it is to write to the cache: batches in the order they were formed.
        let turns = Turns::default();
        let mut turn = 0u64;
        while let Some(first) = rx.recv().await {
            let mut count = first.messages.len();
            let mut jobs = vec![first];
            let deadline = tokio::time::Instant::now() + self.batch_delay;
            while count < self.batch_max {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => {
                        count += job.messages.len();
                        jobs.push(job);
                    }
                    _ => break,
                }
            }
            metrics::gauge!("bridge_commit_queue_depth").set(rx.len() as f64);
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let this = self.clone();
            let turns = turns.clone();
            tokio::spawn(async move {
                this.commit(jobs, turn, &turns).await;
                drop(slot);
            });
            turn += 1;
        }
        let _ = slots.acquire_many(self.concurrency.max(1) as u32).await;
        tracing::info!("committer: drained");
    }

    async fn commit(&self, jobs: Vec<CommitJob>, turn: u64, turns: &Turns) {
        let messages: Vec<StoredMessage> = jobs
            .iter()
            .flat_map(|j| j.messages.iter().cloned())
            .collect();
        let events: Vec<ConvEvent> = jobs.iter().flat_map(|j| j.events.iter().cloned()).collect();
        let mut backoff = Duration::from_millis(50);
        let start = Instant::now();
        let fenced = loop {
            match self.store.persist(messages.clone(), events.clone()).await {
                Ok(fenced) => break fenced,
                Err(e) if e.is_transient() => {
                    metrics::counter!("bridge_store_errors_total", "kind" => "transient")
                        .increment(1);
                    metrics::gauge!("bridge_store_up").set(0.0);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, batch = messages.len(), "store write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    metrics::counter!("bridge_store_errors_total", "kind" => "permanent")
                        .increment(1);
                    tracing::error!(error = %e, batch = messages.len(), "store write failed permanently");
                    self.in_turn(turn, turns, None).await;
                    for j in jobs {
                        let _ = j.reply.send(BridgeMsg::Failed {
                            req: j.req,
                            reason: e.to_string(),
                        });
                    }
                    return;
                }
            }
        };
        metrics::gauge!("bridge_store_up").set(1.0);
        metrics::histogram!("bridge_commit_seconds").record(start.elapsed().as_secs_f64());
        metrics::histogram!("bridge_batch_messages").record(messages.len() as f64);
        metrics::counter!("bridge_messages_persisted_total").increment(messages.len() as u64);
        self.in_turn(turn, turns, Some(&messages)).await;
        if !fenced.is_empty() {
            metrics::counter!("bridge_leases_fenced_total").increment(fenced.len() as u64);
            tracing::info!(
                convs = fenced.len(),
                "lease extensions refused: another node took these conversations"
            );
        }
        for j in jobs {
            // Told before `persisted`: the home forgets them before it would extend.
            let convs: Vec<ConvId> = j
                .events
                .iter()
                .filter_map(|e| match e {
                    ConvEvent::SeqLease { conv, .. } if fenced.contains(conv) => Some(*conv),
                    _ => None,
                })
                .collect();
            if !convs.is_empty() {
                let _ = j.reply.send(BridgeMsg::Fenced { convs });
            }
            let _ = j.reply.send(BridgeMsg::Persisted { req: j.req });
        }
        if let Some(w) = &self.webhooks {
            w.committed(&messages, &events);
        }
    }

    /// Once every earlier batch has had its turn: writes `messages` (committed) to the
    /// cache, then passes the turn on. Without a cache there is nothing to order.
    async fn in_turn(&self, turn: u64, turns: &Turns, messages: Option<&[StoredMessage]>) {
        let Some(cache) = &self.cache else {
            return;
        };
        turns.wait(turn).await;
        if let Some(m) = messages {
            cache.append(m).await;
        }
        turns.pass();
    }
}

/// Numbered turns taken in order: turn n waits until turns 0..n have passed.
#[derive(Clone)]
struct Turns(Arc<watch::Sender<u64>>);

impl Default for Turns {
    fn default() -> Self {
        Turns(Arc::new(watch::channel(0).0))
    }
}

impl Turns {
    async fn wait(&self, turn: u64) {
        // The sender lives in `self`, so waiting cannot fail.
        let _ = self.0.subscribe().wait_for(|next| *next == turn).await;
    }

    fn pass(&self) {
        self.0.send_modify(|next| *next += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_taken_in_order_whatever_order_they_arrive_in() {
        let turns = Turns::default();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for turn in [3u64, 1, 4, 0, 2] {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                turns.wait(turn).await;
                order.lock().unwrap().push(turn);
                turns.pass();
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
