//! Group commit: one task takes persist requests from every gateway connection, gathers
//! them until `batch_max` messages or `batch_delay` have passed, writes them in one
//! transaction, and only then confirms each request. A transient store error (database
//! away, disk full) is retried with backoff, holding the batch: nothing confirmed is lost,
//! and nothing is confirmed that is not committed.

use crate::cache::Cache;
use crate::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_protocol::bridge::{BridgeMsg, ConvEvent, StoredMessage};
use tokio::sync::mpsc;

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
}

impl Committer {
    /// Runs until every sender of `rx` is gone and the last batch is written.
    pub async fn run(self, mut rx: mpsc::Receiver<CommitJob>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.concurrency.max(1)));
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
            tokio::spawn(async move {
                this.commit(jobs).await;
                drop(slot);
            });
        }
        let _ = slots.acquire_many(self.concurrency.max(1) as u32).await;
        tracing::info!("committer: drained");
    }

    async fn commit(&self, jobs: Vec<CommitJob>) {
        let messages: Vec<StoredMessage> = jobs
            .iter()
            .flat_map(|j| j.messages.iter().cloned())
            .collect();
        let events: Vec<ConvEvent> = jobs.iter().flat_map(|j| j.events.iter().cloned()).collect();
        let mut backoff = Duration::from_millis(50);
        let start = Instant::now();
        loop {
            match self.store.persist(messages.clone(), events.clone()).await {
                Ok(()) => break,
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
                    for j in jobs {
                        let _ = j.reply.send(BridgeMsg::Failed {
                            req: j.req,
                            reason: e.to_string(),
                        });
                    }
                    return;
                }
            }
        }
        metrics::gauge!("bridge_store_up").set(1.0);
        metrics::histogram!("bridge_commit_seconds").record(start.elapsed().as_secs_f64());
        metrics::histogram!("bridge_batch_messages").record(messages.len() as f64);
        metrics::counter!("bridge_messages_persisted_total").increment(messages.len() as u64);
        if let Some(cache) = &self.cache {
            cache.append(&messages).await;
        }
        for j in jobs {
            let _ = j.reply.send(BridgeMsg::Persisted { req: j.req });
        }
    }
}
