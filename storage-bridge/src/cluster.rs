//! Several gateway nodes as one service: membership and the cross-node relay, through
//! Redis (docs/cluster.md).
//!
//! - **Membership.** Each node writes its entry (`{prefix}nodes`, a hash: node number ->
//!   id, address, shards and a heartbeat counter) every `heartbeat`. A node is live while
//!   its counter keeps moving: one that did not move for `dead_after` (as timed by the
//!   reader's own clock, so clocks need not agree) is dead, and its entry and stream are
//!   deleted. Every change, and whether Redis answers, goes to every gateway shard as
//!   `cluster`; the shards place conversations by rendezvous hashing over the live nodes.
//! - **Relay.** Shard messages for other nodes arrive from the gateway as `relay`, wait
//!   here per node, and go out as one stream entry per node per flush (`XADD
//!   {prefix}relay:{num}`): a batch, never a round trip per message. Each node reads its own
//!   stream (`XREAD BLOCK`) and hands each message to the link of the shard it is for.
//! - **Redis lost.** The view stays as it was (nobody is declared dead for want of Redis),
//!   the node keeps serving its own conversations, relayed messages wait here (bounded:
//!   past `MAX_WAITING` the oldest are dropped and counted), and `cluster` says
//!   `redis: false` (the gateway's `/healthz` says `degraded`). When Redis is back the
//!   waiting messages go out first, and liveness is timed afresh.
//!
//! Redis Cluster works the same: every command names one key (the node hash, or one
//! node's stream), so each goes to the master owning that key's slot.
//!
//! Threading model: tokio tasks (heartbeat, sender, reader) sharing [`Cluster`] behind an
//! `Arc`; its mutexes are never held across an `.await`.

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_protocol::bridge::{BridgeMsg, ClusterNode, Relayed};
use tokio::sync::{mpsc, Notify};

/// One stream entry as XREAD gives it: its id and its fields.
type StreamEntry = (String, Vec<(String, String)>);

/// Relayed messages waiting for Redis, at most (then the oldest go).
const MAX_WAITING: usize = 1_000_000;
/// Stream entries read at once.
const READ_COUNT: usize = 256;
/// How long a read blocks for new entries.
const READ_BLOCK_MS: u64 = 1_000;
/// How often a node trims what it has read from its stream.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Entries kept in a node's stream (approximately), should its node stop reading.
const STREAM_MAXLEN: usize = 100_000;

/// What the bridge needs to join a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Redis URLs: one for a single instance, several seeds for a Redis Cluster.
    pub redis: Vec<String>,
    /// Whether `redis` is a Redis Cluster.
    pub redis_cluster: bool,
    /// This node's name (for people; the number is what routes).
    pub node_id: String,
    /// The address its clients use (shown in the membership, for people and the LB).
    pub advertise: String,
    /// Prefix of the cluster's keys (shared by all nodes).
    pub prefix: String,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    /// How long relayed messages wait for more before they go out (0: at once).
    pub linger: Duration,
}

/// A node's entry in the membership hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub id: String,
    pub addr: String,
    pub shards: u32,
    pub beat: u64,
    /// When it was written (Unix milliseconds, the writer's clock): only to judge an
    /// entry seen for the first time (a node that died before this one started is not
    /// counted live for `dead_after`); liveness after that is the counter's.
    #[serde(default)]
    pub at_ms: u64,
    /// The node stopped cleanly: dead at once for whoever reads it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left: bool,
}

/// One Redis connection of either kind.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn open(cfg: &ClusterConfig) -> RedisResult<Self> {
        let opening = async {
            if cfg.redis_cluster {
                let client = redis::cluster::ClusterClient::new(cfg.redis.clone())?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            } else {
                let client = redis::Client::open(cfg.redis[0].as_str())?;
                Ok(Self::Single(ConnectionManager::new(client).await?))
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, opening).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    }

    /// One command, answered within `CALL_TIMEOUT` (plus what it blocks for): a Redis
    /// that went away mid-call must not hang the caller.
    async fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        self.query_blocking(cmd, Duration::ZERO).await
    }

    async fn query_blocking<T: FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        blocks: Duration,
    ) -> RedisResult<T> {
        let call = async {
            match self {
                Self::Single(c) => cmd.query_async(c).await,
                Self::Cluster(c) => cmd.query_async(c).await,
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT + blocks, call).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        }
    }
}

