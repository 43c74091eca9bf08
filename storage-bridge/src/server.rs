//! The Unix-socket side: accepts gateway shard connections, checks the protocol version,
//! and serves `persist` (through the group committer), `load_conv` and `history`. Visitor
//! messages in a `persist` also go to the AI layer ([`Assistant`]), whose decisions come
//! back on the same connection as `assist`.
//!
//! Threading model: one tokio task reads each connection and one writes it; queries run as
//! their own tasks; writes all go through the single committer task.
//!
//! Every answer is one page at most (`reads.rs` cuts them); should one still not encode,
//! the gateway gets `failed` for that request, never a frame it would refuse.

use crate::assistant::Assistant;
use crate::cluster::Cluster;
use crate::commit::CommitJob;
use crate::reads::Reads;
use crate::store::From;
use std::path::Path;
use std::sync::Arc;
use switchboard_protocol::bridge::{
    decode, encode, BridgeMsg, OpenConv, SiteRules, BRIDGE_PROTOCOL_VERSION, PAGE_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Binds the socket: refuses to start if another bridge answers on it, removes a stale file
/// left by a crash, and makes the socket owner-only.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use by a running bridge", path.display());
        }
        tracing::warn!(path = %path.display(), "removing a stale socket file");
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Whether a warning about `what` is logged now: the same one at most every 5 s, with the
/// count of those left out (a gateway that keeps failing the same way must not fill the
/// disk). `None`: stay quiet.
fn warn_now(what: &str) -> Option<u64> {
    use std::sync::{Mutex, OnceLock};
    use switchboard_protocol::throttle::LogThrottle;
    static THROTTLE: OnceLock<(std::time::Instant, Mutex<LogThrottle>)> = OnceLock::new();
    let (start, throttle) = THROTTLE.get_or_init(|| {
        (
            std::time::Instant::now(),
            Mutex::new(LogThrottle::new(5_000)),
        )
    });
    let now_ms = start.elapsed().as_millis() as u64;
    throttle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(what, now_ms)
}

/// Faults a test can switch on (none by default).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// While this file exists, `persist` requests are dropped: not committed, not answered.
    pub drop_persists_while: Option<std::path::PathBuf>,
}

