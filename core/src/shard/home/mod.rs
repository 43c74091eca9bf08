//! The conversation-home role of a shard: the conversations whose home is this shard.
//!
//! Owns their state ([`Conversation`]: seq, participants, subscribers, window, dedupe, acks
//! waiting for the store), the closed ones it still remembers, their idle-close checks, and
//! the shard's link to the storage bridge ([`StoreLink`]). It takes [`HomeMsg`]s: a message
//! is sequenced, stored, acknowledged and fanned out once to each shard with subscribers
//! (`Deliver`); a subscription is answered with its replay (from the window, or the store
//! past it); history, signals, assignment, queue positions and closing. After a restart a
//! conversation is loaded from the store the first time a message needs it (the message
//! waits in the link meanwhile). It answers connections with [`ConnMsg`]s and tells the
//! dispatcher ([`DispatchMsg`]) about new, restored and closed conversations.

mod assist;
mod link;
mod reads;
mod reply;

use reads::Wait;

use crate::config::CoreConfig;
use crate::conn::ConnKey;
use crate::conversation::{AckWaiter, Conversation, Posted};
use crate::idle::IdleWheel;
use crate::messages::{ConnMsg, DispatchMsg, HomeMsg, ReplayNext, Reply, ShardMsg};
use crate::persist::StoreLink;
use crate::routing::ShardId;
use crate::shard::shared::Shared;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use switchboard_protocol::bridge::{ApiAction, ConvEvent, OpenConv, StoredMessage};
use switchboard_protocol::server::{encode, CloseReason, ServerFrame, BOT_ID, SYSTEM_ID};
use switchboard_protocol::{AgentId, ConvId, ErrorCode, ParticipantId};

/// The bytes of frames one page of a replay or one `history` answer holds, about: a
/// quarter of what a connection may have queued, so that a page and live traffic fit.
fn page_budget(sh: &Shared) -> usize {
    sh.cfg.max_outbox_bytes / 4
}

/// Closed conversations remembered (to answer late frames with `conversation_closed`).
const CLOSED_REMEMBERED: usize = 100_000;
/// Who the store records as having closed an idle conversation.
pub const IDLE_CLOSER: &str = "(idle)";

/// What waits for a conversation to load: a message and the shard it came from.
type Parked = (ShardId, HomeMsg);

/// The conversations homed on one shard. See the module docs.
#[derive(Debug)]
pub(super) struct HomeRole {
    /// Conversations whose home is this shard.
    convs: HashMap<ConvId, Conversation>,
    closed_order: VecDeque<ConvId>,
    /// Idle-close checks of conversations: this shard's own, and on the dispatcher shard
    /// those listed at start-up.
    conv_idle: IdleWheel<ConvId>,
    /// Re-route checks: conversations whose new agent has not answered yet.
    unanswered: IdleWheel<ConvId>,
    /// Durability through the storage bridge; `None` when running without one.
    store: Option<StoreLink<Wait, Parked>>,
}

/// The open conversations of one page of the start-up listing, and whether it is the last.
pub(super) type Listed = (Vec<OpenConv>, bool);

impl HomeRole {
    /// `list_open`: after a restart, ask the store for up to this many open conversations
    /// (the dispatcher shard does).
    pub fn new(cfg: &CoreConfig, list_open: Option<u32>) -> Self {
        Self {
            convs: HashMap::new(),
            closed_order: VecDeque::new(),
            conv_idle: IdleWheel::default(),
            unanswered: IdleWheel::default(),
            store: cfg.durable.then(|| {
                let mut link = StoreLink::default();
                if let Some(limit) = list_open {
                    // After a restart, the dispatcher learns the open conversations at once:
                    // agents get theirs back, waiting visitors get agents.
                    link.list_open(limit);
                }
                link
            }),
        }
    }