/// How long a Redis call may take before the connection is given up and opened again.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

/// Whether a failed call's connection is given up (opened afresh for the next).
fn drop_connection(e: &redis::RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_connection_dropped() || e.is_timeout() || e.is_io_error()
}

/// The live nodes as this bridge sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub nodes: Vec<ClusterNode>,
    pub redis: bool,
}

/// Liveness of the nodes seen in the hash: each one's last counter value, when it moved,
/// and its shards. A node missing from the hash (Redis restarted empty, and it has not
/// written again yet) keeps its record until it is as old as a silent node's.
#[derive(Debug, Default)]
pub struct Liveness {
    seen: BTreeMap<u16, (u64, Instant, u32)>,
}

impl Liveness {
    /// Takes the hash as read at `now`: the live nodes with their shards, and the dead
    /// ones (to be deleted). `me` is always live.
    pub fn read(
        &mut self,
        entries: &BTreeMap<u16, Entry>,
        me: (u16, u32),
        (now, now_ms): (Instant, u64),
        dead_after: Duration,
    ) -> (Vec<ClusterNode>, Vec<u16>) {
        // A node that left is dead at once: its record goes, whatever its age.
        let mut dead: Vec<u16> = Vec::new();
        for (&num, e) in entries {
            if e.left && num != me.0 {
                self.seen.remove(&num);
                dead.push(num);
                continue;
            }
            let s = self.seen.entry(num).or_insert_with(|| {
                let age = Duration::from_millis(now_ms.saturating_sub(e.at_ms)).min(dead_after);
                (e.beat, now.checked_sub(age).unwrap_or(now), e.shards)
            });
            if s.0 != e.beat {
                *s = (e.beat, now, e.shards);
            }
        }
        self.seen.insert(me.0, (0, now, me.1));
        self.seen.retain(|&n, s| {
            let silent = now.duration_since(s.1) >= dead_after;
            if silent {
                dead.push(n);
            }
            !silent
        });
        dead.sort_unstable();
        let live = self
            .seen
            .iter()
            .map(|(&num, s)| ClusterNode { num, shards: s.2 })
            .collect();
        (live, dead)
    }

    /// Redis answers again: every node gets a fresh `dead_after` from now.
    pub fn restart(&mut self, now: Instant) {
        for s in self.seen.values_mut() {
            s.1 = now;
        }
    }
}

struct State {
    /// This node's number and shards, once the gateway said (its first `hello`).
    me: Option<(u16, u32)>,
    /// Each local shard's link.
    links: HashMap<u32, mpsc::UnboundedSender<BridgeMsg>>,
    /// Messages waiting to go out, per node, oldest first.
    waiting: BTreeMap<u16, VecDeque<Relayed>>,
    waiting_len: usize,
    view: View,
    started: bool,
    /// Stopping: the heartbeat writes no more.
    leaving: bool,
}

/// This node's place in the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    cfg: Arc<ClusterConfig>,
    state: Arc<Mutex<State>>,
    wake_sender: Arc<Notify>,
}