/// What every gateway link is served with.
#[derive(Clone)]
pub struct Serving {
    pub commits: mpsc::Sender<CommitJob>,
    pub reads: Arc<Reads>,
    pub faults: Arc<Faults>,
    pub assistant: Assistant,
    pub notices: Notices,
    /// The cluster this bridge's gateway is a node of, if any.
    pub cluster: Option<Cluster>,
}

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    serving: Serving,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, serving.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn read_frame(
    rd: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> anyhow::Result<Option<BridgeMsg>> {
    loop {
        if let Some(msg) = decode(buf)? {
            return Ok(Some(msg));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connection(stream: UnixStream, serving: Serving) {
    let Serving {
        commits,
        reads,
        faults,
        assistant,
        notices,
        cluster,
    } = serving;
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = Vec::new();
    let (shard, node, shards) = match read_frame(&mut rd, &mut buf).await {
        Ok(Some(BridgeMsg::Hello {
            version,
            shard,
            node,
            shards,
        })) if version == BRIDGE_PROTOCOL_VERSION => {
            if node != 0 && cluster.is_none() {
                let reason =
                    "the gateway is in a cluster and this bridge is not (no --cluster-redis)";
                refuse(&mut wr, reason.into()).await;
                return;
            }
            (shard, node, shards)
        }
        Ok(Some(BridgeMsg::Hello { version, .. })) => {
            let reason = format!("protocol version {version} is not supported; this bridge speaks {BRIDGE_PROTOCOL_VERSION}");
            if let Some(repeats) = warn_now(&reason) {
                tracing::warn!(%reason, repeats, "refusing a gateway connection");
            }
            refuse(&mut wr, reason).await;
            return;
        }
        Ok(Some(other)) => {
            refuse(&mut wr, format!("expected hello, got {}", other.kind())).await;
            return;
        }
        Ok(None) => return,
        Err(e) => {
            refuse(&mut wr, format!("bad frame: {e}")).await;
            return;
        }
    };
    let mut out = Vec::new();
    // Listen for access changes before taking the list, so that none falls between.
    let mut changes = notices.tx.subscribe();
    let welcome = BridgeMsg::Welcome {
        version: BRIDGE_PROTOCOL_VERSION,
        bot: assistant.mode(),
        disabled: notices.disabled(),
        sites: notices.sites(),
    };
    encode(&welcome, &mut out).expect("a small frame");
    if wr.write_all(&out).await.is_err() {
        return;
    }
    tracing::info!(shard, "gateway shard connected");
    metrics::gauge!("bridge_gateway_connections").increment(1.0);

    let (tx, mut rx) = mpsc::unbounded_channel::<BridgeMsg>();
    if let Some(c) = &cluster {
        if let Err(reason) = c.link(node, shards, shard, tx.clone()) {
            tracing::error!(%reason, "refusing a gateway connection");
            let _ = tx.send(BridgeMsg::Refuse { reason });
        }
    }
    let writer = tokio::spawn(async move {
        let mut out = Vec::with_capacity(64 * 1024);
        while let Some(first) = rx.recv().await {
            encode_or_fail(&first, &mut out, shard);
            while let Ok(more) = rx.try_recv() {
                encode_or_fail(&more, &mut out, shard);
                if out.len() > 1 << 20 {
                    break;
                }
            }
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    });
    // Access changes (an account disabled or enabled) go to every gateway shard.
    let forward = {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    // Commands go to the dispatcher shard's link only: it routes them.
                    Ok(BridgeMsg::Command { .. }) if shard != DISPATCHER_LINK => {}
                    Ok(m) => {
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            shard,
                            missed = n,
                            "access changes missed; closing the link so that it starts over"
                        );
                        let _ = tx.send(BridgeMsg::Refuse {
                            reason: "access changes missed; reconnect".into(),
                        });
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    };
    loop {
        let msg = match read_frame(&mut rd, &mut buf).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                metrics::counter!("bridge_bad_frames_total").increment(1);
                if let Some(repeats) = warn_now(&e.to_string()) {
                    tracing::warn!(shard, error = %e, repeats, "bad frame from a gateway shard; closing its connection");
                }
                let _ = tx.send(BridgeMsg::Refuse {
                    reason: format!("bad frame: {e}"),
                });
                break;
            }
        };
        match msg {
            BridgeMsg::Persist {
                req,
                messages,
                events,
            } => {
                if faults
                    .drop_persists_while
                    .as_ref()
                    .is_some_and(|p| p.exists())
                {
                    tracing::warn!(shard, req, "test fault: persist dropped");
                    continue;
                }
                // The AI layer reads visitor messages beside storage, never in its way.
                assistant.feed(&messages, &tx);
                let job = CommitJob {
                    req,
                    messages,
                    events,
                    reply: tx.clone(),
                };
                if commits.send(job).await.is_err() {
                    break;
                }
            }
            BridgeMsg::LoadConv {
                req,
                conv,
                recent,
                cids,
                lease,
            } => {
                let (reads, tx) = (reads.clone(), tx.clone());
                tokio::spawn(async move {
                    let lease = lease.min(switchboard_protocol::bridge::MAX_SEQ_LEASE);
                    let reply = match reads.load_conv(conv, recent, cids, lease).await {
                        Ok(info) => BridgeMsg::ConvLoaded { req, conv, info },
                        Err(e) => BridgeMsg::Failed {
                            req,
                            reason: e.to_string(),
                        },
                    };
                    let _ = tx.send(reply);
                });
            }
            BridgeMsg::OpenConvs { req, after, limit } => {
                let (reads, tx) = (reads.clone(), tx.clone());
                tokio::spawn(async move {
                    let limit = limit.clamp(1, OPEN_PAGE_MAX);
                    let reply = match reads.store.open_conversations(after, limit).await {
                        Ok(mut convs) => {
                            let full = convs.len() >= limit as usize;
                            let cut = open_fitting(&convs, PAGE_BYTES);
                            let next = (full || cut < convs.len())
                                .then(|| convs[..cut].last().map(|c| c.conv))
                                .flatten();
                            convs.truncate(cut);
                            BridgeMsg::OpenConvsAre { req, convs, next }
                        }
                        Err(e) => BridgeMsg::Failed {
                            req,
                            reason: e.to_string(),
                        },
                    };
                    let _ = tx.send(reply);
                });
            }
            BridgeMsg::History {
                req,
                conv,
                after,
                before,
                limit,
                oldest_first,
                bytes,
            } => {
                let (reads, tx) = (reads.clone(), tx.clone());
                tokio::spawn(async move {
                    let from = if oldest_first {
                        From::Oldest
                    } else {
                        From::Newest
                    };
                    let budget = (bytes as usize).min(PAGE_BYTES);
                    let read = reads.read(conv, after, before, limit, from, budget);
                    let reply = match read.await {
                        Ok(page) => BridgeMsg::HistoryIs {
                            req,
                            conv,
                            messages: page.messages,
                            more: page.more,
                        },
                        Err(e) => BridgeMsg::Failed {
                            req,
                            reason: e.to_string(),
                        },
                    };
                    let _ = tx.send(reply);
                });
            }
            BridgeMsg::CommandDone { id, error } => notices.command_done(id, error),
            BridgeMsg::Relay { items } => match &cluster {
                Some(c) => c.relay(items),
                None => metrics::counter!("bridge_cluster_relay_unlinked_total")
                    .increment(items.len() as u64),
            },
            BridgeMsg::Presence {
                online,
                offline,
                full,
            } => notices.presence(online, offline, full),
            other => {
                if let Some(repeats) = warn_now(other.kind()) {
                    tracing::warn!(
                        shard,
                        kind = other.kind(),
                        repeats,
                        "unexpected frame from a gateway shard; closing its connection"
                    );
                }
                let _ = tx.send(BridgeMsg::Refuse {
                    reason: format!("unexpected {}", other.kind()),
                });
                break;
            }
        }
    }
    forward.abort();
    if let Some(c) = &cluster {
        c.unlink(shard);
    }
    drop(tx);
    let _ = writer.await;
    metrics::gauge!("bridge_gateway_connections").decrement(1.0);
    if shard == DISPATCHER_LINK {
        notices.presence_lost();
    }
    tracing::info!(shard, "gateway shard disconnected");
}

/// Which accounts are disabled and which sites there are, for every gateway shard: all of
/// it in each `welcome`, and each change as it happens (`agent_access`, `sites`). Loaded
/// from the store at start (the bridge serves only once its store answers), kept here
/// after, so that a link never waits on the store to learn it.
#[derive(Clone)]
pub struct Notices {
    tx: tokio::sync::broadcast::Sender<BridgeMsg>,
    disabled: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    sites: Arc<std::sync::Mutex<Vec<SiteRules>>>,
    /// The REST API's commands waiting for a gateway's answer, by id.
    commands: Arc<std::sync::Mutex<CommandsWaiting>>,
    /// Agents online, as the gateway's dispatcher shard says.
    online: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The shard whose link takes the API's commands (the gateway's dispatcher shard).
const DISPATCHER_LINK: u32 = 0;

/// How long the API waits for a gateway to carry out a command.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Removes a command's waiter when dropped.
struct Forget<'a> {
    commands: &'a std::sync::Mutex<CommandsWaiting>,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        c.waiting.remove(&self.id);
    }
}

#[derive(Default)]
struct CommandsWaiting {
    next: u64,
    waiting: std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Option<String>>>,
}

/// Why a command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no gateway is connected")]
    NoGateway,
    #[error("the gateway did not answer in time")]
    Timeout,
    #[error("{0}")]
    Refused(String),
}

