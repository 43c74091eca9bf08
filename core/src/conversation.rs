//! A conversation's state, owned by its home shard: the sequence counter, its participants,
//! who is subscribed where, a window of recent messages for resume, and recent client message
//! ids for dedupe.

use crate::conn::ConnKey;
use crate::lease::SeqLease;
use crate::routing::ShardId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use switchboard_protocol::bridge::{json_str_len, Assist, ConvInfo, StoredMessage};
use switchboard_protocol::server::{encode, HistoryItem, ServerFrame, BOT_ID, SYSTEM_ID};
use switchboard_protocol::{AgentId, ConvId, ParticipantId, VisitorId};

/// Outcome of posting a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// A new message with this seq; `frame` is its encoded `msg` frame for every recipient.
    New { seq: u64, frame: Bytes },
    /// The sender already sent this `cid`: acknowledge with the original seq, deliver nothing.
    Duplicate { seq: u64 },
    /// The next seq is past the lease the store has confirmed: not sequenced (the sender
    /// is told to resend).
    NoLease,
}

/// Who sent a message, for dedupe: each side has its own cids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Visitor,
    Agent,
    Bot,
    System,
}

impl Side {
    /// The side of a stored sender id (visitor ids and the bot's have their own shapes).
    fn of_sender(sender: &str) -> Self {
        if VisitorId::parse(sender).is_some() {
            Self::Visitor
        } else if sender == BOT_ID {
            Self::Bot
        } else if sender == SYSTEM_ID {
            Self::System
        } else {
            Self::Agent
        }
    }
}

/// Dedupe key: the sender's side and its client message id. Keyed per side so that a
/// visitor, an agent and the bot who happen to pick the same `cid` do not collide.
type CidKey = (Side, Box<str>);

/// What is known of a conversation besides its messages: its site (unless the default),
/// and what the AI layer noted for the agent who takes it. Boxed in the conversation: most
/// have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvNotes {
    /// The site it belongs to; `None`: the default site.
    pub site: Option<String>,
    /// Where the visitor is, as its widget said.
    pub context: crate::messages::Context,
    /// The agent it was last assigned to and when that agent's time to answer is up (in
    /// monotonic ms), until the agent writes in it (re-routing).
    pub unanswered_by: Option<(AgentId, u64)>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub priority: Option<i32>,
    /// Why the bot handed it to a human.
    pub reason: Option<String>,
}

impl ConvNotes {
    /// Adds what one decision says; whether anything changed.
    pub fn merge(&mut self, assist: &Assist) -> bool {
        let mut changed = false;
        for (k, v) in &assist.labels {
            if self.labels.get(k) != Some(v) {
                self.labels.insert(k.clone(), v.clone());
                changed = true;
            }
        }
        if let Some(p) = assist.priority {
            if self.priority.is_none_or(|q| p > q) {
                self.priority = Some(p);
                changed = true;
            }
        }
        if let Some(r) = &assist.handoff {
            if self.reason.as_ref() != Some(r) {
                self.reason = Some(r.clone());
                changed = true;
            }
        }
        changed
    }
}

#[derive(Debug)]
pub struct Conversation {
    id: ConvId,
    visitor: VisitorId,
    agent: Option<AgentId>,
    closed: bool,
    seq: u64,
    window: VecDeque<(u64, Bytes)>,
    window_cap: usize,
    dedupe: HashMap<CidKey, u64>,
    dedupe_order: VecDeque<CidKey>,
    dedupe_cap: usize,
    /// Connections that receive this conversation's traffic, by shard.
    subscribers: Vec<(ShardId, ConnKey)>,
    /// The newest seq the store has confirmed (with no store: every seq, at once).
    confirmed: u64,
    /// Acks held until the store confirms their seq.
    ack_waiters: Vec<AckWaiter>,
    /// When someone last wrote in it (the shard's monotonic milliseconds), for closing
    /// idle conversations.
    last_active_ms: u64,
    /// Whether the shard's idle timer holds a check for it.
    idle_watched: bool,
    /// The seqs it may hand out ([`crate::lease`]).
    lease: SeqLease,
    /// The bot has it (it answers the visitor) until it hands it over.
    with_bot: bool,
    notes: Option<Box<ConvNotes>>,
}

