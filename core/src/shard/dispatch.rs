//! The dispatcher role, on the dispatcher shard only: which agent has which conversation.
//!
//! Owns the [`Dispatcher`] (agents online and their load, the waiting queue, who has what),
//! returning visitors' lookups held while the start-up listing of open conversations is out,
//! and the clock of queue position updates. It takes [`DispatchMsg`]s: conversations opened
//! (`Enqueue`), loaded or listed after a restart (`Restore`) and closed (`ConvClosed`),
//! agent devices coming and going (`AgentOnline`, `AgentOffline`), and lookups
//! (`FindOpenConv`). It is consulted once per conversation and per agent connect, never per
//! message; it tells home shards about assignments and queue positions ([`HomeMsg`]) and
//! answers connections' shards ([`ConnMsg`]).

use crate::assignment::{Dispatch, Dispatcher, Route, TransferRefused};
use crate::conn::ConnKey;
use crate::messages::{ConnMsg, DispatchMsg, HomeMsg, Reply, ShardMsg};
use crate::routing::ShardId;
use crate::shard::shared::{error_frame, Shared};
use switchboard_protocol::bridge::{BotMode, BridgeMsg, OpenConv};
use switchboard_protocol::ErrorCode;
use switchboard_protocol::{AgentId, ConvId, VisitorId};

/// Open conversations the dispatcher lists from the store at start, at most.
pub(super) const OPEN_LISTED: u32 = 1_000_000;
/// How long the dispatcher holds lookups for the start-up listing before answering from
/// what it knows (the bridge may be down), and how many it holds.
const LOOKUP_WAIT_MS: u64 = 5_000;
const LOOKUPS_HELD_MAX: usize = 100_000;

/// A returning visitor's lookup held by the dispatcher until the start-up listing is in.
#[derive(Debug)]
struct HeldLookup {
    from: ShardId,
    visitor: VisitorId,
    conn: ConnKey,
    since_ms: u64,
}

/// Assignment and the waiting queue. See the module docs.
#[derive(Debug)]
pub(super) struct DispatchRole {
    dispatcher: Dispatcher,
    /// Lookups waiting for the start-up listing.
    held_lookups: Vec<HeldLookup>,
    last_queue_update: u64,
    /// Every agent device counted, by its shard and key: announcing one twice changes
    /// nothing.
    devices: std::collections::HashSet<(ShardId, ConnKey)>,
}

impl DispatchRole {
    pub fn new(agent_capacity: u32) -> Self {
        Self {
            dispatcher: Dispatcher::new(agent_capacity),
            held_lookups: Vec::new(),
            last_queue_update: 0,
            devices: Default::default(),
        }
    }