/// What gateways need of the sites.
fn site_rules(sites: &[crate::store::SiteRow]) -> Vec<SiteRules> {
    sites
        .iter()
        .map(|s| SiteRules {
            id: s.id.clone(),
            origins: s.origins.clone(),
            hours: s.hours.clone(),
            welcome_text: s.welcome_text.clone(),
            offline_text: s.offline_text.clone(),
        })
        .collect()
}

impl Notices {
    pub fn new(disabled: Vec<String>, sites: &[crate::store::SiteRow]) -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(1024).0,
            disabled: Arc::new(std::sync::Mutex::new(disabled.into_iter().collect())),
            sites: Arc::new(std::sync::Mutex::new(site_rules(sites))),
            // Ids start at random: an answer to a command of an earlier bridge process,
            // flushed late by a gateway, matches nothing here.
            commands: Arc::new(std::sync::Mutex::new(CommandsWaiting {
                next: {
                    let mut b = [0u8; 8];
                    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
                    u64::from_le_bytes(b) >> 2
                },
                waiting: Default::default(),
            })),
            online: Default::default(),
        }
    }

    fn presence(&self, online: Vec<String>, offline: Vec<String>, full: bool) {
        let mut set = self.online.lock().unwrap_or_else(|p| p.into_inner());
        if full {
            set.clear();
        }
        set.extend(online);
        for a in &offline {
            set.remove(a);
        }
    }

    /// The dispatcher shard's link is gone: nobody is known to be online until it is back.
    fn presence_lost(&self) {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Whether `agent` is online (connected to a gateway), as far as the bridge heard.
    pub fn is_online(&self, agent: &str) -> bool {
        self.online
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(agent)
    }

    /// Asks the gateway to do `action` to `conv` as agent `by`, and waits for its answer.
    /// `as_agent`: `by` acts as the conversation's agent, not as a supervisor.
    pub async fn command(
        &self,
        conv: switchboard_protocol::ConvId,
        by: &str,
        as_agent: bool,
        action: switchboard_protocol::bridge::ApiAction,
    ) -> Result<(), CommandError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let id = {
            let mut c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
            c.next += 1;
            let id = c.next;
            c.waiting.insert(id, done);
            id
        };
        // However this ends (an answer, a timeout, the HTTP request dropped), the waiter
        // goes.
        let _forget = Forget {
            commands: &self.commands,
            id,
        };
        let msg = BridgeMsg::Command {
            id,
            conv,
            by: by.to_owned(),
            as_agent,
            action,
        };
        if self.tx.send(msg).is_err() {
            return Err(CommandError::NoGateway);
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(why))) => Err(CommandError::Refused(why)),
            Ok(Err(_)) | Err(_) => Err(CommandError::Timeout),
        }
    }

    fn command_done(&self, id: u64, error: Option<String>) {
        let waiter = {
            let mut c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
            c.waiting.remove(&id)
        };
        if let Some(w) = waiter {
            let _ = w.send(error);
        }
    }

    fn sites(&self) -> Vec<SiteRules> {
        self.sites.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The sites are now `sites`: every gateway shard hears of it.
    pub fn sites_changed(&self, sites: &[crate::store::SiteRow]) {
        let rules = site_rules(sites);
        *self.sites.lock().unwrap_or_else(|p| p.into_inner()) = rules.clone();
        let _ = self.tx.send(BridgeMsg::Sites { sites: rules });
    }

    fn disabled(&self) -> Vec<String> {
        let set = self.disabled.lock().unwrap_or_else(|p| p.into_inner());
        set.iter().cloned().collect()
    }

    /// `agent`'s account was disabled or enabled: every gateway shard hears of it.
    pub fn access(&self, agent: &str, disabled: bool) {
        {
            let mut set = self.disabled.lock().unwrap_or_else(|p| p.into_inner());
            if disabled {
                set.insert(agent.to_owned());
            } else {
                set.remove(agent);
            }
        }
        // None listening (no gateway connected) is fine: each gets the list when it links.
        let _ = self.tx.send(BridgeMsg::AgentAccess {
            agent: agent.to_owned(),
            disabled,
        });
    }
}

