//! The home shard's side of durability, sans-IO: what to ask the storage bridge, and what is
//! waiting for its answers.
//!
//! Messages sequenced while one batch of shard work runs go out as one `persist` request
//! (the runtime takes requests after each batch). Acks wait in their conversation until the
//! bridge confirms their seq. Conversations the shard does not hold (after a restart) are
//! loaded from the store; frames for them wait until it answers.

use crate::conn::ConnKey;
use crate::messages::HomeMsg as ShardMsg; // What waits for a load is for the home role.
use crate::routing::ShardId;
use std::collections::{HashMap, HashSet};
use switchboard_protocol::bridge::{BridgeMsg, ConvEvent, OpenConv, StoredMessage};
use switchboard_protocol::ConvId;

/// Forget this many conversations known to be absent from the store before starting over.
const MISSING_REMEMBERED: usize = 10_000;

/// What a store read was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// A `resume` reaching past the window: replay stored messages, then the window.
    Resume {
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        last_seq: u64,
    },
    /// A client's `history` request.
    History {
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        before: u64,
        limit: u32,
    },
}

#[derive(Debug)]
struct PersistInFlight {
    /// The newest seq of each conversation in the batch.
    heads: Vec<(ConvId, u64)>,
    count: usize,
    /// The bridge's answer, once it came: committed or failed.
    outcome: Option<bool>,
}

/// A persist batch, resolved in request order.
#[derive(Debug, PartialEq, Eq)]
pub struct PersistOutcome {
    pub heads: Vec<(ConvId, u64)>,
    pub ok: bool,
}

/// Requests to the bridge and the state waiting on them.
#[derive(Debug, Default)]
pub struct StoreLink {
    next_req: u64,
    batch_messages: Vec<StoredMessage>,
    batch_events: Vec<ConvEvent>,
    out: Vec<BridgeMsg>,
    /// In request order: the bridge may commit batches concurrently and answer out of
    /// order, but a conversation is confirmed up to a seq only once every earlier batch is.
    persisting: std::collections::BTreeMap<u64, PersistInFlight>,
    /// Messages sent to the bridge and not yet confirmed (the bounded buffer).
    pub unconfirmed: usize,
    /// Frames for conversations being loaded, in arrival order.
    pub loading: HashMap<ConvId, Vec<(ShardId, ShardMsg)>>,
    load_reqs: HashMap<u64, ConvId>,
    /// Conversations the store does not have.
    missing: HashSet<ConvId>,
    reads: HashMap<u64, Wait>,
    /// The start-up listing of open conversations, while it is asked.
    listing: Option<u64>,
}

/// What a bridge answer resolved.
#[derive(Debug)]
pub enum Resolved {
    /// Persist batches now settled, oldest first: durable (each conversation up to its
    /// seq) or failed for good (their acks become errors).
    Persist(Vec<PersistOutcome>),
    /// A conversation load finished (the info is in the bridge message), with its frames.
    Loaded(ConvId, Vec<(ShardId, ShardMsg)>),
    /// A conversation load failed; its frames must be refused.
    LoadFailed(ConvId, Vec<(ShardId, ShardMsg)>),
    /// The open conversations listed at start (`None`: the listing failed).
    OpenConvs(Option<Vec<OpenConv>>),
    /// A store read finished (`None`: it failed).
    Read(Wait, Option<Vec<StoredMessage>>),
    /// Nothing known (a late or duplicate answer).
    Nothing,
}

impl StoreLink {
    fn req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    /// Messages queued or in flight: the caller refuses new ones past its limit.
    pub fn backlog(&self) -> usize {
        self.unconfirmed + self.batch_messages.len()
    }

    pub fn record(&mut self, m: StoredMessage) {
        self.batch_messages.push(m);
    }

    pub fn event(&mut self, e: ConvEvent) {
        self.batch_events.push(e);
    }

    pub fn is_missing(&self, conv: ConvId) -> bool {
        self.missing.contains(&conv)
    }

    pub fn created(&mut self, conv: ConvId) {
        self.missing.remove(&conv);
    }

    /// Parks `msg` until `conv` is loaded; asks the store on the first one.
    pub fn park(&mut self, conv: ConvId, from: ShardId, msg: ShardMsg, recent: u32) {
        let waiting = self.loading.entry(conv).or_default();
        waiting.push((from, msg));
        if waiting.len() == 1 {
            let req = self.req();
            self.load_reqs.insert(req, conv);
            self.out.push(BridgeMsg::LoadConv { req, conv, recent });
        }
    }

    /// Whether the start-up listing is asked and not answered yet.
    pub fn is_listing(&self) -> bool {
        self.listing.is_some()
    }