    /// The membership changed: conversations whose home is now another shard are handed
    /// over. Each hands back the seqs it leased and did not use, and is forgotten; the new
    /// home loads it from the store when it is next touched, taking a fresh lease (which
    /// fences this shard off: a later extension of its old lease is refused).
    pub fn home_moved(&mut self, sh: &mut Shared) {
        let moved: Vec<ConvId> = self
            .convs
            .keys()
            .copied()
            .filter(|&c| sh.home(c) != sh.id)
            .collect();
        for conv in moved {
            let Some(mut c) = self.convs.remove(&conv) else {
                continue;
            };
            if !c.is_closed() {
                sh.stats.open_conversations -= 1;
            }
            if let (Some(link), Some((at, held))) = (self.store.as_mut(), c.lease_release()) {
                link.event(ConvEvent::SeqRelease { conv, at, held });
            }
        }
        self.closed_order.retain(|c| self.convs.contains_key(c));
    }

    /// The store refused to extend these conversations' leases: another node has loaded
    /// them since (docs/cluster.md, "Fencing"). Each is forgotten without handing anything
    /// back, and its subscribers, wherever they are, are closed with 1001 to resume at the
    /// new home. Seqs already handed out stay below the new home's lease.
    pub fn fenced(&mut self, sh: &mut Shared, convs: Vec<ConvId>) {
        for conv in convs {
            let Some(c) = self.convs.remove(&conv) else {
                continue;
            };
            if !c.is_closed() {
                sh.stats.open_conversations -= 1;
            }
            sh.stats.fenced += 1;
            for shard in c.subscriber_shards() {
                sh.send(shard, ConnMsg::Moved { conv });
            }
        }
        self.closed_order.retain(|c| self.convs.contains_key(c));
    }

    /// Asks the store for the open conversations (this shard became the dispatcher's).
    pub fn list_open(&mut self) {
        if let Some(link) = self.store.as_mut() {
            link.list_open(crate::shard::dispatch::OPEN_LISTED);
        }
    }

    /// Idle-close checks that came due: this shard's own are handled here, the rest (the
    /// dispatcher's, listed at start-up) go to their home shards.
    pub fn tick(&mut self, sh: &mut Shared) {
        let id = sh.id;
        for conv in self.unanswered.take_due(sh.now.mono_ms) {
            self.reroute_if_unanswered(sh, conv);
        }
        for conv in self.conv_idle.take_due(sh.now.mono_ms) {
            let home = sh.home(conv);
            if home != sh.id {
                sh.send(home, HomeMsg::IdleCheck { conv });
                continue;
            }
            if let Some(c) = self.convs.get_mut(&conv) {
                c.idle_check_taken();
            }
            self.handle(sh, id, HomeMsg::IdleCheck { conv });
        }
    }

    /// Files an idle-close check of `conv` (in memory, open) at its deadline, unless one is
    /// filed already.
    fn watch_idle(&mut self, sh: &mut Shared, conv: ConvId) {
        let Some(idle) = sh.cfg.conversation_idle_close else {
            return;
        };
        let Some(c) = self.convs.get_mut(&conv).filter(|c| !c.is_closed()) else {
            return;
        };
        if c.watch_idle() {
            self.conv_idle
                .schedule(conv, c.idle_deadline_ms(idle.as_millis() as u64));
        }
    }

    /// `conv`'s agent has not written in it since it was assigned, for `reroute_after`: it
    /// goes to another agent with room (of its site), or, with none, stays and is checked
    /// again a period later.
    fn reroute_if_unanswered(&mut self, sh: &mut Shared, conv: ConvId) {
        let Some(after) = sh.cfg.reroute_after else {
            return;
        };
        let Some(c) = self.convs.get(&conv).filter(|c| !c.is_closed()) else {
            return;
        };
        // Only the entry of the current assignment's deadline counts (an earlier
        // assignment's, or a second entry for the same, finds another deadline).
        let agent = match (c.agent(), c.notes().and_then(|n| n.unanswered_by.as_ref())) {
            (Some(a), Some((waiting, due))) if a == waiting && sh.now.mono_ms >= *due => a.clone(),
            _ => return,
        };
        let msg = DispatchMsg::Transfer {
            conv,
            from: agent,
            to: None,
            team: None,
            note: Some(format!("no answer within {} s", after.as_secs())),
            reply: Reply::Quiet,
        };
        sh.send(sh.dispatcher(), msg);
        // Nobody else with room: it stays, and is looked at again a period later.
        let at = sh.now.mono_ms + after.as_millis() as u64;
        let c = self.convs.get_mut(&conv).expect("present above");
        if let Some((_, due)) = c.notes_mut().unanswered_by.as_mut() {
            *due = at;
        }
        self.unanswered.schedule(conv, at);
    }