    /// A message for the dispatcher. `listing`: whether the start-up listing of open
    /// conversations is still out (a lookup then waits for it).
    pub fn handle(&mut self, sh: &mut Shared, from: ShardId, msg: DispatchMsg, listing: bool) {
        match msg {
            DispatchMsg::Restore {
                conv,
                visitor,
                agent,
                site,
            } => self.restore(sh, conv, visitor, agent, site),
            DispatchMsg::Enqueue {
                conv,
                visitor,
                priority,
                route,
            } => {
                let out = self.dispatcher.enqueue_at(conv, visitor, priority, route);
                self.dispatch(sh, out);
            }
            DispatchMsg::AgentOnline {
                agent,
                conn,
                teams,
                site,
            } => {
                // A device announced again (its shard saw the dispatcher change, or this
                // new dispatcher asked) counts once.
                if !self.devices.insert((from, conn)) {
                    return;
                }
                self.dispatcher.set_profile(&agent, site, teams);
                if !self.dispatcher.is_online(&agent) {
                    presence(sh, vec![agent.to_string()], Vec::new());
                }
                let (open, out) = self.dispatcher.agent_online(&agent, from);
                sh.send(from, ConnMsg::AgentConvs { conn, convs: open });
                // A new device of an agent who is away shows it too.
                if self.dispatcher.is_away(&agent) {
                    let frame = presence_frame(true);
                    sh.send(from, ConnMsg::ToConn { conn, frame });
                }
                self.dispatch(sh, out);
            }
            DispatchMsg::AgentOffline { agent, conn } => {
                if !self.devices.remove(&(from, conn)) {
                    return;
                }
                self.dispatcher.agent_offline(&agent, from);
                if !self.dispatcher.is_online(&agent) {
                    presence(sh, Vec::new(), vec![agent.to_string()]);
                }
                self.refresh_stats(sh);
            }
            DispatchMsg::Away { agent, away } => {
                let out = self.dispatcher.set_away(&agent, away);
                // Every device of the agent (the one that said it included) shows the same.
                if self.dispatcher.is_online(&agent) {
                    let frame = presence_frame(self.dispatcher.is_away(&agent));
                    for shard in self.dispatcher.shards_of(&agent) {
                        let msg = ConnMsg::ToAgent {
                            agent: agent.clone(),
                            frame: frame.clone(),
                        };
                        sh.send(shard, msg);
                    }
                }
                self.dispatch(sh, out);
            }
            DispatchMsg::ConvClosed { conv, agent } => {
                let out = self.dispatcher.closed(conv, agent.as_ref());
                self.dispatch(sh, out);
            }
            DispatchMsg::Handoff {
                conv,
                priority,
                team,
            } => {
                let out = self.dispatcher.handoff(conv, priority, team);
                self.dispatch(sh, out);
            }
            DispatchMsg::Prioritize { conv, priority } => {
                self.dispatcher.prioritize(conv, priority);
            }
            DispatchMsg::Transfer {
                conv,
                from,
                to,
                team,
                note,
                reply,
            } => match self
                .dispatcher
                .transfer(conv, &from, to.as_ref(), team.as_deref())
            {
                Ok(out) => {
                    // The home shard lets `from` go first, then hears where it went.
                    let gone = HomeMsg::Transferred {
                        conv,
                        from,
                        to,
                        note,
                    };
                    sh.send(sh.home(conv), gone);
                    self.dispatch(sh, out);
                    if let Reply::Api { shard, id } = reply {
                        sh.send(shard, ShardMsg::command_done(id, None));
                    }
                    if reply == Reply::Quiet {
                        sh.stats.rerouted += 1;
                    }
                }
                Err(why) => {
                    let message = match why {
                        TransferRefused::NotYours => "not your conversation",
                        TransferRefused::Unavailable => {
                            "that agent is offline, has no room, or is you"
                        }
                    };
                    match reply {
                        Reply::Conn { shard, conn } => {
                            sh.stats.errors_sent += 1;
                            let frame = error_frame(ErrorCode::Forbidden, message, None);
                            sh.send(shard, ConnMsg::ToConn { conn, frame });
                        }
                        Reply::Api { shard, id } => {
                            sh.send(shard, ShardMsg::command_done(id, Some(message)))
                        }
                        Reply::Quiet => {}
                    }
                }
            },
            DispatchMsg::FindOpenConv { visitor, conn } => {
                if listing && self.held_lookups.len() < LOOKUPS_HELD_MAX {
                    // Just started: the visitor's conversation may be among those listed.
                    self.held_lookups.push(HeldLookup {
                        from,
                        visitor,
                        conn,
                        since_ms: sh.now.mono_ms,
                    });
                    return;
                }
                let conv = self.dispatcher.open_conv_of(visitor);
                sh.send(from, ConnMsg::OpenConvIs { conn, conv });
            }
        }
    }

    /// The bot's mode, as the bridge told this shard's link (`Off` when the link is lost).
    pub fn set_bot_mode(&mut self, sh: &mut Shared, mode: BotMode) {
        let out = self.dispatcher.set_mode(mode);
        self.dispatch(sh, out);
    }

    /// A page of the start-up listing is in (an empty last one if it failed): each open
    /// conversation is restored; after the last page every held lookup is answered.
    pub fn listed(&mut self, sh: &mut Shared, listed: Vec<OpenConv>, done: bool) {
        for o in listed {
            let agent = o.agent.as_deref().and_then(AgentId::new);
            self.restore(sh, o.conv, o.visitor, agent, o.site);
        }
        if done {
            self.answer_held_lookups(sh, u64::MAX);
        }
    }

