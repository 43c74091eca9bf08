//! The home shard's side of durability, sans-IO: every request to the storage bridge, what
//! waits for its answer, and what to send again after the link comes back. The runtime only
//! moves bytes (`gateway/src/bridge_link.rs`); every rule about requests lives here.
//!
//! - Messages sequenced while one batch of shard work runs go out as `persist` requests, cut
//!   into pages of at most [`PAGE_BYTES`] so that no frame can exceed the link's limit.
//!   Acks wait in their conversation until the bridge confirms their batch, and batches are
//!   confirmed in request order.
//! - Conversations the shard does not hold (after a restart) are loaded from the store;
//!   whatever arrives for them meanwhile is parked here.
//! - Reads (a resume reaching past the window, `history`, the start-up listing) are paged
//!   by the bridge; the listing's next page is asked here, the others by their caller.
//! - Every request stays in flight until answered and is sent again, in order, after a
//!   reconnect. A read in flight when the link is lost twice is failed instead (it may be
//!   what breaks the link); `persist` is idempotent and always bounded, so it is resent.
//!
//! Generic over what a read waits for (`W`) and what waits for a load (`P`), so it knows
//! nothing of shards or connections.

use std::collections::{BTreeMap, HashMap, HashSet};
use switchboard_protocol::bridge::{
    encode, BridgeMsg, ConvEvent, ConvInfo, OpenConv, StoredMessage, PAGE_BYTES,
};
use switchboard_protocol::ConvId;

/// Forget this many conversations known to be absent from the store before starting over.
const MISSING_REMEMBERED: usize = 10_000;
/// Link losses a read survives in flight; at the next one it is failed.
const READ_LOSSES_MAX: u8 = 1;
/// Open conversations asked for per listing page.
const LISTING_PAGE: u32 = 10_000;

#[derive(Debug)]
struct PersistInFlight {
    /// The newest seq of each conversation in the request.
    heads: Vec<(ConvId, u64)>,
    /// The seq leases the request writes.
    leases: Vec<(ConvId, u64)>,
    count: usize,
    /// The bridge's answer, once it came: committed or failed.
    outcome: Option<bool>,
}

/// A persist request, resolved in request order.
#[derive(Debug, PartialEq, Eq)]
pub struct PersistOutcome {
    pub heads: Vec<(ConvId, u64)>,
    pub leases: Vec<(ConvId, u64)>,
    pub ok: bool,
}

/// One page of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPage {
    pub messages: Vec<StoredMessage>,
    /// More may match past this page.
    pub more: bool,
}

/// A request not answered yet.
#[derive(Debug)]
struct InFlight {
    msg: BridgeMsg,
    /// The caller's clock when it was first written (for the confirm-latency metric).
    sent_us: u64,
    /// Link losses it has been in flight for.
    losses: u8,
}

/// What a bridge answer resolved.
#[derive(Debug)]
pub enum Resolved<W, P> {
    /// Persist requests now settled, oldest first: durable (each conversation up to its
    /// seq, each lease) or failed for good (their acks become errors).
    Persist(Vec<PersistOutcome>),
    /// A conversation load finished (`None`: the store does not have it), with what waited.
    Loaded(ConvId, Option<Box<ConvInfo>>, Vec<P>),
    /// A conversation load failed; what waited must be refused.
    LoadFailed(ConvId, Vec<P>),
    /// A page of the open conversations listed at start (`None`: the listing failed);
    /// `done` once it is the last.
    OpenConvs {
        convs: Option<Vec<OpenConv>>,
        done: bool,
    },
    /// A read finished (`None`: it failed).
    Read(W, Option<ReadPage>),
    /// Nothing known (a late or duplicate answer).
    Nothing,
}