    /// Asks for the open conversations (the dispatcher, after a restart).
    pub fn list_open(&mut self, limit: u32) {
        let req = self.req();
        self.listing = Some(req);
        self.out.push(BridgeMsg::OpenConvs { req, limit });
    }

    pub fn read(&mut self, wait: Wait, conv: ConvId, after: u64, before: u64, limit: u32) {
        let req = self.req();
        self.reads.insert(req, wait);
        self.out.push(BridgeMsg::History {
            req,
            conv,
            after,
            before,
            limit,
        });
    }

    /// Requests for the bridge since the last call; the batch so far becomes one `persist`.
    pub fn take_requests(&mut self) -> Vec<BridgeMsg> {
        if !self.batch_messages.is_empty() || !self.batch_events.is_empty() {
            let req = self.req();
            let messages = std::mem::take(&mut self.batch_messages);
            let events = std::mem::take(&mut self.batch_events);
            let heads = heads_of(&messages);
            self.unconfirmed += messages.len();
            self.persisting.insert(
                req,
                PersistInFlight {
                    heads,
                    count: messages.len(),
                    outcome: None,
                },
            );
            self.out.push(BridgeMsg::Persist {
                req,
                messages,
                events,
            });
        }
        std::mem::take(&mut self.out)
    }

    pub fn has_requests(&self) -> bool {
        !self.out.is_empty() || !self.batch_messages.is_empty() || !self.batch_events.is_empty()
    }

    /// Records a persist answer and releases every settled batch at the front.
    fn settle(&mut self, req: u64, ok: bool) -> Resolved {
        match self.persisting.get_mut(&req) {
            Some(p) if p.outcome.is_none() => p.outcome = Some(ok),
            _ => return Resolved::Nothing,
        }
        let mut out = Vec::new();
        while let Some(entry) = self.persisting.first_entry() {
            let Some(ok) = entry.get().outcome else { break };
            let p = entry.remove();
            self.unconfirmed -= p.count;
            out.push(PersistOutcome { heads: p.heads, ok });
        }
        if out.is_empty() {
            Resolved::Nothing
        } else {
            Resolved::Persist(out)
        }
    }

    /// Matches a bridge answer with what waited for it.
    pub fn resolve(&mut self, msg: &BridgeMsg) -> Resolved {
        match msg {
            BridgeMsg::Persisted { req } => self.settle(*req, true),
            BridgeMsg::ConvLoaded { req, conv, info } => {
                if self.load_reqs.remove(req).is_none() {
                    return Resolved::Nothing;
                }
                if info.is_none() {
                    if self.missing.len() >= MISSING_REMEMBERED {
                        self.missing.clear();
                    }
                    self.missing.insert(*conv);
                }
                Resolved::Loaded(*conv, self.loading.remove(conv).unwrap_or_default())
            }
            BridgeMsg::OpenConvsAre { req, convs } if self.listing == Some(*req) => {
                self.listing = None;
                Resolved::OpenConvs(Some(convs.clone()))
            }
            BridgeMsg::HistoryIs { req, messages, .. } => match self.reads.remove(req) {
                Some(w) => Resolved::Read(w, Some(messages.clone())),
                None => Resolved::Nothing,
            },
            BridgeMsg::Failed { req, .. } => {
                if self.persisting.contains_key(req) {
                    self.settle(*req, false)
                } else if let Some(conv) = self.load_reqs.remove(req) {
                    Resolved::LoadFailed(conv, self.loading.remove(&conv).unwrap_or_default())
                } else if self.listing == Some(*req) {
                    self.listing = None;
                    Resolved::OpenConvs(None)
                } else if let Some(w) = self.reads.remove(req) {
                    Resolved::Read(w, None)
                } else {
                    Resolved::Nothing
                }
            }
            _ => Resolved::Nothing,
        }
    }
}

