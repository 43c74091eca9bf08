//! The connection role's table: each connection's state in a slot, found by its
//! [`ConnKey`], the slot's index and generation, so that a key held by another shard never
//! reaches the slot's next occupant. Plain data: the role decides what happens to a
//! connection.

use crate::config::ClientKind;
use crate::conn::{ConnIo, ConnKey};
use crate::idle::{verdict, IdleVerdict};
use crate::messages::ReplayNext;
use crate::ratelimit::TokenBucket;
use switchboard_protocol::client::ClientFrame;
use switchboard_protocol::{CloseCode, ConvId, ParticipantId};

/// One connection's state.
#[derive(Debug)]
pub(super) struct Conn {
    pub who: ParticipantId,
    pub client: ClientKind,
    /// A visitor's priority in the human queue, from its token.
    pub priority: i32,
    /// An agent that supervises (its token says so): watches any conversation, whispers.
    pub supervisor: bool,
    /// A visitor's site and team (its token's and its entry's), for the conversations it
    /// opens; an agent's site. Boxed: most connections are of the default site, no team.
    pub route: Option<Box<crate::assignment::Route>>,
    /// A visitor's context, as its widget said (for the conversations it opens).
    pub context: Option<Box<crate::messages::Context>>,
    pub io: ConnIo,
    /// A visitor's current conversation.
    pub visitor_conv: Option<ConvId>,
    /// For a returning visitor: whether its open conversation has been looked up.
    pub lookup: Lookup,
    /// Conversations this connection is subscribed to (live or awaiting replay).
    pub subs: Vec<ConvId>,
    pub last_seen: u64,
    pub pinged: bool,
    pub rate: TokenBucket,
    pub strikes: u16,
    /// Its resumes in progress; allocated at its first `resume`, so that a connection that
    /// never resumes pays one pointer for them.
    pub replays: Option<Box<Replays>>,
}

impl Conn {
    /// Its site (`None`: the default site).
    pub fn site(&self) -> Option<&str> {
        self.route.as_ref().and_then(|r| r.site.as_deref())
    }
}

/// A connection's paged replays: the resume in progress for each conversation (its chain),
/// the next pages waiting for the connection to read the last, and the one asked.
#[derive(Debug, Default)]
pub(super) struct Replays {
    pending: Vec<(ConvId, ReplayNext)>,
    asked: Option<(ConvId, u32)>,
    resuming: Vec<(ConvId, u32)>,
    next_chain: u32,
}

impl Replays {
    /// A new resume of `conv`: its chain. It replaces one in progress (whose pages are then
    /// dropped when they come).
    pub fn start(&mut self, conv: ConvId) -> u32 {
        let chain = self.next_chain;
        self.next_chain = self.next_chain.wrapping_add(1);
        self.resuming.retain(|(c, _)| *c != conv);
        self.resuming.push((conv, chain));
        self.pending.retain(|(c, _)| *c != conv);
        chain
    }

    /// A page of `conv`'s replay came: whether it belongs to the resume in progress, and
    /// then what follows it (`more`: a next page to ask for; `None`: it was the last).
    pub fn page_came(&mut self, conv: ConvId, chain: u32, more: Option<ReplayNext>) -> bool {
        if self.asked == Some((conv, chain)) {
            self.asked = None;
        }
        if !self.resuming.contains(&(conv, chain)) {
            return false;
        }
        match more {
            Some(next) => self.pending.push((conv, next)),
            None => self.resuming.retain(|r| *r != (conv, chain)),
        }
        true
    }

    /// Whether a next page waits for the connection to read what it has.
    pub fn wants_next(&self) -> bool {
        self.asked.is_none() && !self.pending.is_empty()
    }

    /// The next page to ask for (one at a time).
    pub fn ask_next(&mut self) -> Option<(ConvId, ReplayNext)> {
        if !self.wants_next() {
            return None;
        }
        let (conv, next) = self.pending.remove(0);
        self.asked = Some((conv, next.chain));
        Some((conv, next))
    }
}

impl Conn {
    /// Its replays, allocated on first use.
    pub fn replays(&mut self) -> &mut Replays {
        self.replays.get_or_insert_with(Default::default)
    }

    /// Asks the runtime to say when it has written everything, if a replay page waits.
    pub fn drain_if_a_page_waits(&mut self) {
        if self.replays.as_ref().is_some_and(|r| r.wants_next()) {
            self.io.drain_wanted = true;
            self.io.wake();
        }
    }

    /// A sign of life: its idle time starts over.
    pub fn seen(&mut self, now_ms: u64) {
        self.last_seen = now_ms;
        self.pinged = false;
    }

    /// Asks the runtime to close it with `code`, unless a close is asked already.
    pub fn close_with(&mut self, code: CloseCode) {
        if self.io.close.is_none() {
            self.io.close = Some(code);
        }
        self.io.wake();
    }

    /// It is no longer in `conv` (a refused subscription, a closed conversation).
    pub fn leave(&mut self, conv: ConvId) {
        self.subs.retain(|x| *x != conv);
        if self.visitor_conv == Some(conv) {
            self.visitor_conv = None;
        }
    }

    /// Its idle check came due: pings it or closes it as idle past `deadline_ms`. Returns
    /// when to check again, unless it is closed.
    pub fn idle_check(&mut self, now_ms: u64, deadline_ms: u64) -> Option<u64> {
        match verdict(now_ms, self.last_seen, deadline_ms, self.pinged) {
            IdleVerdict::Recheck(at) => Some(at),
            IdleVerdict::Ping(at) => {
                self.pinged = true;
                self.io.ping_due = true;
                self.io.wake();
                Some(at)
            }
            IdleVerdict::Expire => {
                self.close_with(CloseCode::IdleTimeout);
                None
            }
        }
    }
}

/// A returning visitor's first frame about "my conversation" on a new connection asks the
/// dispatcher which one is open, and waits (with whatever follows) for the answer.
#[derive(Debug)]
pub(super) enum Lookup {
    /// Nothing to look up: an agent, a new visitor, or already answered.
    Done,
    /// A returning visitor that has not needed its conversation yet.
    Due,
    /// Asked; these frames wait for the answer, in order.
    Asked(Vec<ClientFrame>),
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// The connections of one shard, by key.
#[derive(Debug, Default)]
pub(super) struct ConnTable {
    slots: Vec<Slot>,
    /// Indices of empty slots, reused before the table grows.
    free: Vec<u32>,
}

impl ConnTable {
    /// Puts `conn` in a free slot (or a new one) and returns its key.
    pub fn insert(&mut self, conn: Conn) -> ConnKey {
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].conn = Some(conn);
                i
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    conn: Some(conn),
                });
                (self.slots.len() - 1) as u32
            }
        };
        ConnKey::new(idx, self.slots[idx as usize].gen)
    }

    /// Takes the connection out; its slot's next occupant gets a new generation.
    pub fn remove(&mut self, key: ConnKey) -> Option<Conn> {
        let slot = self.slots.get_mut(key.idx as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        let conn = slot.conn.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(key.idx);
        Some(conn)
    }

    /// The connection `key` names, unless it is gone.
    pub fn get(&self, key: ConnKey) -> Option<&Conn> {
        let slot = self.slots.get(key.idx as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.conn.as_ref()
    }

    /// The connection `key` names, unless it is gone.
    pub fn get_mut(&mut self, key: ConnKey) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(key.idx as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.conn.as_mut()
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.slots.iter_mut().filter_map(|s| s.conn.as_mut())
    }
}