impl Cluster {
    pub fn new(cfg: ClusterConfig) -> Self {
        Self {
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(State {
                me: None,
                links: HashMap::new(),
                waiting: BTreeMap::new(),
                waiting_len: 0,
                view: View {
                    nodes: Vec::new(),
                    redis: false,
                },
                started: false,
                leaving: false,
            })),
            wake_sender: Arc::new(Notify::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A gateway shard's link said hello as shard `shard` of node `node` (of `shards`):
    /// its messages from other nodes go to `tx` from now on. The first starts the tasks.
    /// Refused when the node number is not the one this bridge already serves.
    pub fn link(
        &self,
        node: u16,
        shards: u32,
        shard: u32,
        tx: mpsc::UnboundedSender<BridgeMsg>,
    ) -> Result<(), String> {
        let start = {
            let mut st = self.state();
            match st.me {
                Some((n, _)) if n != node => {
                    return Err(format!(
                    "this bridge serves cluster node {n}, not {node}: restart it with the gateway"
                ))
                }
                _ if node == 0 => {
                    return Err("this bridge is in a cluster; the gateway is not".into())
                }
                _ => {}
            }
            st.me = Some((node, shards));
            if st.view.nodes.is_empty() {
                st.view.nodes = vec![ClusterNode { num: node, shards }];
            }
            let _ = tx.send(cluster_msg(&st.view));
            st.links.insert(shard, tx);
            !std::mem::replace(&mut st.started, true)
        };
        if start {
            tokio::spawn(self.clone().heartbeat());
            tokio::spawn(self.clone().sender());
            tokio::spawn(self.clone().reader(node));
        }
        Ok(())
    }

    /// The link of `shard` is gone.
    pub fn unlink(&self, shard: u32) {
        self.state().links.remove(&shard);
    }

    /// Messages from a local shard for shards of other nodes.
    pub fn relay(&self, items: Vec<Relayed>) {
        let mut dropped = 0;
        {
            let mut st = self.state();
            for r in items {
                st.waiting.entry(r.node()).or_default().push_back(r);
                st.waiting_len += 1;
            }
            while st.waiting_len > MAX_WAITING {
                let Some(mut first) = st.waiting.first_entry() else {
                    break;
                };
                first.get_mut().pop_front();
                if first.get().is_empty() {
                    first.remove();
                }
                st.waiting_len -= 1;
                dropped += 1;
            }
            metrics::gauge!("bridge_cluster_relay_waiting").set(st.waiting_len as f64);
        }
        if dropped > 0 {
            metrics::counter!("bridge_cluster_relay_dropped_total").increment(dropped);
        }
        self.wake_sender.notify_one();
    }

    /// A clean stop: this node's entry says it left, so the others count it dead at their
    /// next heartbeat instead of after `dead_after` (and delete it). The heartbeat stops.
    pub async fn leave(&self) {
        let (me, shards) = {
            let mut st = self.state();
            st.leaving = true;
            match st.me {
                Some(m) => m,
                None => return,
            }
        };
        let entry = Entry {
            id: self.cfg.node_id.clone(),
            addr: self.cfg.advertise.clone(),
            shards,
            beat: u64::MAX,
            at_ms: unix_ms(),
            left: true,
        };
        let json = serde_json::to_string(&entry).expect("plain data");
        let left = async {
            let mut c = Conn::open(&self.cfg).await?;
            let write = redis::cmd("HSET")
                .arg(self.key_nodes())
                .arg(me)
                .arg(json)
                .to_owned();
            c.query::<()>(&write).await?;
            // Again, after any heartbeat that was on its way when the flag was set.
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.query::<()>(&write).await
        };
        match left.await {
            Ok(()) => tracing::info!(node = me, "left the cluster"),
            Err(e) => {
                tracing::warn!(node = me, error = %e, "could not leave the cluster; the others will see this node dead")
            }
        }
    }

    /// The view as this bridge sees it now.
    pub fn view(&self) -> View {
        self.state().view.clone()
    }

    fn set_view(&self, view: View) {
        let mut st = self.state();
        if st.view == view {
            return;
        }
        tracing::info!(nodes = ?view.nodes.iter().map(|n| n.num).collect::<Vec<_>>(), redis = view.redis, "cluster view");
        metrics::gauge!("bridge_cluster_nodes").set(view.nodes.len() as f64);
        metrics::gauge!("bridge_cluster_redis_up").set(if view.redis { 1.0 } else { 0.0 });
        let msg = cluster_msg(&view);
        st.view = view;
        st.links.retain(|_, tx| tx.send(msg.clone()).is_ok());
    }

    fn set_redis(&self, up: bool) {
        let mut view = self.view();
        view.redis = up;
        self.set_view(view);
    }

    fn key_nodes(&self) -> String {
        format!("{}nodes", self.cfg.prefix)
    }

    fn key_stream(&self, num: u16) -> String {
        format!("{}relay:{num}", self.cfg.prefix)
    }

    /// Writes this node's entry, reads everyone's, and tells the shards what changed.
    async fn heartbeat(self) {
        let (me, shards) = self.state().me.expect("started by a link");
        let mut conn: Option<Conn> = None;
        let mut live = Liveness::default();
        let mut beat: u64 = 0;
        let mut was_up = false;
        loop {
            if self.state().leaving {
                return;
            }
            beat += 1;
            let result = async {
                if conn.is_none() {
                    conn = Some(Conn::open(&self.cfg).await?);
                }
                let c = conn.as_mut().expect("just opened");
                let entry = Entry {
                    id: self.cfg.node_id.clone(),
                    addr: self.cfg.advertise.clone(),
                    shards,
                    beat,
                    at_ms: unix_ms(),
                    left: false,
                };
                let json = serde_json::to_string(&entry).expect("plain data");
                c.query::<()>(redis::cmd("HSET").arg(self.key_nodes()).arg(me).arg(json))
                    .await?;
                let all: HashMap<u16, String> =
                    c.query(redis::cmd("HGETALL").arg(self.key_nodes())).await?;
                RedisResult::Ok(all)
            }
            .await;
            match result {
                Ok(all) => {
                    let now = Instant::now();
                    if !was_up {
                        live.restart(now);
                        was_up = true;
                    }
                    let entries: BTreeMap<u16, Entry> = all
                        .into_iter()
                        .filter_map(|(n, j)| Some((n, serde_json::from_str(&j).ok()?)))
                        .collect();
                    let clock = (now, unix_ms());
                    let (nodes, dead) =
                        live.read(&entries, (me, shards), clock, self.cfg.dead_after);
                    for num in dead {
                        let id = entries.get(&num).map_or("?", |e| e.id.as_str());
                        tracing::warn!(
                            node = num,
                            id,
                            "node gone (it left, or missed its heartbeats)"
                        );
                        if let Some(c) = conn.as_mut() {
                            let _ = c
                                .query::<()>(redis::cmd("HDEL").arg(self.key_nodes()).arg(num))
                                .await;
                            let _ = c
                                .query::<()>(redis::cmd("DEL").arg(self.key_stream(num)))
                                .await;
                        }
                    }
                    self.set_view(View { nodes, redis: true });
                    self.wake_sender.notify_one();
                }
                Err(e) => {
                    if was_up {
                        tracing::warn!(error = %e, "Redis is not answering: serving this node's conversations only; relayed messages wait");
                    }
                    was_up = false;
                    if drop_connection(&e) {
                        conn = None;
                    }
                    self.set_redis(false);
                }
            }
            tokio::time::sleep(self.cfg.heartbeat).await;
        }
    }

    /// Sends waiting messages: one stream entry per node per round.
    async fn sender(self) {
        let mut conn: Option<Conn> = None;
        loop {
            self.wake_sender.notified().await;
            // Let a batch gather: one stream entry carries what arrives meanwhile (at
            // 2,000 msg/s, about two messages a round trip instead of one).
            if !self.cfg.linger.is_zero() {
                tokio::time::sleep(self.cfg.linger).await;
            }
            loop {
                let batch: Vec<(u16, Vec<Relayed>)> = {
                    let mut st = self.state();
                    metrics::gauge!("bridge_cluster_relay_waiting").set(0.0);
                    let view = st.view.clone();
                    let mut gone = 0;
                    let b = std::mem::take(&mut st.waiting)
                        .into_iter()
                        .filter(|(n, q)| {
                            // For a node the membership counts dead: nobody reads its stream.
                            let live = !view.redis || view.nodes.iter().any(|x| x.num == *n);
                            gone += if live { 0 } else { q.len() };
                            live
                        })
                        .map(|(n, q)| (n, Vec::from(q)))
                        .collect::<Vec<_>>();
                    st.waiting_len = 0;
                    if gone > 0 {
                        metrics::counter!("bridge_cluster_relay_dead_node_total")
                            .increment(gone as u64);
                    }
                    b
                };
                if batch.is_empty() {
                    break;
                }
                let sent = async {
                    if conn.is_none() {
                        conn = Some(Conn::open(&self.cfg).await.map_err(|e| (0, e))?);
                    }
                    let c = conn.as_mut().expect("just opened");
                    for (i, (node, items)) in batch.iter().enumerate() {
                        let body = serde_json::to_string(items).expect("plain data");
                        let cmd = redis::cmd("XADD")
                            .arg(self.key_stream(*node))
                            .arg("MAXLEN")
                            .arg("~")
                            .arg(STREAM_MAXLEN)
                            .arg("*")
                            .arg("b")
                            .arg(body)
                            .to_owned();
                        if let Err(e) = c.query::<String>(&cmd).await {
                            return Err((i, e));
                        }
                        metrics::counter!("bridge_cluster_relayed_out_total")
                            .increment(items.len() as u64);
                        metrics::counter!("bridge_cluster_batches_out_total").increment(1);
                    }
                    Ok(())
                }
                .await;
                if let Err((failed_at, e)) = sent {
                    // Put back what did not go, ahead of anything newer, and wait for Redis.
                    {
                        let mut st = self.state();
                        for (node, items) in batch.into_iter().skip(failed_at).rev() {
                            st.waiting_len += items.len();
                            let q = st.waiting.entry(node).or_default();
                            for r in items.into_iter().rev() {
                                q.push_front(r);
                            }
                        }
                    }
                    if drop_connection(&e) {
                        conn = None;
                    }
                    self.set_redis(false);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Reads this node's stream and hands each message to its shard's link.
    async fn reader(self, me: u16) {
        let key = self.key_stream(me);
        let mut last = "0-0".to_string();
        let mut last_trim = Instant::now();
        let mut conn: Option<Conn> = None;
        loop {
            let read = async {
                if conn.is_none() {
                    conn = Some(Conn::open(&self.cfg).await?);
                }
                let c = conn.as_mut().expect("just opened");
                let reply: Option<Vec<(String, Vec<StreamEntry>)>> = c
                    .query_blocking(
                        redis::cmd("XREAD")
                            .arg("COUNT")
                            .arg(READ_COUNT)
                            .arg("BLOCK")
                            .arg(READ_BLOCK_MS)
                            .arg("STREAMS")
                            .arg(&key)
                            .arg(&last),
                        Duration::from_millis(READ_BLOCK_MS),
                    )
                    .await?;
                RedisResult::Ok(reply.unwrap_or_default())
            }
            .await;
            match read {
                Ok(streams) => {
                    let mut newest = None;
                    for (_, entries) in streams {
                        for (id, fields) in entries {
                            for (_, body) in fields {
                                self.deliver(&body);
                            }
                            newest = Some(id);
                        }
                    }
                    if let Some(id) = newest {
                        last = id;
                    }
                    // Read entries are not needed again: trim through the newest read (MINID
                    // keeps ids at or above it, so trim below its successor), at most once
                    // a second (a command per read would cost Redis a round trip a batch).
                    if last_trim.elapsed() >= TRIM_EVERY {
                        last_trim = Instant::now();
                        if let Some(c) = conn.as_mut() {
                            let trim = redis::cmd("XTRIM")
                                .arg(&key)
                                .arg("MINID")
                                .arg(after(&last))
                                .to_owned();
                            let _ = c.query::<i64>(&trim).await;
                        }
                    }
                }
                Err(e) => {
                    if drop_connection(&e) {
                        conn = None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// One stream entry: messages for local shards, each to its link.
    fn deliver(&self, body: &str) {
        let items: Vec<Relayed> = match serde_json::from_str(body) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable relay entry; skipped");
                return;
            }
        };
        metrics::counter!("bridge_cluster_relayed_in_total").increment(items.len() as u64);
        let mut by_shard: BTreeMap<u32, Vec<Relayed>> = BTreeMap::new();
        for r in items {
            by_shard.entry(r.to & 0xffff).or_default().push(r);
        }
        let st = self.state();
        for (shard, items) in by_shard {
            match st.links.get(&shard) {
                Some(tx) => {
                    let _ = tx.send(BridgeMsg::Relay { items });
                }
                None => {
                    metrics::counter!("bridge_cluster_relay_unlinked_total")
                        .increment(items.len() as u64);
                }
            }
        }
    }
}

/// The stream id right after `id` (`ms-seq`).
fn after(id: &str) -> String {
    match id.split_once('-').map(|(ms, seq)| (ms, seq.parse::<u64>())) {
        Some((ms, Ok(seq))) => format!("{ms}-{}", seq + 1),
        _ => id.to_string(),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn cluster_msg(view: &View) -> BridgeMsg {
    BridgeMsg::Cluster {
        nodes: view.nodes.clone(),
        redis: view.redis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn entry(beat: u64) -> Entry {
        Entry {
            id: "n".into(),
            addr: "a".into(),
            shards: 2,
            beat,
            at_ms: NOW_MS,
            left: false,
        }
    }

    #[test]
    fn a_node_that_left_is_dead_at_once() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        let after = Duration::from_secs(3);
        let mut e: BTreeMap<u16, Entry> = [(1, entry(1)), (2, entry(1))].into();
        assert_eq!(nums(&l.read(&e, (1, 2), (t0, NOW_MS), after).0), vec![1, 2]);
        e.get_mut(&2).unwrap().left = true;
        let (live, dead) = l.read(&e, (1, 2), (t0 + Duration::from_millis(500), NOW_MS), after);
        assert_eq!((nums(&live), dead), (vec![1], vec![2]));
    }

    #[test]
    fn an_entry_left_by_a_node_dead_before_we_started_is_dead_at_once() {
        let mut l = Liveness::default();
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut old = entry(5);
        old.at_ms = NOW_MS - 10_000;
        let e: BTreeMap<u16, Entry> = [(2, old), (3, entry(1))].into();
        let (live, dead) = l.read(&e, (1, 2), (t0, NOW_MS), Duration::from_secs(3));
        assert_eq!((nums(&live), dead), (vec![1, 3], vec![2]));
    }

    fn nums(v: &[ClusterNode]) -> Vec<u16> {
        v.iter().map(|n| n.num).collect()
    }

    #[test]
    fn a_node_is_dead_once_its_counter_stops_for_dead_after() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        let after = Duration::from_secs(3);
        let me = (1, 2);
        let mut e: BTreeMap<u16, Entry> = [(1, entry(1)), (2, entry(1))].into();
        let (live, dead) = l.read(&e, me, (t0, NOW_MS), after);
        assert_eq!((nums(&live), dead), (vec![1, 2], vec![]));
        e.insert(2, entry(2));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(nums(&l.read(&e, me, (t1, NOW_MS), after).0), vec![1, 2]);
        // Node 2 stops; node 1 (me) is live whatever its counter does.
        let t2 = t1 + Duration::from_secs(3);
        let (live, dead) = l.read(&e, me, (t2, NOW_MS), after);
        assert_eq!((nums(&live), dead), (vec![1], vec![2]));
    }

    #[test]
    fn redis_restarting_empty_kills_nobody() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        let after = Duration::from_secs(3);
        let e: BTreeMap<u16, Entry> = [(1, entry(1)), (2, entry(1))].into();
        l.read(&e, (1, 2), (t0, NOW_MS), after);
        // Redis away for 5 s, then back empty: node 2 has not written yet.
        let t1 = t0 + Duration::from_secs(5);
        l.restart(t1);
        let (live, dead) = l.read(&BTreeMap::new(), (1, 2), (t1, NOW_MS), after);
        assert_eq!((nums(&live), dead), (vec![1, 2], vec![]));
        // It writes again: live; had it not, it would be dead after `dead_after`.
        let back: BTreeMap<u16, Entry> = [(2, entry(9))].into();
        let (live, _) = l.read(&back, (1, 2), (t1 + Duration::from_secs(1), NOW_MS), after);
        assert_eq!(nums(&live), vec![1, 2]);
        let (live, dead) = l.read(
            &BTreeMap::new(),
            (1, 2),
            (t1 + Duration::from_secs(5), NOW_MS),
            after,
        );
        assert_eq!((nums(&live), dead), (vec![1], vec![2]));
    }

    #[test]
    fn trimming_goes_through_the_newest_entry_read() {
        assert_eq!(after("1700000000000-0"), "1700000000000-1");
        assert_eq!(after("5-41"), "5-42");
    }

    #[test]
    fn a_node_alone_sees_itself() {
        let mut l = Liveness::default();
        let (live, dead) = l.read(
            &BTreeMap::new(),
            (7, 4),
            (Instant::now(), NOW_MS),
            Duration::from_secs(1),
        );
        assert_eq!(
            (live, dead),
            (vec![ClusterNode { num: 7, shards: 4 }], vec![])
        );
    }
}