/// The newest seq of each conversation among `messages`, by conversation. Derived once per
/// batch (a sort: 3-18 ns per message for 16-30,000 messages, about what keeping an index
/// up to date per message cost).
fn heads_of(messages: &[StoredMessage]) -> Vec<(ConvId, u64)> {
    let mut heads: Vec<(ConvId, u64)> = messages.iter().map(|m| (m.conv, m.seq)).collect();
    // Newest first within a conversation, so that `dedup` keeps each one's head.
    heads.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    heads.dedup_by_key(|h| h.0);
    heads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(conv: u64, seq: u64) -> StoredMessage {
        StoredMessage {
            conv: ConvId(conv),
            seq,
            sender: "v".into(),
            cid: seq.to_string(),
            body: "b".into(),
            ts: 0,
        }
    }

    #[test]
    fn a_batch_becomes_one_persist_and_confirms_its_heads() {
        let mut l = StoreLink::default();
        l.record(m(1, 1));
        l.record(m(2, 5));
        l.record(m(1, 2));
        assert_eq!(l.backlog(), 3);
        let reqs = l.take_requests();
        assert_eq!(reqs.len(), 1);
        let BridgeMsg::Persist { req, messages, .. } = &reqs[0] else {
            panic!()
        };
        assert_eq!(messages.len(), 3);
        assert_eq!(l.unconfirmed, 3);
        assert!(l.take_requests().is_empty(), "nothing new");
        match l.resolve(&BridgeMsg::Persisted { req: *req }) {
            Resolved::Persist(o) => assert_eq!(
                o,
                vec![PersistOutcome {
                    heads: vec![(ConvId(1), 2), (ConvId(2), 5)],
                    ok: true
                }]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.unconfirmed, 0);
        assert!(
            matches!(
                l.resolve(&BridgeMsg::Persisted { req: *req }),
                Resolved::Nothing
            ),
            "answered once"
        );
        // The next batch starts with no heads of its own.
        l.record(m(2, 6));
        let BridgeMsg::Persist { req, .. } = l.take_requests().remove(0) else {
            panic!()
        };
        match l.resolve(&BridgeMsg::Persisted { req }) {
            Resolved::Persist(o) => assert_eq!(o[0].heads, vec![(ConvId(2), 6)]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batches_settle_in_request_order_even_when_answered_out_of_order() {
        let mut l = StoreLink::default();
        let mut reqs = Vec::new();
        for seq in 1..=3 {
            l.record(m(1, seq));
            let BridgeMsg::Persist { req, .. } = l.take_requests().remove(0) else {
                panic!()
            };
            reqs.push(req);
        }
        assert!(
            matches!(
                l.resolve(&BridgeMsg::Persisted { req: reqs[2] }),
                Resolved::Nothing
            ),
            "waits for 1 and 2"
        );
        assert!(matches!(
            l.resolve(&BridgeMsg::Persisted { req: reqs[1] }),
            Resolved::Nothing
        ));
        assert_eq!(l.unconfirmed, 3);
        match l.resolve(&BridgeMsg::Persisted { req: reqs[0] }) {
            Resolved::Persist(o) => assert_eq!(
                o.iter().map(|x| x.heads[0].1).collect::<Vec<_>>(),
                vec![1, 2, 3]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.unconfirmed, 0);
    }

    #[test]
    fn loads_are_asked_once_and_release_everything_parked() {
        let mut l = StoreLink::default();
        let unsub = |n| ShardMsg::Unsubscribe {
            conv: ConvId(9),
            conn: ConnKey::new(n, 0),
        };
        l.park(ConvId(9), 0, unsub(1), 10);
        l.park(ConvId(9), 1, unsub(2), 10);
        let reqs = l.take_requests();
        assert_eq!(reqs.len(), 1, "one load for both");
        let BridgeMsg::LoadConv { req, .. } = reqs[0] else {
            panic!()
        };
        match l.resolve(&BridgeMsg::ConvLoaded {
            req,
            conv: ConvId(9),
            info: None,
        }) {
            Resolved::Loaded(c, parked) => assert_eq!((c, parked.len()), (ConvId(9), 2)),
            other => panic!("{other:?}"),
        }
        assert!(l.is_missing(ConvId(9)));
        l.created(ConvId(9));
        assert!(!l.is_missing(ConvId(9)));
    }

    #[test]
    fn failures_resolve_to_what_waited() {
        let mut l = StoreLink::default();
        l.record(m(1, 1));
        let BridgeMsg::Persist { req, .. } = l.take_requests().remove(0) else {
            panic!()
        };
        assert!(matches!(
            l.resolve(&BridgeMsg::Failed {
                req,
                reason: "x".into()
            }),
            Resolved::Persist(o) if !o[0].ok
        ));
        assert_eq!(l.unconfirmed, 0);
        let wait = Wait::History {
            from: 0,
            conn: ConnKey::new(0, 0),
            conv: ConvId(1),
            before: 9,
            limit: 5,
        };
        l.read(wait.clone(), ConvId(1), 0, 9, 5);
        let BridgeMsg::History { req, .. } = l.take_requests().remove(0) else {
            panic!()
        };
        match l.resolve(&BridgeMsg::Failed {
            req,
            reason: "x".into(),
        }) {
            Resolved::Read(w, None) => assert_eq!(w, wait),
            other => panic!("{other:?}"),
        }
    }
}
