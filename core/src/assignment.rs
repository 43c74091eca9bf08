//! The dispatcher: gives each new conversation to the online agent with the fewest open
//! conversations (up to a capacity), and queues the rest: higher priority first, first-in
//! first-out within a priority.
//!
//! With a bot ([`BotMode`], told by the storage bridge), a new conversation may go to the bot
//! instead ([`Dispatch::WithBot`]): always (`bot_first`) or while no agent is online
//! (`when_no_agent`). The bot hands it over ([`Dispatcher::handoff`]) when it cannot help;
//! and every conversation it has goes to the queue at once when the bot goes away (the
//! mode turns `off`, the bridge is lost) or, with `when_no_agent`, when an agent comes
//! online. The human path never depends on the bot answering.
//!
//! It runs on one shard ([`crate::routing::DISPATCHER_SHARD`]) because it needs a view of
//! every agent; it is consulted once per conversation and once per agent connect or
//! disconnect, never per message.

use crate::routing::ShardId;
use std::collections::{HashMap, VecDeque};
use switchboard_protocol::bridge::BotMode;
use switchboard_protocol::{AgentId, ConvId, VisitorId};

/// What the dispatcher asks the rest of the gateway to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// `conv` now belongs to `agent`, whose devices are on `agent_shards`.
    Assign {
        conv: ConvId,
        visitor: VisitorId,
        agent: AgentId,
        agent_shards: Vec<ShardId>,
    },
    /// `conv` waits in the queue at `position` (1 is next).
    Position { conv: ConvId, position: u32 },
    /// The bot has `conv` until it hands it over.
    WithBot { conv: ConvId },
}

/// Who may take a conversation: agents of its site (none: the default site), and of its
/// team when it names one. Nothing crosses sites.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub site: Option<String>,
    pub team: Option<String>,
}

impl Route {
    pub fn site(site: Option<String>) -> Self {
        Self { site, team: None }
    }
}

#[derive(Debug, Default)]
struct Agent {
    /// Connected devices per shard.
    devices: Vec<(ShardId, u32)>,
    open: Vec<(ConvId, VisitorId)>,
    /// Order of coming online, to break ties between equally loaded agents.
    online_since: u64,
    /// The teams it takes conversations for (besides those for no team).
    teams: Vec<String>,
    /// Its site's conversations are the only ones it takes.
    site: Option<String>,
    /// Online but taking no new conversation (it said so); keeps those it has.
    away: bool,
}

impl Agent {
    fn is_online(&self) -> bool {
        !self.devices.is_empty()
    }
    /// Online and not away: new conversations may go to it.
    fn is_available(&self) -> bool {
        self.is_online() && !self.away
    }
    fn shards(&self) -> Vec<ShardId> {
        self.devices.iter().map(|(s, _)| *s).collect()
    }
    fn takes(&self, route: &Route) -> bool {
        self.site == route.site
            && route
                .team
                .as_ref()
                .is_none_or(|t| self.teams.iter().any(|x| x == t))
    }
}

#[derive(Debug)]
struct Waiting {
    conv: ConvId,
    visitor: VisitorId,
    /// The position the visitor was last told.
    told: u32,
    priority: i32,
    /// Only agents of its site (and team) take it.
    route: Route,
}

/// Why a transfer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferRefused {
    /// The asking agent does not have the conversation.
    NotYours,
    /// The agent named is offline, full, or the asking agent.
    Unavailable,
}

/// A conversation the bot has.
#[derive(Debug)]
struct WithBot {
    visitor: VisitorId,
    /// The highest priority asked for it so far (it keeps it in the queue).
    priority: i32,
    /// Order of arrival, so that released conversations queue in the order they came.
    since: u64,
    route: Route,
}

#[derive(Debug)]
pub struct Dispatcher {
    capacity: u32,
    agents: HashMap<AgentId, Agent>,
    queue: VecDeque<Waiting>,
    clock: u64,
    /// Every conversation queued or assigned, so that a conversation announced twice (by
    /// the start-up listing and by its home shard loading it) is counted once.
    /// Each one's site, to tell its visitor whether anyone of the site is online.
    known: HashMap<ConvId, Option<String>>,
    /// Each visitor's open conversation (the newest, if several), for a visitor who comes
    /// back on a new connection without naming it.
    open_by_visitor: HashMap<VisitorId, ConvId>,
    mode: BotMode,
    /// Conversations the bot has (never also queued or assigned).
    with_bot: HashMap<ConvId, WithBot>,
}