/// Requests to the bridge and the state waiting on them.
#[derive(Debug)]
pub struct StoreLink<W, P> {
    next_req: u64,
    batch_messages: Vec<StoredMessage>,
    batch_events: Vec<ConvEvent>,
    /// Requests made and not written to the link yet, in order.
    fresh: Vec<u64>,
    /// Every request not answered, by id (= in order).
    inflight: BTreeMap<u64, InFlight>,
    /// In request order: the bridge may commit requests concurrently and answer out of
    /// order, but a conversation is confirmed up to a seq only once every earlier one is.
    persisting: BTreeMap<u64, PersistInFlight>,
    /// Messages sent to the bridge and not yet confirmed (the bounded buffer).
    unconfirmed: usize,
    /// What waits for each conversation being loaded, in arrival order.
    loading: HashMap<ConvId, Vec<P>>,
    load_reqs: HashMap<u64, ConvId>,
    /// Conversations the store does not have.
    missing: HashSet<ConvId>,
    reads: HashMap<u64, W>,
    /// The start-up listing's current page request, and how many it may still list.
    listing: Option<(u64, u32)>,
}

impl<W, P> Default for StoreLink<W, P> {
    fn default() -> Self {
        Self {
            next_req: 0,
            batch_messages: Vec::new(),
            batch_events: Vec::new(),
            fresh: Vec::new(),
            inflight: BTreeMap::new(),
            persisting: BTreeMap::new(),
            unconfirmed: 0,
            loading: HashMap::new(),
            load_reqs: HashMap::new(),
            missing: HashSet::new(),
            reads: HashMap::new(),
            listing: None,
        }
    }
}

impl<W, P> StoreLink<W, P> {
    fn request(&mut self, make: impl FnOnce(u64) -> BridgeMsg) -> u64 {
        self.next_req += 1;
        let req = self.next_req;
        self.inflight.insert(
            req,
            InFlight {
                msg: make(req),
                sent_us: 0,
                losses: 0,
            },
        );
        self.fresh.push(req);
        req
    }