    /// Closes `conv`: by its agent, or (`None`) because it was idle. Tells every
    /// participant, the store and the dispatcher.
    fn close_conversation(&mut self, sh: &mut Shared, conv: ConvId, by: Option<AgentId>) {
        let frame = encode(&ServerFrame::Closed {
            conv,
            by: by.as_ref().map(|a| a.to_string().into()),
            reason: match by {
                Some(_) => CloseReason::Agent,
                None => CloseReason::Idle,
            },
        });
        self.fanout(sh, conv, frame, None, true);
        let Some(c) = self.convs.get_mut(&conv) else {
            return;
        };
        let agent = c.agent().cloned();
        c.close();
        sh.stats.open_conversations -= 1;
        self.closed_order.push_back(conv);
        if self.closed_order.len() > CLOSED_REMEMBERED {
            if let Some(old) = self.closed_order.pop_front() {
                self.convs.remove(&old);
            }
        }
        if let Some(link) = self.store.as_mut() {
            link.event(ConvEvent::Closed {
                conv,
                // Not a possible agent id: agents' ids have no parentheses.
                by: by.map_or_else(|| IDLE_CLOSER.to_string(), |a| a.to_string()),
                ts: sh.now.unix_ms,
            });
        }
        sh.send(sh.dispatcher(), DispatchMsg::ConvClosed { conv, agent });
    }

    /// The REST API's close or transfer of `conv`, as agent `by` (the bridge checked that it
    /// may). The outcome goes to the bridge on shard `reply`'s link.
    fn api_command(
        &mut self,
        sh: &mut Shared,
        id: u64,
        conv: ConvId,
        by: AgentId,
        action: ApiAction,
        reply: ShardId,
    ) {
        let done = |sh: &mut Shared, error: Option<&str>| {
            sh.send(reply, ShardMsg::command_done(id, error));
        };
        let Some(c) = self.convs.get(&conv) else {
            return done(sh, Some("no such conversation"));
        };
        if c.is_closed() {
            return done(sh, Some("the conversation is closed"));
        }
        match action {
            ApiAction::Post { cid, body } => {
                if self.store_behind(sh) {
                    return done(sh, Some("storage is behind; resend with the same cid"));
                }
                let ts = sh.now.unix_ms;
                let c = self.convs.get_mut(&conv).expect("present above");
                let posted = c.post_system(&cid, &body, ts);
                let sender = SYSTEM_ID.to_owned();
                match self.after_post(sh, conv, posted, sender, &cid, &body, ts, None) {
                    Posted::NoLease => {
                        done(sh, Some("storage is behind; resend with the same cid"))
                    }
                    Posted::New { .. } | Posted::Duplicate { .. } => done(sh, None),
                }
            }
            ApiAction::Close => {
                self.close_conversation(sh, conv, Some(by));
                done(sh, None);
            }
            ApiAction::Transfer { to, team, note } => {
                let Some(agent) = c.agent().cloned() else {
                    return done(sh, Some("no agent has it yet: it waits in the queue"));
                };
                let to = match to.as_deref().map(AgentId::new) {
                    Some(None) => return done(sh, Some("`to` is not an agent id")),
                    Some(Some(a)) => Some(a),
                    None => None,
                };
                let msg = DispatchMsg::Transfer {
                    conv,
                    from: agent,
                    to,
                    team,
                    note,
                    reply: Reply::Api { shard: reply, id },
                };
                sh.send(sh.dispatcher(), msg);
            }
        }
    }