/// An `ack` to send once `seq` is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckWaiter {
    pub seq: u64,
    pub shard: ShardId,
    pub conn: ConnKey,
    pub cid: Box<str>,
}

impl Conversation {
    pub fn new(id: ConvId, visitor: VisitorId, window_cap: usize, dedupe_cap: usize) -> Self {
        Self {
            id,
            visitor,
            agent: None,
            closed: false,
            seq: 0,
            window: VecDeque::new(),
            window_cap: window_cap.max(1),
            dedupe: HashMap::new(),
            dedupe_order: VecDeque::new(),
            dedupe_cap: dedupe_cap.max(1),
            subscribers: Vec::new(),
            confirmed: 0,
            ack_waiters: Vec::new(),
            last_active_ms: 0,
            idle_watched: false,
            lease: SeqLease::unlimited(),
            with_bot: false,
            notes: None,
        }
    }

    /// Whether the bot has it.
    pub fn with_bot(&self) -> bool {
        self.with_bot
    }

    pub fn set_with_bot(&mut self, yes: bool) {
        self.with_bot = yes;
    }

    /// What the AI layer noted, if anything.
    pub fn notes(&self) -> Option<&ConvNotes> {
        self.notes.as_deref()
    }

    /// Its agent wrote in it: no re-route is due.
    pub fn agent_answered(&mut self) {
        if let Some(n) = self.notes.as_deref_mut() {
            n.unanswered_by = None;
        }
    }

    /// The site it belongs to (`None`: the default site).
    pub fn site(&self) -> Option<&str> {
        self.notes.as_ref().and_then(|n| n.site.as_deref())
    }

    pub fn notes_mut(&mut self) -> &mut ConvNotes {
        self.notes.get_or_insert_with(Default::default)
    }

    /// A new conversation kept in a store: its first lease of `len` seqs, to be written
    /// with its opening event.
    pub fn lease_opened(&mut self, len: u64) -> u64 {
        self.lease = SeqLease::opened(len);
        len
    }

    /// After a message: the lease extension to write now (up to, in epoch), if half of it
    /// is used.
    pub fn lease_wanted(&mut self, len: u64) -> Option<(u64, u64)> {
        let epoch = self.lease.epoch();
        self.lease.wanted(self.seq, len).map(|upto| (upto, epoch))
    }

    /// The store answered the request that wrote a lease up to `upto`.
    pub fn lease_settled(&mut self, upto: u64, ok: bool) {
        self.lease.settled(upto, ok);
    }

    /// Hands its lease back (a clean stop): the seq to write as released, if it has one.
    /// No message is sequenced after this.
    pub fn lease_release(&mut self) -> Option<(u64, u64)> {
        self.lease.release(self.seq)
    }

    /// Rebuilds a conversation from the store after a restart: its participants, its seq
    /// (above every seq that may have been shown: the store's floor), its lease, the resume
    /// window (its newest stored messages) and the dedupe memory (their cids).
    pub fn restore(id: ConvId, info: &ConvInfo, window_cap: usize, dedupe_cap: usize) -> Self {
        let mut c = Self::new(id, info.visitor, window_cap, dedupe_cap);
        c.agent = info.agent.as_deref().and_then(AgentId::new);
        c.closed = info.closed;
        if info.site.is_some() {
            c.notes_mut().site = info.site.clone();
        }
        for m in &info.cids {
            c.remember_cid(m.seq, (Side::of_sender(&m.sender), m.cid.as_str().into()));
        }
        for m in &info.recent {
            let frame = msg_frame(id, m.seq, &m.sender, &m.cid, &m.body, m.ts);
            c.remember_frame(m.seq, frame);
        }
        c.seq = info.last_seq.max(info.seq_floor);
        c.confirmed = c.seq;
        c.lease = SeqLease::restored(info.seq_lease.max(c.seq), info.epoch);
        c
    }

