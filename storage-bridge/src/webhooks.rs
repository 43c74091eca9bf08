//! Outbound webhooks: the site's other systems subscribe to what happens (a message, a
//! conversation opened, assigned or closed) and get each as an HMAC-signed JSON `POST`,
//! retried with backoff; a delivery that fails every attempt is kept as a dead letter,
//! visible in the API.
//!
//! Events are announced only once committed (the committer calls [`Webhooks::committed`]),
//! never in the way of storage: with no subscription nothing is built, and a full queue
//! drops the event (counted in `bridge_webhook_events_total{outcome="dropped"}`).
//!
//! A delivery is `POST <url>` with `Content-Type: application/json`, the event's name in
//! `X-Switchboard-Event`, a delivery id in `X-Switchboard-Delivery` (the same on every
//! retry: receivers dedupe on it) and `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of
//! the body under the webhook's secret>`.

use crate::store::{DeadLetterRow, Store, WebhookRow};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use switchboard_protocol::bridge::{ConvEvent, StoredMessage};
use tokio::sync::{mpsc, Semaphore};

/// The events a webhook may subscribe to.
pub const EVENTS: [&str; 5] = [
    "message",
    "conversation.opened",
    "conversation.assigned",
    "conversation.closed",
    "rating",
];

/// Deliveries in flight at once, at most.
const IN_FLIGHT: usize = 64;

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Before the second attempt; doubled before each next one.
    pub backoff: Duration,
}

struct Event {
    name: &'static str,
    data: serde_json::Value,
}

/// The subscriptions and the queue of events to deliver. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    subs: Arc<RwLock<Vec<WebhookRow>>>,
    tx: mpsc::Sender<Event>,
    store: Arc<Store>,
}

impl Webhooks {
    /// Loads the subscriptions and starts delivering.
    pub async fn start(store: Arc<Store>, retry: Retry) -> Result<Self, crate::store::StoreError> {
        let subs = Arc::new(RwLock::new(store.webhooks().await?));
        let (tx, rx) = mpsc::channel(10_000);
        metrics::counter!("bridge_webhook_events_total", "outcome" => "dropped").absolute(0);
        tokio::spawn(deliver_all(rx, subs.clone(), store.clone(), retry));
        Ok(Self { subs, tx, store })
    }

    /// Reads the subscriptions again (after the API changed them).
    pub async fn reload(&self) -> Result<(), crate::store::StoreError> {
        let fresh = self.store.webhooks().await?;
        *self.subs.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// A batch was committed: its messages and conversation events, for whoever subscribed.
    pub fn committed(&self, messages: &[StoredMessage], events: &[ConvEvent]) {
        let subs = self.subs.read().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return; // the usual case: one read of a lock per batch, nothing built
        }
        let wanted = |name: &str| subs.iter().any(|s| s.events.split(',').any(|e| e == name));
        let mut out = Vec::new();
        if wanted("message") {
            out.extend(messages.iter().map(|m| Event {
                name: "message",
                data: serde_json::json!({"conv": m.conv, "seq": m.seq, "from": m.sender,
                    "cid": m.cid, "body": m.body, "ts": m.ts}),
            }));
        }
        for e in events {
            let (name, data) = match e {
                ConvEvent::Opened {
                    conv,
                    visitor,
                    ts,
                    site,
                    ..
                } => (
                    "conversation.opened",
                    serde_json::json!({"conv": conv, "visitor": visitor, "ts": ts,
                        "site": site.as_deref().unwrap_or(switchboard_protocol::token::DEFAULT_SITE)}),
                ),
                ConvEvent::Assigned { conv, agent, ts } => (
                    "conversation.assigned",
                    serde_json::json!({"conv": conv, "agent": agent, "ts": ts}),
                ),
                ConvEvent::Closed { conv, by, ts } => (
                    "conversation.closed",
                    serde_json::json!({"conv": conv, "by": by, "ts": ts}),
                ),
                ConvEvent::Rated {
                    conv,
                    score,
                    comment,
                    ts,
                } => (
                    "rating",
                    serde_json::json!({"conv": conv, "score": score, "comment": comment, "ts": ts}),
                ),
                ConvEvent::SeqLease { .. }
                | ConvEvent::SeqRelease { .. }
                | ConvEvent::Context { .. } => continue,
            };
            if wanted(name) {
                out.push(Event { name, data });
            }
        }
        drop(subs);
        for e in out {
            if self.tx.try_send(e).is_err() {
                metrics::counter!("bridge_webhook_events_total", "outcome" => "dropped")
                    .increment(1);
            }
        }
    }
}

/// The hex HMAC-SHA256 of `body` under `secret`, as `X-Switchboard-Signature` carries it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    crate::random::hex(&mac.finalize().into_bytes())
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Event>,
    subs: Arc<RwLock<Vec<WebhookRow>>>,
    store: Arc<Store>,
    retry: Retry,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(event) = rx.recv().await {
        let targets: Vec<WebhookRow> = {
            let subs = subs.read().unwrap_or_else(|p| p.into_inner());
            subs.iter()
                .filter(|s| s.events.split(',').any(|e| e == event.name))
                .cloned()
                .collect()
        };
        for hook in targets {
            let body = serde_json::json!({
                "event": event.name,
                "webhook": hook.id,
                "at": crate::store::now_ms(),
                "data": event.data,
            })
            .to_string();
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (client, store) = (client.clone(), store.clone());
            let name = event.name;
            tokio::spawn(async move {
                deliver(&client, &store, &hook, name, body, retry).await;
                drop(permit);
            });
        }
    }
}

/// One event to one webhook: attempts with backoff, then a dead letter.
async fn deliver(
    client: &reqwest::Client,
    store: &Store,
    hook: &WebhookRow,
    event: &'static str,
    body: String,
    retry: Retry,
) {
    let delivery = crate::random::id('d');
    let signature = format!("sha256={}", sign(&hook.secret, body.as_bytes()));
    let mut wait = retry.backoff;
    let mut last_error = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        let sent = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-switchboard-event", event)
            .header("x-switchboard-delivery", &delivery)
            .header("x-switchboard-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("bridge_webhook_deliveries_total", "outcome" => "delivered")
                    .increment(1);
                return;
            }
            Ok(r) => last_error = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last_error = format!("{e}"),
        }
        metrics::counter!("bridge_webhook_deliveries_total", "outcome" => "retried").increment(1);
        if attempt < retry.attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    metrics::counter!("bridge_webhook_deliveries_total", "outcome" => "dead").increment(1);
    tracing::warn!(webhook = %hook.id, event, error = %last_error, "webhook delivery failed every attempt; kept as a dead letter");
    let dead = DeadLetterRow {
        id: delivery,
        webhook: hook.id.clone(),
        event: event.to_owned(),
        body,
        attempts: i64::from(retry.attempts.max(1)),
        last_error,
        failed_at: crate::store::now_ms(),
    };
    if let Err(e) = store.put_dead_letter(dead).await {
        tracing::warn!(error = %e, "dead letter not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::sign;

    #[test]
    fn signatures_are_the_rfc_4231_hmac() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