    /// A message for conversations whose home is this shard.
    pub fn handle(&mut self, sh: &mut Shared, from: ShardId, msg: HomeMsg) {
        // After a restart, a conversation may exist only in the store: load it first.
        if let (Some(link), Some(conv)) = (self.store.as_mut(), msg.home_conv()) {
            if !self.convs.contains_key(&conv) && !link.is_missing(conv) {
                let (recent, cids) = (sh.cfg.window as u32, sh.cfg.dedupe_window as u32);
                link.park(conv, (from, msg), recent, cids, sh.cfg.seq_lease);
                return;
            }
        }
        match msg {
            HomeMsg::Open {
                conv,
                visitor,
                priority,
                route,
                context,
                conn,
                cid,
                body,
                ts,
            } => {
                let c = self.convs.entry(conv).or_insert_with(|| {
                    Conversation::new(conv, visitor, sh.cfg.window, sh.cfg.dedupe_window)
                });
                c.subscribe(from, conn);
                c.touch(sh.now.mono_ms);
                if route.site.is_some() {
                    c.notes_mut().site = route.site.clone();
                }
                sh.stats.open_conversations += 1;
                if let Some(link) = self.store.as_mut() {
                    link.created(conv);
                    let lease = c.lease_opened(sh.cfg.seq_lease);
                    link.event(ConvEvent::Opened {
                        conv,
                        visitor,
                        ts,
                        lease,
                        site: route.site.clone(),
                    });
                    if let Some(context) = &context {
                        link.event(ConvEvent::Context {
                            conv,
                            context: (**context).clone(),
                        });
                    }
                }
                if let Some(context) = context {
                    if let Some(c) = self.convs.get_mut(&conv) {
                        c.notes_mut().context = *context;
                    }
                }
                self.post(
                    sh,
                    from,
                    conn,
                    conv,
                    ParticipantId::Visitor(visitor),
                    &cid,
                    &body,
                    ts,
                );
                if priority != 0 {
                    // Its agent sees why it came first.
                    if let Some(c) = self.convs.get_mut(&conv) {
                        let notes = c.notes_mut();
                        notes.priority = Some(priority);
                        notes.labels.insert("visitor".into(), "vip".into());
                    }
                }
                if let Some(t) = &route.team {
                    if let Some(c) = self.convs.get_mut(&conv) {
                        c.notes_mut().labels.insert("team".into(), t.clone());
                    }
                }
                let enqueue = DispatchMsg::Enqueue {
                    conv,
                    visitor,
                    priority,
                    route,
                };
                sh.send(sh.dispatcher(), enqueue);
                self.watch_idle(sh, conv);
            }
            HomeMsg::Post {
                conv,
                conn,
                who,
                cid,
                body,
                ts,
            } => {
                if self.check_participant(sh, from, conn, conv, &who, Some(&cid)) {
                    self.post(sh, from, conn, conv, who, &cid, &body, ts);
                }
            }
            HomeMsg::Signal {
                conv,
                conn,
                who,
                signal,
            } => {
                if self.check_participant(sh, from, conn, conv, &who, None) {
                    let frame = reply::signal_frame(conv, &who, signal);
                    self.fanout(sh, conv, frame, Some((from, conn)), false);
                }
            }
            HomeMsg::Subscribe {
                conv,
                conn,
                who,
                observer,
                last_seq,
                chain,
            } => {
                if let Some((code, message)) = self.refusal(conv, &who, &observer) {
                    reply::refuse_subscribe(sh, from, conn, conv, code, message, chain);
                    return;
                }
                let c = self.convs.get_mut(&conv).expect("checked above");
                c.subscribe(from, conn);
                let next = ReplayNext {
                    after: last_seq,
                    replayed: 0,
                    complete: true,
                    chain,
                };
                self.replay_from(sh, from, conn, conv, next);
            }
            HomeMsg::ReplayMore {
                conv,
                conn,
                who,
                observer,
                next,
            } => {
                // A replay goes on even if the conversation closed meanwhile: participants
                // may read a closed conversation; its last page then says it is closed.
                match self.refusal(conv, &who, &observer) {
                    Some((code, message)) if code != ErrorCode::ConversationClosed => {
                        reply::refuse_subscribe(sh, from, conn, conv, code, message, next.chain)
                    }
                    _ => self.replay_from(sh, from, conn, conv, next),
                }
            }
            HomeMsg::Unsubscribe { conv, conn } => {
                if let Some(c) = self.convs.get_mut(&conv) {
                    c.unsubscribe(from, conn);
                }
            }
            HomeMsg::Close { conv, conn, who } => {
                if matches!(who, ParticipantId::Visitor(_)) {
                    let message = "only agents close conversations";
                    reply::error(sh, from, conn, ErrorCode::Forbidden, message, None);
                    return;
                }
                if !self.check_participant(sh, from, conn, conv, &who, None) {
                    return;
                }
                if let ParticipantId::Agent(agent) = who {
                    self.close_conversation(sh, conv, Some(agent));
                }
            }
            HomeMsg::IdleCheck { conv } => {
                let Some(idle) = sh.cfg.conversation_idle_close else {
                    return;
                };
                let Some(c) = self.convs.get(&conv).filter(|c| !c.is_closed()) else {
                    return;
                };
                if sh.now.mono_ms >= c.idle_deadline_ms(idle.as_millis() as u64) {
                    sh.stats.idle_closed += 1;
                    self.close_conversation(sh, conv, None);
                } else {
                    self.watch_idle(sh, conv);
                }
            }
            HomeMsg::Assign {
                conv,
                agent,
                agent_shards,
            } => {
                let Some(c) = self.convs.get_mut(&conv).filter(|c| !c.is_closed()) else {
                    return;
                };
                // A new agent (not one told again after a restart) must answer in time.
                if let Some(after) = sh.cfg.reroute_after {
                    if c.agent() != Some(&agent) {
                        let at = sh.now.mono_ms + after.as_millis() as u64;
                        c.notes_mut().unanswered_by = Some((agent.clone(), at));
                        self.unanswered.schedule(conv, at);
                    }
                }
                let c = self.convs.get_mut(&conv).expect("present above");
                c.assign(agent.clone());
                let visitor = c.visitor();
                if let Some(link) = self.store.as_mut() {
                    let ts = sh.now.unix_ms;
                    link.event(ConvEvent::Assigned {
                        conv,
                        agent: agent.to_string(),
                        ts,
                    });
                }
                let frame = encode(&ServerFrame::AgentJoined {
                    conv,
                    agent: agent.as_str().into(),
                });
                self.fanout(sh, conv, frame, None, false);
                let notes = self.convs.get(&conv).and_then(|c| c.notes());
                reply::agent_assigned(sh, &agent_shards, conv, visitor, &agent, notes);
            }
            HomeMsg::Whisper {
                conv,
                conn,
                who,
                observer,
                body,
            } => {
                let ParticipantId::Agent(agent) = &who else {
                    let message = "only supervisors whisper";
                    reply::error(sh, from, conn, ErrorCode::Forbidden, message, None);
                    return;
                };
                if let Some((code, message)) = self.refusal(conv, &who, &observer) {
                    reply::error(sh, from, conn, code, message, None);
                    return;
                }
                let frame = encode(&ServerFrame::Whisper {
                    conv,
                    from: agent.as_str().into(),
                    body: body.into(),
                });
                let subscribers = self.convs[&conv].subscribers().to_vec();
                reply::to_agents(sh, conv, &subscribers, frame);
            }
            HomeMsg::Api {
                id,
                conv,
                by,
                as_agent,
                action,
                reply,
            } => {
                let mine = self.convs.get(&conv).and_then(|c| c.agent()) == Some(&by);
                if as_agent && !mine {
                    let done = ShardMsg::command_done(id, Some("not your conversation"));
                    sh.send(reply, done);
                    return;
                }
                self.api_command(sh, id, conv, by, action, reply)
            }
            HomeMsg::Context { conv, who, context } => {
                // Only its visitor says where it is.
                let Some(c) = self
                    .convs
                    .get_mut(&conv)
                    .filter(|c| !c.is_closed() && who == ParticipantId::Visitor(c.visitor()))
                else {
                    return;
                };
                if c.notes().is_some_and(|n| n.context == *context) {
                    return;
                }
                c.notes_mut().context = (*context).clone();
                if let Some(link) = self.store.as_mut() {
                    link.event(ConvEvent::Context {
                        conv,
                        context: *context,
                    });
                }
            }
            HomeMsg::Rate {
                conv,
                conn,
                who,
                score,
                comment,
            } => {
                let refusal = match self.convs.get(&conv) {
                    None => Some((ErrorCode::NoConversation, "no such conversation")),
                    Some(c) if who != ParticipantId::Visitor(c.visitor()) => Some((
                        ErrorCode::Forbidden,
                        "only its visitor rates a conversation",
                    )),
                    Some(c) if !c.is_closed() => Some((
                        ErrorCode::InvalidField,
                        "a conversation is rated once it is closed",
                    )),
                    Some(_) => None,
                };
                if let Some((code, message)) = refusal {
                    reply::error(sh, from, conn, code, message, None);
                    return;
                }
                if let Some(link) = self.store.as_mut() {
                    link.event(ConvEvent::Rated {
                        conv,
                        score,
                        comment,
                        ts: sh.now.unix_ms,
                    });
                }
                let frame = encode(&ServerFrame::Rated { conv, score });
                sh.send(from, ConnMsg::ToConn { conn, frame });
            }
            HomeMsg::Transfer {
                conv,
                conn,
                who,
                to,
                team,
                note,
            } => {
                if !self.check_participant(sh, from, conn, conv, &who, None) {
                    return;
                }
                let ParticipantId::Agent(agent) = who else {
                    let message = "only agents transfer conversations";
                    reply::error(sh, from, conn, ErrorCode::Forbidden, message, None);
                    return;
                };
                let msg = DispatchMsg::Transfer {
                    conv,
                    from: agent,
                    to,
                    team,
                    note,
                    reply: Reply::Conn { shard: from, conn },
                };
                sh.send(sh.dispatcher(), msg);
            }
            HomeMsg::Transferred {
                conv,
                from: agent,
                to,
                note,
            } => {
                let Some(c) = self.convs.get_mut(&conv).filter(|c| !c.is_closed()) else {
                    return;
                };
                c.unassign();
                c.notes_mut().reason = Some(match &note {
                    Some(n) => format!("transferred by {agent}: {n}"),
                    None => format!("transferred by {agent}"),
                });
                let frame = encode(&ServerFrame::Transferred {
                    conv,
                    from: agent.as_str().into(),
                    to: to.as_ref().map(|a| a.as_str().into()),
                });
                self.fanout(sh, conv, frame, None, false);
                // Its devices leave the conversation, wherever they are.
                for shard in sh.view.all_shards().collect::<Vec<_>>() {
                    let agent = agent.clone();
                    sh.send(shard, ConnMsg::AgentLeft { conv, agent });
                }
            }
            HomeMsg::WithBot { conv } => {
                let Some(c) = self
                    .convs
                    .get_mut(&conv)
                    .filter(|c| !c.is_closed() && c.agent().is_none())
                else {
                    return;
                };
                c.set_with_bot(true);
                let frame = encode(&ServerFrame::BotJoined {
                    conv,
                    bot: BOT_ID.into(),
                });
                self.fanout(sh, conv, frame, None, false);
            }
            HomeMsg::History {
                conv,
                conn,
                who,
                observer,
                before,
                limit,
            } => {
                // Participants, and supervisors who may watch it, read it (closed too).
                let refusal = match self.convs.get(&conv) {
                    Some(c) if c.is_participant(&who) || observer.may_watch(c.site()) => None,
                    _ => Some("not a participant"),
                };
                if let Some(message) = refusal {
                    reply::error(sh, from, conn, ErrorCode::NotInConversation, message, None);
                    return;
                }
                let limit = limit.clamp(1, sh.cfg.history_max);
                let c = &self.convs[&conv];
                let covered = c.window_covers(before, limit);
                let wait = Wait::History {
                    from,
                    conn,
                    conv,
                    before,
                    limit,
                };
                match self.store.as_mut() {
                    Some(link) if !covered => {
                        let upto = before.min(c.oldest_kept().unwrap_or(before));
                        let budget = page_budget(sh);
                        link.read(wait, conv, 0, upto, limit, false, budget);
                    }
                    _ => self.answer_history(sh, wait, None),
                }
            }
            HomeMsg::QueuePosition {
                conv,
                position,
                offline,
            } => {
                if let Some(c) = self.convs.get_mut(&conv) {
                    // Queued: the bot, if it had it, handed it over.
                    c.set_with_bot(false);
                }
                if self
                    .convs
                    .get(&conv)
                    .is_some_and(|c| c.agent().is_none() && !c.is_closed())
                {
                    // With nobody of its site online, or outside the site's hours, the
                    // visitor is leaving a message: it says so, once a position is told, and
                    // the site's text says what happens next.
                    let site = self.convs.get(&conv).and_then(|c| sh.sites.get(c.site()));
                    let offline = offline || site.is_some_and(|s| !s.is_open(sh.now.unix_ms));
                    let text = site
                        .and_then(|s| s.offline_text.as_deref())
                        .unwrap_or(&sh.cfg.offline_text);
                    let offline_text = offline.then(|| text.into());
                    let frame = encode(&ServerFrame::Queued {
                        conv,
                        position,
                        offline,
                        offline_text,
                    });
                    self.fanout(sh, conv, frame, None, false);
                }
            }
        }
    }