    /// A conversation open in the store: back to its agent, or to the queue without one.
    fn restore(
        &mut self,
        sh: &mut Shared,
        conv: ConvId,
        visitor: VisitorId,
        agent: Option<AgentId>,
        site: Option<String>,
    ) {
        let out = match agent {
            None => self
                .dispatcher
                .enqueue_at(conv, visitor, 0, Route::site(site)),
            Some(agent) => self.dispatcher.restore(conv, visitor, agent, site),
        };
        self.dispatch(sh, out);
    }

    /// Answers the lookups held too long for the start-up listing.
    pub fn answer_overdue_lookups(&mut self, sh: &mut Shared) {
        if !self.held_lookups.is_empty() {
            let asked_by = sh.now.mono_ms.saturating_sub(LOOKUP_WAIT_MS);
            self.answer_held_lookups(sh, asked_by);
        }
    }

    /// Tells waiting visitors their place in the queue, every `queue_update_interval`.
    pub fn update_positions(&mut self, sh: &mut Shared) {
        let now = sh.now;
        let interval = sh.cfg.queue_update_interval.as_millis() as u64;
        if now.mono_ms >= self.last_queue_update + interval {
            self.last_queue_update = now.mono_ms;
            let updates = self.dispatcher.position_updates();
            self.dispatch(sh, updates);
        }
    }

    /// Answers the held lookups asked at or before `asked_by_ms` from what the dispatcher
    /// knows now.
    fn answer_held_lookups(&mut self, sh: &mut Shared, asked_by_ms: u64) {
        let (due, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held_lookups)
            .into_iter()
            .partition(|h| h.since_ms <= asked_by_ms);
        self.held_lookups = held;
        for h in due {
            let conv = self.dispatcher.open_conv_of(h.visitor);
            sh.send(h.from, ConnMsg::OpenConvIs { conn: h.conn, conv });
        }
    }

    /// The shards for which `alive` says no are gone with their node: their agents' devices
    /// with them.
    pub fn shards_gone(&mut self, sh: &mut Shared, alive: impl Fn(ShardId) -> bool) {
        self.devices.retain(|(s, _)| alive(*s));
        let gone = self.dispatcher.shards_gone(alive);
        if !gone.is_empty() {
            presence(sh, Vec::new(), gone.iter().map(|a| a.to_string()).collect());
        }
        self.refresh_stats(sh);
    }

    /// Everyone online, for a new link to the bridge.
    pub fn presence_now(&self) -> BridgeMsg {
        BridgeMsg::Presence {
            online: self.dispatcher.online(),
            offline: Vec::new(),
            full: true,
        }
    }

    fn refresh_stats(&self, sh: &mut Shared) {
        sh.stats.queue_len = self.dispatcher.queue_len() as u64;
        sh.stats.agents_online = self.dispatcher.online_agents() as u64;
        sh.stats.with_bot = self.dispatcher.with_bot_len() as u64;
    }

    /// Sends the dispatcher's decisions to the conversations' home shards.
    fn dispatch(&mut self, sh: &mut Shared, out: Vec<Dispatch>) {
        for d in out {
            match d {
                Dispatch::Assign {
                    conv,
                    agent,
                    agent_shards,
                    ..
                } => sh.send(
                    sh.home(conv),
                    HomeMsg::Assign {
                        conv,
                        agent,
                        agent_shards,
                    },
                ),
                Dispatch::Position { conv, position } => {
                    let offline = self.dispatcher.nobody_online_for(conv);
                    let msg = HomeMsg::QueuePosition {
                        conv,
                        position,
                        offline,
                    };
                    sh.send(sh.home(conv), msg)
                }
                Dispatch::WithBot { conv } => sh.send(sh.home(conv), HomeMsg::WithBot { conv }),
            }
        }
        self.refresh_stats(sh);
    }
}

/// The `presence` frame an agent's devices are told.
fn presence_frame(away: bool) -> bytes::Bytes {
    let status = if away { "away" } else { "online" };
    switchboard_protocol::server::encode(&switchboard_protocol::server::ServerFrame::Presence {
        status: status.into(),
    })
}

/// Tells the bridge (on this, the dispatcher shard's, link) who came online or went offline.
fn presence(sh: &mut Shared, online: Vec<String>, offline: Vec<String>) {
    let msg = BridgeMsg::Presence {
        online,
        offline,
        full: false,
    };
    sh.send(sh.id, ShardMsg::Link(msg));
}