    /// When its newest stored message was written (Unix milliseconds), if any is stored.
    pub fn last_written_unix_ms(info: &ConvInfo) -> Option<u64> {
        info.recent.iter().map(|m| m.ts).max()
    }

    pub fn visitor(&self) -> VisitorId {
        self.visitor
    }

    /// The agent it is assigned to, if any yet.
    pub fn agent(&self) -> Option<&AgentId> {
        self.agent.as_ref()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Gives the conversation to `agent`, who is a participant from now on (the bot, if it
    /// had it, stops answering).
    pub fn assign(&mut self, agent: AgentId) {
        self.agent = Some(agent);
        self.with_bot = false;
    }

    /// Its agent handed it on: nobody has it until the dispatcher says who does.
    pub fn unassign(&mut self) {
        self.agent = None;
    }

    /// Someone wrote in it at `now_ms` (the shard's monotonic milliseconds): its idle period
    /// starts over. After a restart, when its newest stored message was written.
    pub fn touch(&mut self, now_ms: u64) {
        self.last_active_ms = now_ms;
    }

    /// When it has been idle for `idle_ms` (monotonic milliseconds), unless written in first.
    pub fn idle_deadline_ms(&self, idle_ms: u64) -> u64 {
        self.last_active_ms + idle_ms
    }

    /// Notes that the shard's idle timer now holds a check for it: false if it already did
    /// (file none then).
    pub fn watch_idle(&mut self) -> bool {
        !std::mem::replace(&mut self.idle_watched, true)
    }

    /// The idle timer's check for it came due: the timer holds none any more.
    pub fn idle_check_taken(&mut self) {
        self.idle_watched = false;
    }

    /// The oldest seq still in the window.
    pub fn oldest_kept(&self) -> Option<u64> {
        self.window.front().map(|(s, _)| *s)
    }

    /// Window frames with seq greater than `after`, oldest first.
    pub fn window_after(&self, after: u64) -> impl Iterator<Item = (u64, &Bytes)> {
        self.window
            .iter()
            .filter(move |(s, _)| *s > after)
            .map(|(s, f)| (*s, f))
    }

    fn remember(&mut self, seq: u64, key: CidKey, frame: Bytes) {
        self.remember_frame(seq, frame);
        self.remember_cid(seq, key);
    }

    fn remember_frame(&mut self, seq: u64, frame: Bytes) {
        if self.window.len() == self.window_cap {
            self.window.pop_front();
        }
        self.window.push_back((seq, frame));
    }

    fn remember_cid(&mut self, seq: u64, key: CidKey) {
        if self.dedupe_order.len() == self.dedupe_cap {
            if let Some(old) = self.dedupe_order.pop_front() {
                self.dedupe.remove(&old);
            }
        }
        self.dedupe.insert(key.clone(), seq);
        self.dedupe_order.push_back(key);
    }

    /// The seq of the newest message (0 before the first).
    pub fn head_seq(&self) -> u64 {
        self.seq
    }

    pub fn is_participant(&self, who: &ParticipantId) -> bool {
        match who {
            ParticipantId::Visitor(v) => *v == self.visitor,
            ParticipantId::Agent(a) => self.agent.as_ref() == Some(a),
        }
    }

    /// Appends a message from `who` (a participant; the caller checks), or recognises a resend.
    pub fn post(&mut self, who: &ParticipantId, cid: &str, body: &str, ts: u64) -> Posted {
        self.post_from(who, &who.to_string(), cid, body, ts)
    }

    /// [`Self::post`] with the sender's text id already made (`from` is `who` as text).
    pub fn post_from(
        &mut self,
        who: &ParticipantId,
        from: &str,
        cid: &str,
        body: &str,
        ts: u64,
    ) -> Posted {
        let side = match who {
            ParticipantId::Visitor(_) => Side::Visitor,
            ParticipantId::Agent(_) => Side::Agent,
        };
        self.post_keyed((side, cid.into()), from, cid, body, ts)
    }

    /// Appends a message from the bot, or recognises a resend of the same `cid`.
    pub fn post_bot(&mut self, cid: &str, body: &str, ts: u64) -> Posted {
        self.post_keyed((Side::Bot, cid.into()), BOT_ID, cid, body, ts)
    }

    /// A system message (the REST API's), recognised by its cid when resent.
    pub fn post_system(&mut self, cid: &str, body: &str, ts: u64) -> Posted {
        self.post_keyed((Side::System, cid.into()), SYSTEM_ID, cid, body, ts)
    }

    fn post_keyed(&mut self, key: CidKey, from: &str, cid: &str, body: &str, ts: u64) -> Posted {
        if let Some(&seq) = self.dedupe.get(&key) {
            return Posted::Duplicate { seq };
        }
        if !self.lease.allows(self.seq + 1) {
            return Posted::NoLease;
        }
        self.seq += 1;
        let seq = self.seq;
        let frame = msg_frame(self.id, seq, from, cid, body, ts);
        self.remember(seq, key, frame.clone());
        Posted::New { seq, frame }
    }

    /// Whether the window holds every message after `last_seq` (false when older ones
    /// have left it: a replay from there needs the store, or is incomplete without one).
    pub fn window_reaches(&self, last_seq: u64) -> bool {
        let oldest_kept = self.oldest_kept().unwrap_or(self.seq + 1);
        last_seq.saturating_add(1) >= oldest_kept || last_seq >= self.seq
    }

    /// Every message after `last_seq` still in the window, oldest first, and whether that
    /// covers everything after `last_seq`: [`Self::window_page`] without a size bound.
    #[cfg(test)]
    pub fn replay_after(&self, last_seq: u64) -> (Vec<Bytes>, bool) {
        let (frames, _) = self.window_page(last_seq, usize::MAX);
        (frames, self.window_reaches(last_seq))
    }

    /// One page of a replay from the window: frames with seq above `after`, oldest first,
    /// while they add up to at most `budget` bytes (always one), and the seq to go on after
    /// when the window holds more.
    pub fn window_page(&self, after: u64, budget: usize) -> (Vec<Bytes>, Option<u64>) {
        let mut frames = Vec::new();
        let mut used = 0usize;
        for (seq, f) in self.window_after(after) {
            if !frames.is_empty() && used + f.len() > budget {
                return (frames, Some(seq - 1));
            }
            used += f.len();
            frames.push(f.clone());
        }
        (frames, None)
    }

    /// Whether the window alone answers a request for `limit` messages before `before`.
    pub fn window_covers(&self, before: u64, limit: u32) -> bool {
        let in_window = self.window_after(0).filter(|(s, _)| *s < before).count();
        // A closed conversation's window is freed: its history is in the store.
        in_window >= limit as usize
            || self.oldest_kept().is_some_and(|o| o <= 1)
            || self.head_seq() == 0
    }

    /// A page of history: `stored` (the store's messages, oldest first, and whether it has
    /// older ones; `None` when the window alone answers), then the window's newer ones
    /// before `before`; the newest `limit` of them that fit `budget` bytes (always one), and
    /// whether the page reaches back to the first message.
    pub fn history_page(
        &self,
        stored: Option<(Vec<StoredMessage>, bool)>,
        before: u64,
        limit: u32,
        budget: usize,
    ) -> (Vec<HistoryItem<'static>>, bool) {
        let (stored, older) = match stored {
            Some((m, more)) => (m, Some(more)),
            None => (Vec::new(), None),
        };
        let newest_stored = stored.last().map_or(0, |m| m.seq);
        let mut items: Vec<HistoryItem<'static>> = stored
            .into_iter()
            .map(|m| HistoryItem {
                seq: m.seq,
                from: m.sender.into(),
                cid: m.cid.into(),
                body: m.body.into(),
                ts: m.ts,
            })
            .collect();
        for (seq, f) in self
            .window_after(newest_stored)
            .filter(|(s, _)| *s < before)
        {
            if let Ok(ServerFrame::Msg {
                from,
                cid,
                body,
                ts,
                ..
            }) = serde_json::from_slice::<ServerFrame<'static>>(f)
            {
                items.push(HistoryItem {
                    seq,
                    from,
                    cid,
                    body,
                    ts,
                });
            }
        }
        let mut keep = 0usize;
        let mut used = 0usize;
        for item in items.iter().rev().take(limit as usize) {
            let size =
                json_str_len(&item.from) + json_str_len(&item.cid) + json_str_len(&item.body) + 80;
            if keep > 0 && used + size > budget {
                break;
            }
            used += size;
            keep += 1;
        }
        let cut = keep < items.len();
        let skip = items.len() - keep;
        let items: Vec<HistoryItem<'static>> = items.into_iter().skip(skip).collect();
        let complete = !cut
            && match older {
                Some(more) => !more,
                None => items.first().is_none_or(|m| m.seq <= 1),
            };
        (items, complete)
    }

    pub fn subscribe(&mut self, shard: ShardId, conn: ConnKey) {
        if !self.subscribers.contains(&(shard, conn)) {
            self.subscribers.push((shard, conn));
        }
    }

    pub fn unsubscribe(&mut self, shard: ShardId, conn: ConnKey) {
        self.subscribers.retain(|s| *s != (shard, conn));
    }

    /// Subscribed connections, by shard (a shard may appear more than once).
    pub fn subscribers(&self) -> &[(ShardId, ConnKey)] {
        &self.subscribers
    }

    /// Each shard with at least one subscriber, once.
    pub fn subscriber_shards(&self) -> Vec<ShardId> {
        let mut shards: Vec<ShardId> = self.subscribers.iter().map(|(s, _)| *s).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// Marks the conversation closed and frees what a closed one no longer needs.
    pub fn close(&mut self) {
        self.closed = true;
        self.window = VecDeque::new();
        self.dedupe = HashMap::new();
        self.dedupe_order = VecDeque::new();
        self.subscribers = Vec::new();
    }

    /// Whether the store has confirmed `seq` (with no store: every seq, at once).
    pub fn is_confirmed(&self, seq: u64) -> bool {
        seq <= self.confirmed
    }

    /// Holds an `ack` until the store confirms its seq ([`Self::confirm`]) or fails it
    /// ([`Self::fail_acks_up_to`]).
    pub fn hold_ack(&mut self, waiter: AckWaiter) {
        self.ack_waiters.push(waiter);
    }

    /// Acks up to `seq`, which the store failed to keep for good, removed from the waiting
    /// list (their senders get errors instead).
    pub fn fail_acks_up_to(&mut self, seq: u64) -> Vec<AckWaiter> {
        let (failed, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ack_waiters)
            .into_iter()
            .partition(|w| w.seq <= seq);
        self.ack_waiters = waiting;
        failed
    }

    /// Acks whose seq is now durable, removed from the waiting list.
    pub fn confirm(&mut self, seq: u64) -> Vec<AckWaiter> {
        self.confirmed = self.confirmed.max(seq);
        let confirmed = self.confirmed;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ack_waiters)
            .into_iter()
            .partition(|w| w.seq <= confirmed);
        self.ack_waiters = waiting;
        ready
    }
}

/// The encoded `msg` frame of a message.
pub fn msg_frame(conv: ConvId, seq: u64, from: &str, cid: &str, body: &str, ts: u64) -> Bytes {
    encode(&ServerFrame::Msg {
        conv,
        seq,
        from: from.into(),
        cid: cid.into(),
        body: body.into(),
        ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn visitor() -> ParticipantId {
        ParticipantId::Visitor(VisitorId(7))
    }

    fn seq_of(frame: &Bytes) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(frame).unwrap();
        v["seq"].as_u64().unwrap()
    }

    #[test]
    fn seqs_increase_and_resends_are_recognised() {
        let mut c = Conversation::new(ConvId(1), VisitorId(7), 8, 8);
        let Posted::New { seq: 1, .. } = c.post(&visitor(), "a", "hi", 1) else {
            panic!()
        };
        let Posted::New { seq: 2, .. } = c.post(&visitor(), "b", "hi", 2) else {
            panic!()
        };
        assert_eq!(
            c.post(&visitor(), "a", "again", 3),
            Posted::Duplicate { seq: 1 }
        );
        // The agent's "a" is a different message.
        c.assign(AgentId::new("ann").unwrap());
        let agent = ParticipantId::Agent(c.agent().cloned().unwrap());
        assert!(matches!(
            c.post(&agent, "a", "x", 4),
            Posted::New { seq: 3, .. }
        ));
        assert_eq!(c.head_seq(), 3);
    }

    #[test]
    fn participants() {
        let mut c = Conversation::new(ConvId(1), VisitorId(7), 8, 8);
        let ann = AgentId::new("ann").unwrap();
        assert!(c.is_participant(&visitor()));
        assert!(!c.is_participant(&ParticipantId::Visitor(VisitorId(8))));
        assert!(!c.is_participant(&ParticipantId::Agent(ann.clone())));
        c.assign(ann.clone());
        assert!(c.is_participant(&ParticipantId::Agent(ann)));
    }

    #[test]
    fn subscribers_are_a_set_and_shards_are_unique() {
        let mut c = Conversation::new(ConvId(1), VisitorId(7), 8, 8);
        let k = |i| ConnKey::new(i, 0);
        c.subscribe(1, k(1));
        c.subscribe(1, k(1));
        c.subscribe(1, k(2));
        c.subscribe(0, k(1));
        assert_eq!(c.subscriber_shards(), vec![0, 1]);
        c.unsubscribe(1, k(1));
        c.unsubscribe(1, k(2));
        assert_eq!(c.subscriber_shards(), vec![0]);
    }

    proptest! {
        /// Whatever the window size and the point a client resumes from, the replay is exactly
        /// the messages after it that are still kept, in order, and `complete` says whether
        /// anything was lost to the window.
        #[test]
        fn replay_has_no_gaps_or_duplicates(n in 0u64..60, cap in 1usize..20, last in 0u64..70) {
            let mut c = Conversation::new(ConvId(1), VisitorId(7), cap, 100);
            for i in 0..n {
                c.post(&visitor(), &i.to_string(), "b", 0);
            }
            let (frames, complete) = c.replay_after(last);
            let seqs: Vec<u64> = frames.iter().map(seq_of).collect();
            let first_kept = n.saturating_sub(cap as u64) + 1;
            let expected: Vec<u64> = (last.max(first_kept - 1) + 1..=n).collect();
            prop_assert_eq!(&seqs, &expected);
            prop_assert_eq!(complete, last + 1 >= first_kept || last >= n);
        }

        #[test]
        fn dedupe_remembers_the_last_cap_cids(n in 1usize..50, cap in 1usize..20) {
            let mut c = Conversation::new(ConvId(1), VisitorId(7), 4, cap);
            for i in 0..n {
                c.post(&visitor(), &i.to_string(), "b", 0);
            }
            for i in n.saturating_sub(cap)..n {
                let again = c.post(&visitor(), &i.to_string(), "b", 0);
                prop_assert_eq!(again, Posted::Duplicate { seq: i as u64 + 1 });
            }
            if n > cap {
                let forgotten = c.post(&visitor(), "0", "b", 0);
                prop_assert_eq!(forgotten, Posted::New { seq: n as u64 + 1, frame: c.window.back().unwrap().1.clone() });
            }
        }
    }
}
