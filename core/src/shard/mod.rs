//! One shard's complete state and behaviour, free of any runtime.
//!
//! Inputs: connections arriving and leaving, their text frames, activity, timer ticks,
//! answers from the storage bridge, and [`ShardMsg`]s from other shards. Outputs: frames
//! queued on each connection's [`ConnIo`] (whose waker the runtime sets), [`ShardMsg`]s for
//! other shards, taken with [`Shard::take_outgoing`], and requests for the storage bridge.
//!
//! A [`Shard`] plays three roles, each in its own module with its own state and messages:
//!
//! - `conns`: the connections it accepted; takes [`ConnMsg`]s;
//! - `home`: the conversations whose home it is, and the link to the storage bridge; takes
//!   [`HomeMsg`]s;
//! - `dispatch`: on the dispatcher shard only, agent assignment and the queue; takes
//!   [`DispatchMsg`]s.
//!
//! The roles never call each other: they send [`ShardMsg`]s (through `shared`, which also
//! holds the configuration, the time and the counters they share), and this facade hands
//! each to its role. A message a shard addresses to itself is handled before the input
//! returns, so a same-shard hop costs a function call, not a channel. The one exception is
//! the start-up listing of open conversations: it comes back through the home role's store
//! link and goes straight on to the dispatcher, within the same input.
//!
//! Threading model: none. A shard and its roles belong to one thread; only [`ShardMsg`]
//! values leave it.
//!
//! [`ConnMsg`]: crate::messages::ConnMsg
//! [`HomeMsg`]: crate::messages::HomeMsg
//! [`DispatchMsg`]: crate::messages::DispatchMsg

mod conns;
mod dispatch;
mod home;
mod shared;

pub use home::IDLE_CLOSER;
pub use shared::ShardStats;

use crate::auth::Identity;
use crate::config::CoreConfig;
use crate::conn::{ConnIo, ConnKey, Now};
use crate::messages::{ConnMsg, ShardMsg};
use crate::routing::{local_of, node_of, ClusterView, ShardId, DISPATCHER_SHARD};
use conns::ConnRole;
use dispatch::{DispatchRole, OPEN_LISTED};
use home::HomeRole;
use shared::Shared;
use switchboard_protocol::bridge::{BotMode, BridgeMsg};
use switchboard_protocol::token::TokenSigner;
use switchboard_protocol::{AgentId, VisitorId};

const ONLY_DISPATCHER: &str = "dispatcher messages go to the dispatcher shard";