    /// Acks of `conv` up to `seq`: sent when the store committed them, errors otherwise.
    fn settle_acks(&mut self, sh: &mut Shared, conv: ConvId, seq: u64, ok: bool) {
        let Some(c) = self.convs.get_mut(&conv) else {
            return;
        };
        let settled = if ok {
            c.confirm(seq)
        } else {
            c.fail_acks_up_to(seq)
        };
        reply::settled(sh, conv, settled, ok);
    }

    /// Why `who` may not act in `conv` (on its home shard), if it may not. An `observer`
    /// (a supervisor) may watch and whisper in a conversation it is not in.
    fn refusal(
        &self,
        conv: ConvId,
        who: &ParticipantId,
        observer: &crate::messages::Watch,
    ) -> Option<(ErrorCode, &'static str)> {
        match self.convs.get(&conv) {
            None => Some((ErrorCode::NotInConversation, "no such conversation")),
            Some(c) if !observer.may_watch(c.site()) && !c.is_participant(who) => {
                Some((ErrorCode::NotInConversation, "not a participant"))
            }
            Some(c) if c.is_closed() => {
                Some((ErrorCode::ConversationClosed, "conversation is closed"))
            }
            Some(_) => None,
        }
    }

    /// Whether `who` may act in `conv`; answers the sender if not.
    fn check_participant(
        &mut self,
        sh: &mut Shared,
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        who: &ParticipantId,
        cid: Option<&str>,
    ) -> bool {
        match self.refusal(conv, who, &crate::messages::Watch::No) {
            None => true,
            Some((code, message)) => {
                reply::error(sh, from, conn, code, message, cid);
                false
            }
        }
    }