/// Open conversations one listing page holds at most.
const OPEN_PAGE_MAX: u32 = 10_000;

/// How many of `convs` fit `budget` bytes (an upper bound of each one's encoding), at least one.
fn open_fitting(convs: &[OpenConv], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, c) in convs.iter().enumerate() {
        let text = |t: &Option<String>| {
            t.as_deref()
                .map_or(0, switchboard_protocol::bridge::json_str_len)
        };
        used += 112 + text(&c.agent) + text(&c.site);
        if used > budget && i > 0 {
            return i;
        }
    }
    convs.len()
}

/// Encodes an answer; one that cannot be encoded (too large) becomes `failed` for its
/// request, so the gateway gives up on it instead of losing the link.
fn encode_or_fail(msg: &BridgeMsg, out: &mut Vec<u8>, shard: u32) {
    if let Err(e) = encode(msg, out) {
        metrics::counter!("bridge_answers_refused_total").increment(1);
        if let Some(repeats) = warn_now(&format!("{} {e}", msg.kind())) {
            tracing::warn!(shard, kind = msg.kind(), error = %e, repeats, "answer too large; failing its request");
        }
        if let Some(req) = msg.req() {
            let failed = BridgeMsg::Failed {
                req,
                reason: format!("answer not sent: {e}"),
            };
            encode(&failed, out).expect("a small frame");
        }
    }
}

async fn refuse(wr: &mut (impl AsyncWriteExt + Unpin), reason: String) {
    let mut out = Vec::new();
    encode(&BridgeMsg::Refuse { reason }, &mut out).expect("a small frame");
    let _ = wr.write_all(&out).await;
    let _ = wr.shutdown().await;
}