    /// Messages sent and not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed
    }

    /// Messages queued or in flight: the caller refuses new ones past its limit.
    pub fn backlog(&self) -> usize {
        self.unconfirmed + self.batch_messages.len()
    }

    /// Requests not answered yet.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
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

    /// Whether `conv` is being loaded (what arrives for it must wait).
    #[cfg(test)]
    pub fn is_loading(&self, conv: ConvId) -> bool {
        self.loading.contains_key(&conv)
    }

    pub fn created(&mut self, conv: ConvId) {
        self.missing.remove(&conv);
    }

    /// Parks `waiting` until `conv` is loaded; asks the store on the first one, with its
    /// `recent` newest messages, its newest `cids` client ids, and a new lease of `lease`.
    pub fn park(&mut self, conv: ConvId, waiting: P, recent: u32, cids: u32, lease: u64) {
        let list = self.loading.entry(conv).or_default();
        list.push(waiting);
        if list.len() == 1 {
            let req = self.request(|req| BridgeMsg::LoadConv {
                req,
                conv,
                recent,
                cids,
                lease,
            });
            self.load_reqs.insert(req, conv);
        }
    }

    /// Whether the start-up listing is asked and not finished yet.
    pub fn is_listing(&self) -> bool {
        self.listing.is_some()
    }

    /// Asks for the open conversations, at most `limit`, page by page (the dispatcher,
    /// after a restart).
    pub fn list_open(&mut self, limit: u32) {
        self.list_page(None, limit);
    }

    fn list_page(&mut self, after: Option<ConvId>, left: u32) {
        let limit = left.min(LISTING_PAGE);
        let req = self.request(|req| BridgeMsg::OpenConvs { req, after, limit });
        self.listing = Some((req, left));
    }

    /// Reads stored messages with `after < seq < before`, at most `limit` and `bytes` (at
    /// least one), the oldest of them when `oldest_first`, else the newest.
    #[allow(clippy::too_many_arguments)]
    pub fn read(
        &mut self,
        wait: W,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
        oldest_first: bool,
        bytes: usize,
    ) {
        let req = self.request(|req| BridgeMsg::History {
            req,
            conv,
            after,
            before,
            limit,
            oldest_first,
            bytes: bytes.min(PAGE_BYTES) as u32,
        });
        self.reads.insert(req, wait);
    }

    /// Whether there is anything to write to the link.
    pub fn has_requests(&self) -> bool {
        !self.fresh.is_empty() || !self.batch_messages.is_empty() || !self.batch_events.is_empty()
    }

    /// Cuts the batch so far into `persist` requests of at most a page each (events first,
    /// then messages, in order).
    fn form_persists(&mut self) {
        let mut events = std::mem::take(&mut self.batch_events)
            .into_iter()
            .peekable();
        let mut messages = std::mem::take(&mut self.batch_messages)
            .into_iter()
            .peekable();
        while events.peek().is_some() || messages.peek().is_some() {
            let mut used = 0;
            let page_events = take_page(&mut events, &mut used, ConvEvent::encoded_len, |e| {
                e.encoded_len()
            });
            // Per message: an O(1) bound while the page is far from full; the exact size
            // (a scan of the body) only near the limit.
            let page_messages = take_page(
                &mut messages,
                &mut used,
                StoredMessage::max_encoded_len,
                StoredMessage::encoded_len,
            );
            let leases = page_events
                .iter()
                .filter_map(|e| match e {
                    ConvEvent::SeqLease { conv, upto, .. } => Some((*conv, *upto)),
                    ConvEvent::Opened { conv, lease, .. } if *lease > 0 => Some((*conv, *lease)),
                    _ => None,
                })
                .collect();
            let heads = heads_of(&page_messages);
            let count = page_messages.len();
            let req = self.request(|req| BridgeMsg::Persist {
                req,
                messages: page_messages,
                events: page_events,
            });
            self.unconfirmed += count;
            self.persisting.insert(
                req,
                PersistInFlight {
                    heads,
                    leases,
                    count,
                    outcome: None,
                },
            );
        }
    }

    /// Writes every new request to `out` (the batch so far becomes `persist` requests).
    /// A request that cannot be encoded is answered `failed` at once: those answers come
    /// back, for the caller to [`Self::resolve`].
    pub fn write_requests(&mut self, out: &mut Vec<u8>, now_us: u64) -> Vec<BridgeMsg> {
        self.form_persists();
        let mut failed = Vec::new();
        for req in std::mem::take(&mut self.fresh) {
            let Some(r) = self.inflight.get_mut(&req) else {
                continue;
            };
            r.sent_us = now_us;
            if let Err(e) = encode(&r.msg, out) {
                failed.push(BridgeMsg::Failed {
                    req,
                    reason: format!("not sent: {e}"),
                });
            }
        }
        failed
    }

    /// The link is gone. Reads in flight for a second loss are failed (their answers come
    /// back, for the caller to [`Self::resolve`]); everything else waits for the next link.
    pub fn link_lost(&mut self) -> Vec<BridgeMsg> {
        let mut failed = Vec::new();
        for (&req, r) in self.inflight.iter_mut() {
            if self.fresh.contains(&req) {
                continue;
            }
            r.losses = r.losses.saturating_add(1);
            let is_read = !matches!(r.msg, BridgeMsg::Persist { .. });
            if is_read && r.losses > READ_LOSSES_MAX {
                failed.push(BridgeMsg::Failed {
                    req,
                    reason:
                        "the link to the storage bridge was lost twice with this request in flight"
                            .into(),
                });
            }
        }
        failed
    }

    /// A new link: writes every request in flight again, oldest first, then the new ones.
    pub fn relink(&mut self, out: &mut Vec<u8>, now_us: u64) -> Vec<BridgeMsg> {
        for (req, r) in &self.inflight {
            if !self.fresh.contains(req) {
                // Encoded once before, so it encodes again.
                let _ = encode(&r.msg, out);
            }
        }
        self.write_requests(out, now_us)
    }

    /// When the request `req` was first written (the caller's clock), if it is in flight.
    pub fn sent_at_us(&self, req: u64) -> Option<u64> {
        self.inflight.get(&req).map(|r| r.sent_us)
    }

    /// Records a persist answer and releases every settled request at the front.
    fn settle(&mut self, req: u64, ok: bool) -> Resolved<W, P> {
        match self.persisting.get_mut(&req) {
            Some(p) if p.outcome.is_none() => p.outcome = Some(ok),
            _ => return Resolved::Nothing,
        }
        let mut out = Vec::new();
        while let Some(entry) = self.persisting.first_entry() {
            let Some(ok) = entry.get().outcome else { break };
            let p = entry.remove();
            self.unconfirmed -= p.count;
            out.push(PersistOutcome {
                heads: p.heads,
                leases: p.leases,
                ok,
            });
        }
        if out.is_empty() {
            Resolved::Nothing
        } else {
            Resolved::Persist(out)
        }
    }

    /// Matches a bridge answer with what waited for it.
    pub fn resolve(&mut self, msg: BridgeMsg) -> Resolved<W, P> {
        if msg
            .req()
            .is_none_or(|req| self.inflight.remove(&req).is_none())
        {
            return Resolved::Nothing;
        }
        self.fresh.retain(|r| Some(*r) != msg.req());
        match msg {
            BridgeMsg::Persisted { req } => self.settle(req, true),
            BridgeMsg::ConvLoaded { req, conv, info } => {
                if self.load_reqs.remove(&req).is_none() {
                    return Resolved::Nothing;
                }
                if info.is_none() {
                    if self.missing.len() >= MISSING_REMEMBERED {
                        self.missing.clear();
                    }
                    self.missing.insert(conv);
                }
                let parked = self.loading.remove(&conv).unwrap_or_default();
                Resolved::Loaded(conv, info.map(Box::new), parked)
            }
            BridgeMsg::OpenConvsAre { req, convs, next } => match self.listing {
                Some((asked, left)) if asked == req => {
                    let left = left.saturating_sub(convs.len() as u32);
                    match next {
                        Some(after) if left > 0 && !convs.is_empty() => {
                            self.list_page(Some(after), left)
                        }
                        _ => self.listing = None,
                    }
                    Resolved::OpenConvs {
                        convs: Some(convs),
                        done: self.listing.is_none(),
                    }
                }
                _ => Resolved::Nothing,
            },
            BridgeMsg::HistoryIs {
                req,
                messages,
                more,
                ..
            } => match self.reads.remove(&req) {
                Some(w) => Resolved::Read(w, Some(ReadPage { messages, more })),
                None => Resolved::Nothing,
            },
            BridgeMsg::Failed { req, .. } => {
                if self.persisting.contains_key(&req) {
                    self.settle(req, false)
                } else if let Some(conv) = self.load_reqs.remove(&req) {
                    Resolved::LoadFailed(conv, self.loading.remove(&conv).unwrap_or_default())
                } else if self.listing.is_some_and(|(asked, _)| asked == req) {
                    self.listing = None;
                    Resolved::OpenConvs {
                        convs: None,
                        done: true,
                    }
                } else if let Some(w) = self.reads.remove(&req) {
                    Resolved::Read(w, None)
                } else {
                    Resolved::Nothing
                }
            }
            _ => Resolved::Nothing,
        }
    }
}

/// Takes items off `items` while their sizes add up to at most a page (always one), with
/// `used` the page's bytes so far. `quick` bounds `exact` and is used while it fits.
fn take_page<T>(
    items: &mut std::iter::Peekable<std::vec::IntoIter<T>>,
    used: &mut usize,
    quick: impl Fn(&T) -> usize,
    exact: impl Fn(&T) -> usize,
) -> Vec<T> {
    let mut page = Vec::new();
    while let Some(item) = items.peek() {
        let bound = quick(item);
        let size = if *used + bound <= PAGE_BYTES {
            bound
        } else {
            exact(item)
        };
        if *used > 0 && *used + size > PAGE_BYTES {
            break;
        }
        *used += size;
        page.push(items.next().expect("peeked"));
    }
    page
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
mod tests;