impl Dispatcher {
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            agents: HashMap::new(),
            queue: VecDeque::new(),
            clock: 0,
            known: Default::default(),
            open_by_visitor: HashMap::new(),
            mode: BotMode::Off,
            with_bot: HashMap::new(),
        }
    }

    /// Conversations the bot has.
    pub fn with_bot_len(&self) -> usize {
        self.with_bot.len()
    }

    pub fn mode(&self) -> BotMode {
        self.mode
    }

    /// Whether a new conversation of `site` goes to the bot now.
    fn bot_takes(&self, site: Option<&str>) -> bool {
        match self.mode {
            BotMode::Off => false,
            BotMode::BotFirst => true,
            BotMode::WhenNoAgent => !self.site_has_agents(site),
        }
    }

    /// Whether an agent of `site` is online.
    fn site_has_agents(&self, site: Option<&str>) -> bool {
        self.agents
            .values()
            .any(|a| a.is_available() && a.site.as_deref() == site)
    }

    /// The bot's mode changed (the bridge said so, or was lost: `Off`). Conversations the
    /// bot may no longer keep go to the queue.
    pub fn set_mode(&mut self, mode: BotMode) -> Vec<Dispatch> {
        self.mode = mode;
        match mode {
            BotMode::BotFirst => Vec::new(),
            BotMode::Off => self.release_where(|_| true),
            // Those of sites with an agent online now.
            BotMode::WhenNoAgent => {
                let online: Vec<Option<String>> = self
                    .agents
                    .values()
                    .filter(|a| a.is_available())
                    .map(|a| a.site.clone())
                    .collect();
                self.release_where(|r| online.contains(&r.site))
            }
        }
    }

    /// The conversations the bot has on a route `which` picks go to the queue, in the
    /// order they came.
    fn release_where(&mut self, which: impl Fn(&Route) -> bool) -> Vec<Dispatch> {
        let convs: Vec<ConvId> = self
            .with_bot
            .iter()
            .filter(|(_, w)| which(&w.route))
            .map(|(c, _)| *c)
            .collect();
        let mut all: Vec<(ConvId, WithBot)> = convs
            .into_iter()
            .filter_map(|c| self.with_bot.remove(&c).map(|w| (c, w)))
            .collect();
        all.sort_by_key(|(_, w)| w.since);
        let mut out = Vec::new();
        for (conv, w) in all {
            out.extend(self.give_to_humans(conv, w.visitor, w.priority, w.route));
        }
        out
    }

    /// The bot hands `conv` to a human, at `priority` (or the higher one asked before). A
    /// conversation already waiting may move up; one assigned or unknown is left as it is.
    /// `team`: the AI layer's choice, when the visitor's entry named none.
    pub fn handoff(&mut self, conv: ConvId, priority: i32, team: Option<String>) -> Vec<Dispatch> {
        match self.with_bot.remove(&conv) {
            Some(mut w) => {
                if w.route.team.is_none() {
                    w.route.team = team;
                }
                self.give_to_humans(conv, w.visitor, priority.max(w.priority), w.route)
            }
            None => {
                self.prioritize(conv, priority);
                Vec::new()
            }
        }
    }

    /// `from` hands `conv` to `to` (online, with room), or to whoever else has room
    /// (`None`). Refused when nobody else can take it: it stays with `from` rather than wait
    /// in the queue while `from` has room. What to tell, or why not.
    pub fn transfer(
        &mut self,
        conv: ConvId,
        from: &AgentId,
        to: Option<&AgentId>,
        team: Option<&str>,
    ) -> Result<Vec<Dispatch>, TransferRefused> {
        let held = self
            .agents
            .get(from)
            .is_some_and(|a| a.open.iter().any(|(c, _)| *c == conv));
        if !held {
            return Err(TransferRefused::NotYours);
        }
        // Within the conversation's site.
        let route = Route {
            site: self.known.get(&conv).cloned().flatten(),
            team: team.map(str::to_owned),
        };
        let to = match to {
            Some(to) => {
                let room = self.agents.get(to).is_some_and(|a| {
                    a.is_available() && (a.open.len() as u32) < self.capacity && a.takes(&route)
                });
                if to == from || !room {
                    return Err(TransferRefused::Unavailable);
                }
                to.clone()
            }
            None => match self.pick_for(&route, Some(from)) {
                Some(agent) => agent,
                // A team's queue takes it even when nobody of the team is free.
                None if team.is_some() => {
                    let visitor = self.take_from_agent(from, conv).expect("held above");
                    let mut out = self.drain();
                    out.extend(self.give_to_humans(conv, visitor, 0, route));
                    return Ok(out);
                }
                None => return Err(TransferRefused::Unavailable),
            },
        };
        let visitor = self.take_from_agent(from, conv).expect("held above");
        let mut out = vec![self.assign(to, conv, visitor)];
        // `from` has room now: the oldest waiting conversation, if any, is hers.
        out.extend(self.drain());
        Ok(out)
    }

    /// Raises `conv`'s priority: it moves ahead of calmer conversations in the queue, or
    /// keeps the priority for when the bot hands it over. Priorities only rise.
    pub fn prioritize(&mut self, conv: ConvId, priority: i32) {
        if let Some(w) = self.with_bot.get_mut(&conv) {
            w.priority = w.priority.max(priority);
            return;
        }
        let Some(i) = self.queue.iter().position(|w| w.conv == conv) else {
            return;
        };
        if self.queue[i].priority >= priority {
            return;
        }
        let mut w = self.queue.remove(i).expect("found");
        w.priority = priority;
        self.queue_push(w);
    }

    /// Queues `w` behind every conversation of its priority or higher.
    fn queue_push(&mut self, w: Waiting) -> u32 {
        let at = self
            .queue
            .iter()
            .rposition(|q| q.priority >= w.priority)
            .map_or(0, |i| i + 1);
        self.queue.insert(at, w);
        at as u32 + 1
    }

    /// `conv` goes to an agent now, or to the queue.
    fn give_to_humans(
        &mut self,
        conv: ConvId,
        visitor: VisitorId,
        priority: i32,
        route: Route,
    ) -> Vec<Dispatch> {
        let pushed = self.queue_push(Waiting {
            conv,
            visitor,
            told: 0,
            priority,
            route,
        });
        // Through the queue, so that those ahead of it (by priority, then arrival) go first.
        let mut out = self.drain();
        // Nothing assigned: it is where it was put (no scan of a long queue per arrival).
        let at = if out.is_empty() {
            Some(pushed as usize - 1)
        } else {
            self.queue.iter().position(|w| w.conv == conv)
        };
        if let Some(i) = at {
            let position = i as u32 + 1;
            self.queue[i].told = position;
            out.push(Dispatch::Position { conv, position });
        }
        out
    }

    /// The visitor's open conversation, if it has one.
    pub fn open_conv_of(&self, visitor: VisitorId) -> Option<ConvId> {
        self.open_by_visitor.get(&visitor).copied()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no agent of `conv`'s site is online and not away (its visitor is leaving a
    /// message).
    pub fn nobody_online_for(&self, conv: ConvId) -> bool {
        let site = self.known.get(&conv).and_then(|s| s.as_ref());
        !self
            .agents
            .values()
            .any(|a| a.is_available() && a.site.as_ref() == site)
    }

    /// Every agent online now.
    pub fn online(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .agents
            .iter()
            .filter(|(_, a)| a.is_online())
            .map(|(id, _)| id.to_string())
            .collect();
        v.sort();
        v
    }

    pub fn is_online(&self, agent: &AgentId) -> bool {
        self.agents.get(agent).is_some_and(Agent::is_online)
    }

    pub fn online_agents(&self) -> usize {
        self.agents.values().filter(|a| a.is_online()).count()
    }

    /// Open conversations of `agent`.
    pub fn open_of(&self, agent: &AgentId) -> Vec<(ConvId, VisitorId)> {
        self.agents
            .get(agent)
            .map(|a| a.open.clone())
            .unwrap_or_default()
    }

    /// The agent a conversation on `route` would go to now, leaving out `except`: the least
    /// loaded online one of its site (and team) with room.
    fn pick_for(&self, route: &Route, except: Option<&AgentId>) -> Option<AgentId> {
        self.agents
            .iter()
            .filter(|(id, _)| Some(*id) != except)
            .filter(|(_, a)| a.takes(route))
            .filter(|(_, a)| a.is_available() && (a.open.len() as u32) < self.capacity)
            .min_by_key(|(id, a)| (a.open.len(), a.online_since, (*id).clone()))
            .map(|(id, _)| id.clone())
    }

    fn assign(&mut self, agent: AgentId, conv: ConvId, visitor: VisitorId) -> Dispatch {
        let a = self.agents.get_mut(&agent).expect("picked agents exist");
        a.open.push((conv, visitor));
        Dispatch::Assign {
            conv,
            visitor,
            agent_shards: a.shards(),
            agent,
        }
    }

    /// A new conversation needs an agent.
    pub fn enqueue(&mut self, conv: ConvId, visitor: VisitorId) -> Vec<Dispatch> {
        self.enqueue_at(conv, visitor, 0, Route::default())
    }

    /// A new conversation needs an agent, at `priority` (a VIP visitor's goes ahead of
    /// others in the queue, and keeps it when the bot hands it over).
    /// `route`: only agents of its site, and of its team if it names one (a visitor who
    /// came through the site's entry for that team), take it.
    pub fn enqueue_at(
        &mut self,
        conv: ConvId,
        visitor: VisitorId,
        priority: i32,
        route: Route,
    ) -> Vec<Dispatch> {
        if self.known.contains_key(&conv) {
            return Vec::new();
        }
        self.known.insert(conv, route.site.clone());
        self.open_by_visitor.insert(visitor, conv);
        if self.bot_takes(route.site.as_deref()) {
            self.clock += 1;
            let since = self.clock;
            self.with_bot.insert(
                conv,
                WithBot {
                    visitor,
                    priority,
                    since,
                    route,
                },
            );
            return vec![Dispatch::WithBot { conv }];
        }
        self.give_to_humans(conv, visitor, priority, route)
    }

    /// A conversation already assigned to `agent` (found in the store after a restart) is
    /// counted again; if the agent is online its devices are told.
    pub fn restore(
        &mut self,
        conv: ConvId,
        visitor: VisitorId,
        agent: AgentId,
        site: Option<String>,
    ) -> Vec<Dispatch> {
        if self.known.contains_key(&conv) {
            return Vec::new();
        }
        self.known.insert(conv, site);
        self.open_by_visitor.insert(visitor, conv);
        let a = self.agents.entry(agent.clone()).or_default();
        a.open.push((conv, visitor));
        if a.is_online() {
            vec![Dispatch::Assign {
                conv,
                visitor,
                agent_shards: a.shards(),
                agent,
            }]
        } else {
            Vec::new()
        }
    }

    /// A device of `agent` connected on `shard`. Returns the agent's open conversations (for
    /// that device) and any queued conversations it now takes.
    pub fn agent_online(
        &mut self,
        agent: &AgentId,
        shard: ShardId,
    ) -> (Vec<(ConvId, VisitorId)>, Vec<Dispatch>) {
        self.clock += 1;
        let clock = self.clock;
        let a = self.agents.entry(agent.clone()).or_default();
        if !a.is_online() {
            a.online_since = clock;
        }
        match a.devices.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, n)) => *n += 1,
            None => a.devices.push((shard, 1)),
        }
        let open = a.open.clone();
        let (site, away) = (a.site.clone(), a.away);
        let out = if away {
            // Another device of an agent who is away: nothing new for it.
            Vec::new()
        } else {
            self.takes_work(site)
        };
        (open, out)
    }

    /// An agent of `site` can take conversations (it came online, or back from away): the
    /// bot gives back what it had of that site only because nobody was there, and the queue
    /// drains.
    fn takes_work(&mut self, site: Option<String>) -> Vec<Dispatch> {
        let mut out = if self.mode == BotMode::WhenNoAgent {
            self.release_where(|r| r.site == site)
        } else {
            Vec::new()
        };
        out.extend(self.drain());
        out
    }

    /// A device of `agent` on `shard` disconnected. Its conversations stay assigned.
    pub fn agent_offline(&mut self, agent: &AgentId, shard: ShardId) {
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        if let Some(i) = a.devices.iter().position(|(s, _)| *s == shard) {
            a.devices[i].1 -= 1;
            if a.devices[i].1 == 0 {
                a.devices.swap_remove(i);
            }
        }
        if !a.is_online() {
            // Back next time as available, like any agent logging in.
            a.away = false;
            if a.open.is_empty() {
                self.agents.remove(agent);
            }
        }
    }

    /// The shards for which `alive` says no are gone (their node died): their devices
    /// disconnected all at once. Returns the agents who went offline with them.
    pub fn shards_gone(&mut self, alive: impl Fn(ShardId) -> bool) -> Vec<AgentId> {
        let mut gone = Vec::new();
        for (agent, a) in self.agents.iter_mut() {
            if !a.is_online() {
                continue;
            }
            a.devices.retain(|(s, _)| alive(*s));
            if !a.is_online() {
                a.away = false;
                gone.push(agent.clone());
            }
        }
        self.agents
            .retain(|agent, a| a.is_online() || !a.open.is_empty() || !gone.contains(agent));
        gone
    }

    /// `agent` (online) is away: no new conversation goes to it; or back: it takes from the
    /// queue (and, with the bot standing in while nobody was there, from the bot) again.
    pub fn set_away(&mut self, agent: &AgentId, away: bool) -> Vec<Dispatch> {
        let Some(a) = self.agents.get_mut(agent).filter(|a| a.is_online()) else {
            return Vec::new();
        };
        if a.away == away {
            return Vec::new();
        }
        a.away = away;
        if away {
            return Vec::new();
        }
        let site = a.site.clone();
        self.takes_work(site)
    }

    /// The shards `agent` has devices on.
    pub fn shards_of(&self, agent: &AgentId) -> Vec<ShardId> {
        self.agents
            .get(agent)
            .map(Agent::shards)
            .unwrap_or_default()
    }

    pub fn is_away(&self, agent: &AgentId) -> bool {
        self.agents.get(agent).is_some_and(|a| a.away)
    }

    /// `conv` is closed: it leaves the queue or its agent's list, wherever it is. `agent`
    /// is where to look first; an idle close can cross an assignment still on its way to
    /// the conversation's shard, so the dispatcher may have given it to someone since.
    pub fn closed(&mut self, conv: ConvId, agent: Option<&AgentId>) -> Vec<Dispatch> {
        if self.known.remove(&conv).is_none() {
            return Vec::new();
        }
        let visitor = agent
            .and_then(|id| self.take_from_agent(id, conv))
            .or_else(|| self.with_bot.remove(&conv).map(|w| w.visitor))
            .or_else(|| {
                let i = self.queue.iter().position(|w| w.conv == conv)?;
                self.queue.remove(i).map(|w| w.visitor)
            })
            .or_else(|| {
                let holds = |a: &Agent| a.open.iter().any(|(c, _)| *c == conv);
                let (id, _) = self.agents.iter().find(|(_, a)| holds(a))?;
                self.take_from_agent(&id.clone(), conv)
            });
        if let Some(v) = visitor {
            if self.open_by_visitor.get(&v) == Some(&conv) {
                self.open_by_visitor.remove(&v);
            }
        }
        self.drain()
    }

    /// Takes `conv` off `agent`'s list (forgetting an offline agent left with none); its
    /// visitor, if the agent had it.
    fn take_from_agent(&mut self, agent: &AgentId, conv: ConvId) -> Option<VisitorId> {
        let a = self.agents.get_mut(agent)?;
        let i = a.open.iter().position(|(c, _)| *c == conv)?;
        let (_, visitor) = a.open.remove(i);
        if !a.is_online() && a.open.is_empty() {
            self.agents.remove(agent);
        }
        Some(visitor)
    }

    fn anyone_has_room(&self) -> bool {
        self.agents
            .values()
            .any(|a| a.is_available() && (a.open.len() as u32) < self.capacity)
    }

    /// Assigns queued conversations, oldest first, while any agent has room.
    fn drain(&mut self) -> Vec<Dispatch> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            if !self.anyone_has_room() {
                break;
            }
            match self.pick_for(&self.queue[i].route, None) {
                Some(agent) => {
                    let w = self.queue.remove(i).expect("in range");
                    out.push(self.assign(agent, w.conv, w.visitor));
                }
                // Only another team's (or site's) agents have room: those behind it may go first.
                None => i += 1,
            }
        }
        out
    }

    /// `agent`'s site and teams, as its newest token says.
    pub fn set_profile(&mut self, agent: &AgentId, site: Option<String>, teams: Vec<String>) {
        let a = self.agents.entry(agent.clone()).or_default();
        a.site = site;
        a.teams = teams;
    }

    /// Position updates for every queued conversation whose position changed since the
    /// visitor was last told. Called on a timer so that a burst of assignments sends one
    /// update per visitor, not one per assignment.
    pub fn position_updates(&mut self) -> Vec<Dispatch> {
        let mut out = Vec::new();
        for (i, w) in self.queue.iter_mut().enumerate() {
            let position = i as u32 + 1;
            if w.told != position {
                w.told = position;
                out.push(Dispatch::Position {
                    conv: w.conv,
                    position,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agent(name: &str) -> AgentId {
        AgentId::new(name).unwrap()
    }

    fn team(name: &str) -> Route {
        Route {
            site: None,
            team: Some(name.into()),
        }
    }

    fn site(name: &str) -> Route {
        Route::site(Some(name.into()))
    }

    #[test]
    fn an_away_agent_keeps_its_conversations_but_takes_no_new_one_until_back() {
        let mut d = Dispatcher::new(5);
        d.agent_online(&agent("ann"), 0);
        d.agent_online(&agent("bob"), 1);
        assert_eq!(
            assigned_to(&d.enqueue(ConvId(1), VisitorId(1))),
            vec![(1, "ann".into())]
        );
        assert_eq!(d.set_away(&agent("ann"), true), Vec::new());
        assert!(d.is_away(&agent("ann")) && d.is_online(&agent("ann")));
        // Ann is less loaded than bob would be, yet bob takes the next ones.
        for i in 2..=3 {
            assert_eq!(
                assigned_to(&d.enqueue(ConvId(i), VisitorId(i))),
                vec![(i, "bob".into())]
            );
        }
        assert_eq!(d.open_of(&agent("ann")).len(), 1);
        // Nobody to transfer to by name while away; and with bob away too, visitors wait
        // and are told nobody is there.
        assert_eq!(
            d.transfer(ConvId(2), &agent("bob"), Some(&agent("ann")), None),
            Err(TransferRefused::Unavailable)
        );
        d.set_away(&agent("bob"), true);
        assert_eq!(
            d.enqueue(ConvId(4), VisitorId(4)),
            vec![Dispatch::Position {
                conv: ConvId(4),
                position: 1
            }]
        );
        assert!(d.nobody_online_for(ConvId(4)));
        // Back: the waiting conversation is hers at once.
        assert_eq!(
            assigned_to(&d.set_away(&agent("ann"), false)),
            vec![(4, "ann".into())]
        );
        // Away ends with the last device: logging in again, she is available.
        d.set_away(&agent("ann"), true);
        d.agent_offline(&agent("ann"), 0);
        d.agent_online(&agent("ann"), 0);
        assert!(!d.is_away(&agent("ann")));
        // An agent not online cannot be away.
        assert_eq!(d.set_away(&agent("dan"), true), Vec::new());
        assert!(!d.is_away(&agent("dan")));
    }

    #[test]
    fn a_restored_conversation_stays_in_its_site_when_transferred() {
        let mut d = Dispatcher::new(5);
        // After a restart: sue's conversation of the shop, before sue is back online.
        d.restore(ConvId(1), VisitorId(1), agent("sue"), Some("shop".into()));
        d.set_profile(&agent("ann"), None, Vec::new());
        d.agent_online(&agent("ann"), 0);
        d.set_profile(&agent("tom"), Some("shop".into()), Vec::new());
        d.agent_online(&agent("tom"), 0);
        // Sue has not logged in again (her site unknown here): the shop's tom takes it.
        assert_eq!(
            assigned_to(&d.transfer(ConvId(1), &agent("sue"), None, None).unwrap()),
            vec![(1, "tom".into())]
        );
    }

    #[test]
    fn with_when_no_agent_each_site_counts_its_own_agents() {
        let mut d = Dispatcher::new(5);
        d.set_mode(BotMode::WhenNoAgent);
        d.set_profile(&agent("ann"), None, Vec::new());
        d.agent_online(&agent("ann"), 0);
        // The shop has nobody: the bot takes its visitor; the default site's goes to ann.
        assert_eq!(
            d.enqueue_at(ConvId(1), VisitorId(1), 0, site("shop")),
            vec![Dispatch::WithBot { conv: ConvId(1) }]
        );
        assert_eq!(
            assigned_to(&d.enqueue(ConvId(2), VisitorId(2))),
            vec![(2, "ann".into())]
        );
        // Another default-site agent changes nothing for the shop's.
        d.agent_online(&agent("bob"), 0);
        assert_eq!(d.with_bot_len(), 1);
        // A shop agent: the bot gives it back, to her.
        d.set_profile(&agent("sue"), Some("shop".into()), Vec::new());
        let (_, out) = d.agent_online(&agent("sue"), 0);
        assert_eq!(assigned_to(&out), vec![(1, "sue".into())]);
    }

    #[test]
    fn nothing_crosses_sites() {
        let mut d = Dispatcher::new(5);
        d.set_profile(&agent("ann"), None, Vec::new());
        d.agent_online(&agent("ann"), 0);
        d.set_profile(&agent("sue"), Some("shop".into()), Vec::new());
        d.agent_online(&agent("sue"), 0);
        // Each site's conversation goes to its own agent, however loaded the other is.
        for i in 1..=3 {
            assert_eq!(
                assigned_to(&d.enqueue_at(ConvId(i), VisitorId(i), 0, site("shop"))),
                vec![(i, "sue".into())]
            );
        }
        assert_eq!(
            assigned_to(&d.enqueue(ConvId(9), VisitorId(9))),
            vec![(9, "ann".into())]
        );
        // A site with no agent online: its conversation waits; ann does not take it.
        assert_eq!(
            d.enqueue_at(ConvId(20), VisitorId(20), 0, site("blog")),
            vec![Dispatch::Position {
                conv: ConvId(20),
                position: 1
            }]
        );
        // Sue cannot hand hers to ann, of another site.
        assert_eq!(
            d.transfer(ConvId(1), &agent("sue"), Some(&agent("ann")), None),
            Err(TransferRefused::Unavailable)
        );
        assert_eq!(
            d.transfer(ConvId(1), &agent("sue"), None, None),
            Err(TransferRefused::Unavailable)
        );
    }

    fn assigned_to(d: &[Dispatch]) -> Vec<(u64, String)> {
        d.iter()
            .filter_map(|x| match x {
                Dispatch::Assign { conv, agent, .. } => Some((conv.0, agent.to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fewest_open_wins_and_capacity_holds() {
        let mut d = Dispatcher::new(2);
        d.agent_online(&agent("ann"), 0);
        d.agent_online(&agent("bob"), 1);
        let mut got = Vec::new();
        for i in 0..4 {
            got.extend(assigned_to(&d.enqueue(ConvId(i), VisitorId(i))));
        }
        assert_eq!(
            got,
            vec![
                (0, "ann".into()),
                (1, "bob".into()),
                (2, "ann".into()),
                (3, "bob".into())
            ]
        );
        // Everyone is full: the fifth waits at position 1, the sixth at 2.
        assert_eq!(
            d.enqueue(ConvId(4), VisitorId(4)),
            vec![Dispatch::Position {
                conv: ConvId(4),
                position: 1
            }]
        );
        assert_eq!(
            d.enqueue(ConvId(5), VisitorId(5)),
            vec![Dispatch::Position {
                conv: ConvId(5),
                position: 2
            }]
        );
        assert!(d.position_updates().is_empty());
        // Bob closes one: the oldest waiting conversation is his, and the other moves up.
        assert_eq!(
            assigned_to(&d.closed(ConvId(1), Some(&agent("bob")))),
            vec![(4, "bob".into())]
        );
        assert_eq!(
            d.position_updates(),
            vec![Dispatch::Position {
                conv: ConvId(5),
                position: 1
            }]
        );
        assert!(d.position_updates().is_empty(), "told once");
    }

    #[test]
    fn queue_drains_when_an_agent_arrives_and_keeps_conversations_across_reconnects() {
        let mut d = Dispatcher::new(10);
        for i in 0..3 {
            d.enqueue(ConvId(i), VisitorId(i));
        }
        assert_eq!(d.queue_len(), 3);
        let (open, out) = d.agent_online(&agent("ann"), 1);
        assert!(open.is_empty());
        assert_eq!(assigned_to(&out).len(), 3);
        let Dispatch::Assign { agent_shards, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(agent_shards, &vec![1]);
        d.agent_offline(&agent("ann"), 1);
        assert_eq!(d.online_agents(), 0);
        // Offline agents get nothing new, but keep what they had.
        assert!(assigned_to(&d.enqueue(ConvId(9), VisitorId(9))).is_empty());
        let (open, out) = d.agent_online(&agent("ann"), 0);
        assert_eq!(open.len(), 3);
        assert_eq!(assigned_to(&out), vec![(9, "ann".into())]);
    }

    #[test]
    fn several_devices_are_one_agent() {
        let mut d = Dispatcher::new(10);
        d.agent_online(&agent("ann"), 0);
        d.agent_online(&agent("ann"), 1);
        d.agent_online(&agent("ann"), 1);
        let out = d.enqueue(ConvId(1), VisitorId(1));
        let Dispatch::Assign { agent_shards, .. } = &out[0] else {
            panic!()
        };
        assert_eq!(agent_shards, &vec![0, 1]);
        d.agent_offline(&agent("ann"), 1);
        d.agent_offline(&agent("ann"), 0);
        assert_eq!(d.online_agents(), 1, "one device left on shard 1");
    }

    fn with_bot(d: &[Dispatch]) -> Vec<u64> {
        d.iter()
            .filter_map(|x| match x {
                Dispatch::WithBot { conv } => Some(conv.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn teams_take_their_own_conversations_and_others_pass_them() {
        let mut d = Dispatcher::new(1);
        d.set_profile(&agent("bea"), None, vec!["billing".into()]);
        d.agent_online(&agent("bea"), 0);
        // A sales conversation waits: bea is billing only.
        assert_eq!(
            d.enqueue_at(ConvId(1), VisitorId(1), 0, team("sales")),
            vec![Dispatch::Position {
                conv: ConvId(1),
                position: 1
            }]
        );
        // A billing one behind it goes to bea at once.
        assert_eq!(
            assigned_to(&d.enqueue_at(ConvId(2), VisitorId(2), 0, team("billing"))),
            vec![(2, "bea".into())]
        );
        // A sales agent comes: the waiting one is hers.
        d.set_profile(&agent("sam"), None, vec!["sales".into()]);
        let (_, out) = d.agent_online(&agent("sam"), 0);
        assert_eq!(assigned_to(&out), vec![(1, "sam".into())]);
        // Bea hands hers to the sales team: sam is full, so it waits in sales' queue.
        let out = d
            .transfer(ConvId(2), &agent("bea"), None, Some("sales"))
            .unwrap();
        assert_eq!(
            out,
            vec![Dispatch::Position {
                conv: ConvId(2),
                position: 1
            }]
        );
        assert!(d.open_of(&agent("bea")).is_empty());
        assert_eq!(
            assigned_to(&d.closed(ConvId(1), Some(&agent("sam")))),
            vec![(2, "sam".into())]
        );
    }

    #[test]
    fn transfers_go_to_an_agent_with_room_or_back_to_the_queue() {
        let mut d = Dispatcher::new(1);
        for a in ["ann", "bob", "cat"] {
            d.agent_online(&agent(a), 0);
        }
        d.enqueue(ConvId(1), VisitorId(1));
        d.enqueue(ConvId(2), VisitorId(2));
        let ann_has = |d: &Dispatcher| d.open_of(&agent("ann")).len();
        assert_eq!(ann_has(&d), 1);
        // bob is full, dan offline, ann herself: refused.
        let bob_conv = d.open_of(&agent("bob"))[0].0;
        let ann_conv = d.open_of(&agent("ann"))[0].0;
        for to in ["bob", "dan", "ann"] {
            assert_eq!(
                d.transfer(ann_conv, &agent("ann"), Some(&agent(to)), None),
                Err(TransferRefused::Unavailable),
                "{to}"
            );
        }
        assert_eq!(
            d.transfer(bob_conv, &agent("ann"), None, None),
            Err(TransferRefused::NotYours)
        );
        // To cat, who has room.
        assert_eq!(
            assigned_to(
                &d.transfer(ann_conv, &agent("ann"), Some(&agent("cat")), None)
                    .unwrap()
            ),
            vec![(ann_conv.0, "cat".into())]
        );
        assert_eq!(ann_has(&d), 0);
        // To whoever has room (ann's is free now), not back to bob, who has room too once
        // it is gone.
        assert_eq!(
            assigned_to(&d.transfer(bob_conv, &agent("bob"), None, None).unwrap()),
            vec![(bob_conv.0, "ann".into())]
        );
        // With nobody else free, it stays.
        d.enqueue(ConvId(3), VisitorId(3));
        assert_eq!(
            d.transfer(bob_conv, &agent("ann"), None, None),
            Err(TransferRefused::Unavailable)
        );
    }

    #[test]
    fn bot_first_keeps_conversations_until_handed_off_and_priority_jumps_the_queue() {
        let mut d = Dispatcher::new(1);
        assert!(d.set_mode(BotMode::BotFirst).is_empty());
        d.agent_online(&agent("ann"), 0);
        // The bot has them both, though ann is free.
        assert_eq!(with_bot(&d.enqueue(ConvId(1), VisitorId(1))), vec![1]);
        assert_eq!(with_bot(&d.enqueue(ConvId(2), VisitorId(2))), vec![2]);
        assert_eq!(d.with_bot_len(), 2);
        // Conversation 1 asks for a human: ann takes it.
        assert_eq!(
            assigned_to(&d.handoff(ConvId(1), 1, None)),
            vec![(1, "ann".into())]
        );
        // Three more hand-offs while ann is full: the angry one (priority 5) goes first,
        // calm ones keep their order.
        for i in 3..=4 {
            d.enqueue(ConvId(i), VisitorId(i));
            assert_eq!(
                d.handoff(ConvId(i), 0, None),
                vec![Dispatch::Position {
                    conv: ConvId(i),
                    position: i as u32 - 2
                }]
            );
        }
        d.prioritize(ConvId(2), 5);
        assert_eq!(
            d.handoff(ConvId(2), 0, None),
            vec![Dispatch::Position {
                conv: ConvId(2),
                position: 1
            }],
            "the priority asked while with the bot is kept"
        );
        assert_eq!(
            d.position_updates(),
            vec![
                Dispatch::Position {
                    conv: ConvId(3),
                    position: 2
                },
                Dispatch::Position {
                    conv: ConvId(4),
                    position: 3
                }
            ]
        );
        // A waiting conversation that turns angry moves up.
        d.prioritize(ConvId(4), 9);
        assert_eq!(
            assigned_to(&d.closed(ConvId(1), Some(&agent("ann")))),
            vec![(4, "ann".into())]
        );
        assert!(
            d.handoff(ConvId(4), 3, None).is_empty(),
            "assigned: nothing changes"
        );
    }

    #[test]
    fn the_bot_gives_everything_back_when_it_goes_away_or_an_agent_comes() {
        let mut d = Dispatcher::new(10);
        d.set_mode(BotMode::WhenNoAgent);
        assert_eq!(with_bot(&d.enqueue(ConvId(1), VisitorId(1))), vec![1]);
        assert_eq!(with_bot(&d.enqueue(ConvId(2), VisitorId(2))), vec![2]);
        let (_, out) = d.agent_online(&agent("ann"), 0);
        assert_eq!(
            assigned_to(&out),
            vec![(1, "ann".into()), (2, "ann".into())],
            "in the order they came"
        );
        assert_eq!(d.with_bot_len(), 0);
        assert!(
            with_bot(&d.enqueue(ConvId(3), VisitorId(3))).is_empty(),
            "an agent is online: no bot"
        );
        // Bot first, and then the bridge is lost: back to humans.
        let mut d = Dispatcher::new(10);
        d.set_mode(BotMode::BotFirst);
        d.enqueue(ConvId(1), VisitorId(1));
        assert_eq!(
            d.set_mode(BotMode::Off),
            vec![Dispatch::Position {
                conv: ConvId(1),
                position: 1
            }]
        );
        assert!(d.closed(ConvId(1), None).is_empty());
        assert_eq!(d.queue_len(), 0);
    }

    #[derive(Debug, Clone)]
    enum BotOp {
        Mode(u8),
        Online(u8),
        Offline(u8),
        Enqueue,
        Handoff(u8, i32),
        Prioritize(u8, i32),
        Close(u8),
    }

    fn bot_op() -> impl Strategy<Value = BotOp> {
        prop_oneof![
            (0u8..3).prop_map(BotOp::Mode),
            (0u8..3).prop_map(BotOp::Online),
            (0u8..3).prop_map(BotOp::Offline),
            Just(BotOp::Enqueue),
            Just(BotOp::Enqueue),
            ((0u8..8), (0i32..4)).prop_map(|(n, p)| BotOp::Handoff(n, p)),
            ((0u8..8), (0i32..4)).prop_map(|(n, p)| BotOp::Prioritize(n, p)),
            (0u8..8).prop_map(BotOp::Close),
        ]
    }

    proptest! {
        /// With a bot and priorities, under any sequence of events: every open conversation
        /// is with the bot, queued or assigned, exactly one of them; the bot holds nothing
        /// it may not (mode off, or an agent online with `when_no_agent`); the queue is in
        /// priority order; nothing waits while an online agent has room.
        #[test]
        fn bot_and_priority_invariants(ops in proptest::collection::vec(bot_op(), 1..150)) {
            let mut d = Dispatcher::new(2);
            let mut devices = [0u32; 3];
            let mut next = 0u64;
            let mut open: Vec<u64> = Vec::new();
            for o in ops {
                match o {
                    BotOp::Mode(m) => {
                        d.set_mode([BotMode::Off, BotMode::BotFirst, BotMode::WhenNoAgent][m as usize]);
                    }
                    BotOp::Online(a) => {
                        devices[a as usize] += 1;
                        d.agent_online(&agent(&format!("a{a}")), 0);
                    }
                    BotOp::Offline(a) if devices[a as usize] > 0 => {
                        devices[a as usize] -= 1;
                        d.agent_offline(&agent(&format!("a{a}")), 0);
                    }
                    BotOp::Offline(_) => {}
                    BotOp::Enqueue => {
                        next += 1;
                        d.enqueue(ConvId(next), VisitorId(next));
                        open.push(next);
                    }
                    BotOp::Handoff(n, p) => {
                        if let Some(&c) = open.get(n as usize) {
                            d.handoff(ConvId(c), p, None);
                        }
                    }
                    BotOp::Prioritize(n, p) => {
                        if let Some(&c) = open.get(n as usize) {
                            d.prioritize(ConvId(c), p);
                        }
                    }
                    BotOp::Close(n) => {
                        if (n as usize) < open.len() {
                            let c = open.remove(n as usize);
                            d.closed(ConvId(c), None);
                        }
                    }
                }
                for &c in &open {
                    let bot = d.with_bot.contains_key(&ConvId(c)) as u32;
                    let queued = d.queue.iter().filter(|w| w.conv.0 == c).count() as u32;
                    let assigned = d.agents.values().filter(|a| a.open.iter().any(|(x, _)| x.0 == c)).count() as u32;
                    prop_assert_eq!(bot + queued + assigned, 1, "conversation {}", c);
                }
                prop_assert_eq!(d.with_bot.len() + d.queue.len() + d.agents.values().map(|a| a.open.len()).sum::<usize>(), open.len());
                let online = devices.iter().any(|&n| n > 0);
                if d.mode() == BotMode::Off || (d.mode() == BotMode::WhenNoAgent && online) {
                    prop_assert_eq!(d.with_bot_len(), 0);
                }
                prop_assert!(d.queue.iter().zip(d.queue.iter().skip(1)).all(|(a, b)| a.priority >= b.priority));
                let room = d.agents.values().any(|a| a.is_online() && (a.open.len() as u32) < 2);
                prop_assert!(!room || d.queue.is_empty(), "waiting while an agent has room");
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Online(u8),
        Offline(u8),
        Enqueue,
        Close(u8),
        /// An idle close of the n-th oldest open conversation, queued or assigned, told
        /// without its agent (as when it crossed an assignment in flight).
        IdleClose(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4).prop_map(Op::Online),
            (0u8..4).prop_map(Op::Offline),
            Just(Op::Enqueue),
            Just(Op::Enqueue),
            (0u8..4).prop_map(Op::Close),
            (0u8..8).prop_map(Op::IdleClose),
        ]
    }

    proptest! {
        /// Under any sequence of events: no agent exceeds capacity, every conversation is
        /// either queued or assigned exactly once, assignments take the queue in order, and
        /// nothing waits while an online agent has room.
        #[test]
        fn invariants(ops in proptest::collection::vec(op(), 1..200), cap in 1u32..4) {
            let mut d = Dispatcher::new(cap);
            let mut devices = [0u32; 4];
            let mut next = 0u64;
            let mut assigned: HashMap<u64, String> = HashMap::new();
            let mut queued: VecDeque<u64> = VecDeque::new();
            let apply = |out: Vec<Dispatch>, assigned: &mut HashMap<u64, String>, queued: &mut VecDeque<u64>| {
                for x in out {
                    if let Dispatch::Assign { conv, agent, .. } = x {
                        if queued.front() == Some(&conv.0) {
                            queued.pop_front();
                        } else {
                            assert!(!queued.contains(&conv.0), "queue jumped");
                        }
                        assert!(assigned.insert(conv.0, agent.to_string()).is_none(), "assigned twice");
                    }
                }
            };
            for o in ops {
                match o {
                    Op::Online(a) => {
                        devices[a as usize] += 1;
                        let (_, out) = d.agent_online(&agent(&format!("a{a}")), 0);
                        apply(out, &mut assigned, &mut queued);
                    }
                    Op::Offline(a) if devices[a as usize] > 0 => {
                        devices[a as usize] -= 1;
                        d.agent_offline(&agent(&format!("a{a}")), 0);
                    }
                    Op::Offline(_) => {}
                    Op::Enqueue => {
                        next += 1;
                        let out = d.enqueue(ConvId(next), VisitorId(next));
                        if let [Dispatch::Position { .. }] = out.as_slice() {
                            queued.push_back(next);
                        }
                        apply(out, &mut assigned, &mut queued);
                    }
                    Op::Close(a) => {
                        let name = format!("a{a}");
                        if let Some(c) = assigned.iter().find(|(_, v)| **v == name).map(|(c, _)| *c) {
                            assigned.remove(&c);
                            let out = d.closed(ConvId(c), Some(&agent(&name)));
                            apply(out, &mut assigned, &mut queued);
                        }
                    }
                    Op::IdleClose(n) => {
                        let mut open: Vec<u64> = assigned.keys().copied().chain(queued.iter().copied()).collect();
                        open.sort_unstable();
                        if let Some(&c) = open.get(n as usize) {
                            assigned.remove(&c);
                            queued.retain(|q| *q != c);
                            let out = d.closed(ConvId(c), None);
                            apply(out, &mut assigned, &mut queued);
                            // Told twice (a late duplicate): nothing changes.
                            prop_assert!(d.closed(ConvId(c), None).is_empty());
                        }
                    }
                }
                for a in 0..4u8 {
                    let load = assigned.values().filter(|v| **v == format!("a{a}")).count() as u32;
                    prop_assert!(load <= cap);
                    let has_room = devices[a as usize] > 0 && load < cap;
                    prop_assert!(!has_room || queued.is_empty(), "waiting while a{a} has room");
                }
                prop_assert_eq!(d.queue_len(), queued.len());
            }
        }
    }
}