    /// On the home shard: sequence a message, acknowledge it, deliver it.
    #[allow(clippy::too_many_arguments)]
    fn post(
        &mut self,
        sh: &mut Shared,
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        who: ParticipantId,
        cid: &str,
        body: &str,
        ts: u64,
    ) {
        if self.store_behind(sh) {
            sh.stats.overloaded += 1;
            let message = "storage is behind; resend with the same cid";
            reply::error(sh, from, conn, ErrorCode::Overloaded, message, Some(cid));
            return;
        }
        let c = self.convs.get_mut(&conv).expect("caller checked");
        let from_label = who.to_string();
        if matches!(who, ParticipantId::Agent(_)) {
            c.agent_answered();
        }
        let posted = c.post_from(&who, &from_label, cid, body, ts);
        let exclude = Some((from, conn));
        let seq = match self.after_post(sh, conv, posted, from_label, cid, body, ts, exclude) {
            Posted::NoLease => {
                sh.stats.overloaded += 1;
                let message = "storage is behind; resend with the same cid";
                reply::error(sh, from, conn, ErrorCode::Overloaded, message, Some(cid));
                return;
            }
            Posted::New { seq, .. } => {
                sh.stats.messages_posted += 1;
                seq
            }
            Posted::Duplicate { seq } => {
                sh.stats.duplicates += 1;
                seq
            }
        };
        let c = self.convs.get_mut(&conv).expect("caller checked");
        if self.store.is_some() && !c.is_confirmed(seq) {
            // `ack` means durably stored: it waits for the bridge.
            c.hold_ack(AckWaiter {
                seq,
                shard: from,
                conn,
                cid: cid.into(),
            });
            return;
        }
        reply::ack(sh, from, conn, conv, cid, seq);
    }