/// One shard. See the module docs.
#[derive(Debug)]
pub struct Shard {
    sh: Shared,
    signer: TokenSigner,
    conns: ConnRole,
    home: HomeRole,
    /// Present on the dispatcher shard only.
    dispatch: Option<DispatchRole>,
    /// Unasked messages for the bridge (answers to its commands), written with the next
    /// requests; dropped with the link (the API's caller then hears nothing in time).
    to_bridge: Vec<BridgeMsg>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        nr_shards: u32,
        cfg: CoreConfig,
        signer: TokenSigner,
        seed: u64,
    ) -> Self {
        assert!(local_of(id) < nr_shards, "shard {id} of {nr_shards}");
        // Every node's first shard can be the dispatcher; it is while its node is the
        // dispatcher's in the view (at first, a node sees itself alone).
        let is_dispatcher = local_of(id) == DISPATCHER_SHARD;
        let view = ClusterView::alone(node_of(id), nr_shards);
        let rng = fastrand::Rng::with_seed(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self {
            conns: ConnRole::new(rng),
            home: HomeRole::new(&cfg, is_dispatcher.then_some(OPEN_LISTED)),
            dispatch: is_dispatcher.then(|| DispatchRole::new(cfg.agent_capacity)),
            sh: Shared::new(id, view, cfg),
            to_bridge: Vec::new(),
            signer,
        }
    }

    pub fn id(&self) -> ShardId {
        self.sh.id
    }

    pub fn config(&self) -> &CoreConfig {
        &self.sh.cfg
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    pub fn stats(&self) -> &ShardStats {
        &self.sh.stats
    }

    /// The live nodes as this shard knows them.
    pub fn view(&self) -> &ClusterView {
        &self.sh.view
    }

    /// The cluster's membership changed (docs/cluster.md). Conversations whose home moved
    /// are handed over and the connections following them are closed with 1001 (they
    /// resume at the new home); the dispatcher's shard, if it changed, starts afresh from
    /// the store's open conversations and every shard's agent devices; a dispatcher that
    /// stays forgets the devices of nodes that died.
    pub fn set_view(&mut self, view: ClusterView, now: Now) {
        self.sh.now = now;
        if view == self.sh.view {
            return;
        }
        let old = std::mem::replace(&mut self.sh.view, view);
        let me = self.sh.id;
        if let Some(d) = self.dispatch.as_mut() {
            let (was, is) = (old.dispatcher_shard() == me, self.sh.dispatcher() == me);
            if is && !was {
                *d = DispatchRole::new(self.sh.cfg.agent_capacity);
                self.home.list_open();
                for shard in self.sh.view.all_shards().collect::<Vec<_>>() {
                    self.sh.send(shard, ConnMsg::Reannounce);
                }
            } else if was && !is {
                *d = DispatchRole::new(self.sh.cfg.agent_capacity);
            } else if is {
                let view = &self.sh.view;
                let alive: Vec<ShardId> = view.all_shards().collect();
                d.shards_gone(&mut self.sh, |s| alive.contains(&s));
            }
        }
        self.home.home_moved(&mut self.sh);
        self.conns.home_moved(&mut self.sh, &old);
        // Agents announce themselves to a dispatcher that moved (it also asks, once it
        // knows: whichever comes first counts, the other changes nothing).
        if old.dispatcher_shard() != self.sh.dispatcher() {
            self.conns.reannounce(&mut self.sh);
        }
        self.pump();
    }

    /// A fresh random visitor id (for [`crate::auth::authenticate`]).
    pub fn new_visitor_id(&mut self) -> VisitorId {
        self.conns.new_visitor_id()
    }

    /// Messages for other shards produced since the last call.
    pub fn take_outgoing(&mut self) -> Vec<(ShardId, ShardMsg)> {
        std::mem::take(&mut self.sh.outgoing)
    }

    /// Whether there are messages for other shards waiting.
    pub fn has_outgoing(&self) -> bool {
        !self.sh.outgoing.is_empty()
    }

    /// Writes the requests for the storage bridge made since the last call to `out`
    /// (framed, ready for the socket). `now_us` is any monotonic clock, kept with each
    /// request for [`Self::bridge_sent_at_us`].
    pub fn write_bridge_requests(&mut self, out: &mut Vec<u8>, now_us: u64, now: Now) {
        let failed = self.home.write_bridge_requests(&mut self.sh, out, now_us);
        self.answers(failed, now);
        for msg in self.to_bridge.drain(..) {
            // A few dozen bytes each: they always encode.
            let _ = switchboard_protocol::bridge::encode(&msg, out);
        }
    }

    /// A new link to the bridge: writes every request still unanswered, oldest first, then
    /// the new ones.
    pub fn bridge_relinked(&mut self, out: &mut Vec<u8>, now_us: u64, now: Now) {
        if let Some(d) = &self.dispatch {
            self.to_bridge.push(d.presence_now());
        }
        let failed = self.home.bridge_relinked(out, now_us);
        self.answers(failed, now);
        self.write_bridge_requests(out, now_us, now);
    }

    /// The link to the bridge is gone. Its requests wait for the next one, but a read that
    /// was in flight when the link was lost before is given up (its waiter gets an error):
    /// a request that breaks the link is never sent forever. On the dispatcher shard the
    /// bot is gone with it: its conversations go to humans.
    pub fn bridge_link_lost(&mut self, now: Now) {
        self.to_bridge.clear();
        let failed = self.home.bridge_link_lost();
        self.answers(failed, now);
        self.bridge_welcomed(BotMode::Off, now);
    }

    /// Whether `agent`'s account is disabled (its upgrades are refused).
    pub fn is_disabled(&self, agent: &AgentId) -> bool {
        self.conns.is_disabled(agent)
    }

    /// The bridge listed the disabled accounts when this shard's link started: their
    /// devices here are closed, their upgrades refused.
    pub fn agents_disabled(&mut self, agents: &[String]) {
        self.conns
            .set_disabled(agents.iter().filter_map(|a| AgentId::new(a)).collect());
    }

    /// The sites, as the bridge lists them (in its `welcome` and at every change).
    pub fn sites_are(&mut self, sites: &[switchboard_protocol::bridge::SiteRules]) {
        self.sh.sites.set(sites);
    }

    /// Whether a visitor of `site` may connect from a page of `origin`.
    pub fn site_admits(
        &self,
        site: Option<&str>,
        origin: Option<&str>,
    ) -> Result<(), crate::auth::AuthError> {
        self.sh.sites.admit(site, origin)
    }

    /// The bridge welcomed this shard's link, saying when the bot answers. Only the
    /// dispatcher shard's link decides (every shard's link reaches the same bridge).
    pub fn bridge_welcomed(&mut self, mode: BotMode, now: Now) {
        self.sh.now = now;
        if let Some(d) = self.dispatch.as_mut() {
            d.set_bot_mode(&mut self.sh, mode);
        }
        self.pump();
    }

    /// When request `req` was written (in `write_bridge_requests`' clock), if in flight.
    pub fn bridge_sent_at_us(&self, req: u64) -> Option<u64> {
        self.home.bridge_sent_at_us(req)
    }

    /// Requests written to the bridge and not answered yet.
    pub fn bridge_in_flight(&self) -> usize {
        self.home.bridge_in_flight()
    }

    pub fn has_bridge_requests(&self) -> bool {
        self.home.has_bridge_requests() || !self.to_bridge.is_empty()
    }

    fn answers(&mut self, failed: Vec<BridgeMsg>, now: Now) {
        for msg in failed {
            self.on_bridge(msg, now);
        }
    }

    /// An answer from the storage bridge.
    pub fn on_bridge(&mut self, msg: BridgeMsg, now: Now) {
        self.sh.now = now;
        match msg {
            BridgeMsg::AgentAccess { agent, disabled } => {
                if let Some(agent) = AgentId::new(&agent) {
                    self.conns.set_access(agent, disabled);
                }
                return;
            }
            BridgeMsg::Sites { sites } => {
                self.sh.sites.set(&sites);
                return;
            }
            BridgeMsg::Fenced { convs } => {
                self.home.fenced(&mut self.sh, convs);
                self.pump();
                return;
            }
            BridgeMsg::Command {
                id,
                conv,
                by,
                as_agent,
                action,
            } => {
                match AgentId::new(&by) {
                    Some(by) => {
                        let reply = self.sh.id;
                        let msg = crate::messages::HomeMsg::Api {
                            id,
                            conv,
                            by,
                            as_agent,
                            action,
                            reply,
                        };
                        self.sh.send(self.sh.home(conv), msg);
                    }
                    None => self.to_bridge.push(BridgeMsg::CommandDone {
                        id,
                        error: Some("`by` is not an agent id".into()),
                    }),
                }
                self.pump();
                return;
            }
            _ => {}
        }
        if let Some((listed, done)) = self.home.on_bridge(&mut self.sh, msg) {
            let d = self.dispatch.as_mut().expect(ONLY_DISPATCHER);
            d.listed(&mut self.sh, listed, done);
        }
        self.pump();
    }

    /// The runtime wrote everything queued for `key` after `ConnIo::drain_wanted` was set:
    /// the next page of a paged replay goes out.
    pub fn on_drained(&mut self, key: ConnKey, now: Now) {
        self.sh.now = now;
        self.conns.on_drained(&mut self.sh, key);
        self.pump();
    }

    /// The runtime's view of a connection; `None` once it is gone.
    pub fn io(&mut self, key: ConnKey) -> Option<&mut ConnIo> {
        self.conns.io(key)
    }

    pub fn connection_count(&self) -> usize {
        self.conns.connection_count()
    }

    /// Registers an authenticated connection and queues its `welcome` frame.
    pub fn connect(&mut self, identity: Identity, now: Now) -> ConnKey {
        self.sh.now = now;
        let key = self.conns.connect(&mut self.sh, &self.signer, identity);
        self.pump();
        key
    }

    /// Forgets a connection that has closed, and tells the shards that knew of it.
    pub fn disconnect(&mut self, key: ConnKey) {
        self.conns.disconnect(&mut self.sh, key);
        self.pump();
    }

    /// Any sign of life (a frame of any kind, a pong): one store, no timer.
    pub fn touch(&mut self, key: ConnKey, now: Now) {
        self.conns.touch(key, now);
    }

    /// A binary message: refused with an error frame.
    pub fn on_binary(&mut self, key: ConnKey, now: Now) {
        self.conns.on_binary(&mut self.sh, key, now);
    }

    /// A text message from a client.
    pub fn on_text(&mut self, key: ConnKey, text: &str, now: Now) {
        self.sh.now = now;
        self.conns.on_text(&mut self.sh, key, text);
        self.pump();
    }

    /// Periodic work (about once a second): idle deadlines of connections and of
    /// conversations, and queue position updates.
    pub fn tick(&mut self, now: Now) {
        self.sh.now = now;
        self.conns.tick(&mut self.sh);
        if let Some(d) = self.dispatch.as_mut() {
            d.answer_overdue_lookups(&mut self.sh);
        }
        self.home.tick(&mut self.sh);
        if let Some(d) = self.dispatch.as_mut() {
            d.update_positions(&mut self.sh);
        }
        self.pump();
    }

    /// A clean stop, after this shard's connections are gone: its conversations hand back
    /// the seqs they leased and did not use (written with the next bridge requests).
    pub fn release_leases(&mut self) {
        self.home.release_leases();
    }

    /// Asks every connection to close with 1001 (graceful shutdown).
    pub fn begin_shutdown(&mut self) {
        self.conns.begin_shutdown();
    }

    /// A message from shard `from` (possibly this one).
    pub fn on_shard_msg(&mut self, from: ShardId, msg: ShardMsg, now: Now) {
        self.sh.now = now;
        self.handle(from, msg);
        self.pump();
    }

    /// Hands a message to the role it is for.
    fn handle(&mut self, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Home(m) => self.home.handle(&mut self.sh, from, m),
            ShardMsg::Conn(m) => self.conns.handle(&mut self.sh, from, m),
            ShardMsg::Dispatch(m) => {
                let listing = self.home.is_listing();
                let d = self.dispatch.as_mut().expect(ONLY_DISPATCHER);
                d.handle(&mut self.sh, from, m, listing);
            }
            ShardMsg::Link(m) => self.to_bridge.push(m),
        }
    }

    /// Handles messages this shard sent to itself.
    fn pump(&mut self) {
        while let Some(msg) = self.sh.local.pop_front() {
            self.handle(self.sh.id, msg);
        }
    }
}