    /// What follows sequencing a message in `conv` (from `sender`): the lease extension it
    /// may need is written, and a new message is stored and delivered to every subscriber
    /// but `exclude`. A `New` comes back with its frame taken (empty).
    #[allow(clippy::too_many_arguments)]
    fn after_post(
        &mut self,
        sh: &mut Shared,
        conv: ConvId,
        posted: Posted,
        sender: String,
        cid: &str,
        body: &str,
        ts: u64,
        exclude: Option<(ShardId, ConnKey)>,
    ) -> Posted {
        let c = self.convs.get_mut(&conv).expect("caller checked");
        let lease = self
            .store
            .as_ref()
            .and_then(|_| c.lease_wanted(sh.cfg.seq_lease));
        if let (Some((upto, epoch)), Some(link)) = (lease, self.store.as_mut()) {
            link.event(ConvEvent::SeqLease { conv, upto, epoch });
        }
        let Posted::New { seq, frame } = posted else {
            return posted;
        };
        c.touch(sh.now.mono_ms);
        if let Some(link) = self.store.as_mut() {
            link.record(StoredMessage {
                conv,
                seq,
                sender,
                cid: cid.into(),
                body: body.into(),
                ts,
            });
        }
        // The frame moves on to the fan-out: callers only need the seq.
        self.fanout(sh, conv, frame, exclude, false);
        Posted::New {
            seq,
            frame: Bytes::new(),
        }
    }

    /// Whether the store is so far behind that new messages are refused.
    fn store_behind(&self, sh: &Shared) -> bool {
        self.store
            .as_ref()
            .is_some_and(|l| l.backlog() >= sh.cfg.max_unconfirmed)
    }

    /// One `Deliver` to each shard with subscribers of `conv`.
    fn fanout(
        &mut self,
        sh: &mut Shared,
        conv: ConvId,
        frame: Bytes,
        exclude: Option<(ShardId, ConnKey)>,
        closes: bool,
    ) {
        if let Some(c) = self.convs.get(&conv) {
            reply::fanout(sh, conv, c.subscribers(), frame, exclude, closes);
        }
    }
}
