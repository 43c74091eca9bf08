//! Feeds the AI layer from the message path: every visitor message a gateway shard sends to
//! be stored also goes through the plugin chain, and what the chain decides goes back to
//! that shard (the conversation's home) as an `assist`.
//!
//! It runs beside storage, never in its way: a message is handed over without waiting (a
//! full lane drops it from the AI layer, counted, and it is still stored), the chain runs on
//! its own tasks, and the gateway decides what a decision may do (a bot reply is posted only
//! while the bot has the conversation).
//!
//! Plugins run on a thread of their own (its own single-threaded runtime, at a lower
//! priority: `nice` in the configuration), so the AI layer takes at most one core and, when
//! the host is short of CPU, yields it to the gateway and to storage: it falls behind and
//! skips messages (counted) instead of slowing the message path.
//!
//! Messages of one conversation are decided in order, on one of a fixed set of lanes (a
//! conversation always maps to the same lane), so that per-conversation state (misses in a
//! row, the sentiment trend) counts them in the order the visitor wrote them and replies
//! come back in that order. A slow plugin holds up its lane for at most its deadline.
//! A persist that a gateway sends again after a reconnect is recognised (the newest seq
//! decided per conversation), so no message is decided twice.

use crate::ai::{Chain, ChainOutcome};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_protocol::bridge::{Assist, BotMode, BridgeMsg, StoredMessage};
use switchboard_protocol::{ConvId, VisitorId};
use tokio::sync::mpsc;

/// Lanes decisions run on. Each is one task; conversations are spread over them.
const LANES: usize = 64;
/// Messages waiting per lane before new ones skip the AI layer.
const LANE_DEPTH: usize = 1024;
/// Conversations a lane remembers the newest decided seq of (then it starts over: a resend
/// that old is not expected).
const REMEMBERED: usize = 100_000;

/// One visitor message to decide about, and where the decision goes.
struct Job {
    conv: ConvId,
    seq: u64,
    visitor: String,
    text: String,
    reply_to: mpsc::UnboundedSender<BridgeMsg>,
}

/// The AI layer as the bridge's server sees it. Cheap to clone.
#[derive(Clone)]
pub struct Assistant {
    mode: BotMode,
    lanes: Option<Arc<Vec<mpsc::Sender<Job>>>>,
    chain: Option<Arc<Chain>>,
}

impl Assistant {
    /// No AI layer: every conversation takes the human path.
    pub fn off() -> Self {
        Self {
            mode: BotMode::Off,
            lanes: None,
            chain: None,
        }
    }

    /// Starts the lanes on a thread of their own, at `nice` (0: as the rest of the
    /// process). With mode `off` or an empty chain, nothing runs.
    pub fn start(mode: BotMode, chain: Chain, nice: i32) -> std::io::Result<Self> {
        if mode == BotMode::Off || chain.is_empty() {
            return Ok(Self::off());
        }
        let chain = Arc::new(chain);
        let mut receivers = Vec::with_capacity(LANES);
        let lanes = (0..LANES)
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_DEPTH);
                receivers.push(rx);
                tx
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let lanes_chain = chain.clone();
        std::thread::Builder::new()
            .name("ai-plugins".into())
            .spawn(move || {
                lower_priority(nice);
                rt.block_on(async move {
                    let tasks: Vec<_> = receivers
                        .into_iter()
                        .map(|rx| tokio::spawn(lane(lanes_chain.clone(), rx)))
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })?;
        metrics::counter!("bridge_ai_messages_total", "outcome" => "decided").absolute(0);
        metrics::counter!("bridge_ai_messages_total", "outcome" => "dropped").absolute(0);
        Ok(Self {
            mode,
            lanes: Some(Arc::new(lanes)),
            chain: Some(chain),
        })
    }

    /// Plugins read their files again (SIGHUP): messages being decided finish with what
    /// they had, and a bad file keeps the current one. Logs what happened.
    pub fn reload(&self) {
        let Some(chain) = &self.chain else {
            tracing::info!("reload asked: no AI layer");
            return;
        };
        for (plugin, result) in chain.reload() {
            let outcome = if result.is_ok() { "ok" } else { "failed" };
            metrics::counter!("bridge_ai_reloads_total", "plugin" => plugin.clone(), "outcome" => outcome)
                .increment(1);
            match result {
                Ok(what) => tracing::info!(plugin, %what, "reloaded"),
                Err(error) => tracing::warn!(plugin, %error, "reload failed; keeping what it had"),
            }
        }
    }

    /// What the bridge tells gateways in `welcome`.
    pub fn mode(&self) -> BotMode {
        self.mode
    }

    /// Hands the visitor messages among `messages` to the chain, without waiting; decisions
    /// go to `reply_to`.
    pub fn feed(&self, messages: &[StoredMessage], reply_to: &mpsc::UnboundedSender<BridgeMsg>) {
        let Some(lanes) = &self.lanes else { return };
        for m in messages {
            if VisitorId::parse(&m.sender).is_none() {
                continue;
            }
            let job = Job {
                conv: m.conv,
                seq: m.seq,
                visitor: m.sender.clone(),
                text: m.body.clone(),
                reply_to: reply_to.clone(),
            };
            let lane = &lanes[lane_of(m.conv)];
            if lane.try_send(job).is_err() {
                metrics::counter!("bridge_ai_messages_total", "outcome" => "dropped").increment(1);
            }
        }
    }
}

/// Lowers the calling thread's priority to `nice` (Linux sets it per thread).
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: plain system calls on the calling thread, no memory shared.
    #[allow(unsafe_code)]
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if rc != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "could not lower the AI thread's priority");
    }
}

fn lane_of(conv: ConvId) -> usize {
    (conv.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % LANES
}

async fn lane(chain: Arc<Chain>, mut rx: mpsc::Receiver<Job>) {
    let mut newest: HashMap<ConvId, u64> = HashMap::new();
    while let Some(job) = rx.recv().await {
        if newest.get(&job.conv).is_some_and(|&s| s >= job.seq) {
            continue;
        }
        if newest.len() >= REMEMBERED {
            newest.clear();
        }
        newest.insert(job.conv, job.seq);
        let conv = job.conv.to_string();
        let outcome = chain.run(&conv, &job.visitor, &job.text).await;
        metrics::counter!("bridge_ai_messages_total", "outcome" => "decided").increment(1);
        let assist = to_assist(outcome);
        if !assist.is_empty() {
            let _ = job.reply_to.send(BridgeMsg::Assist {
                conv: job.conv,
                seq: job.seq,
                assist,
            });
        }
    }
}

/// The chain's outcome as the gateway takes it.
pub fn to_assist(out: ChainOutcome) -> Assist {
    let (by, reply) = match out.reply {
        Some((by, text)) => (by, Some(text)),
        None => (String::new(), None),
    };
    let (by, draft) = match out.draft {
        Some((draft_by, text)) => (if by.is_empty() { draft_by } else { by }, Some(text)),
        None => (by, None),
    };
    Assist {
        reply,
        draft,
        by,
        labels: out.labels,
        priority: out.priority,
        // Plugins word their reasons for the agent, naming themselves where it helps.
        handoff: out.handoff.map(|(_, h)| h.reason),
    }
    .bounded()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::{Decision, Handoff, Plugin, PluginFuture, Turn};
    use std::time::Duration;

    /// Answers "echo: <text>", slowly for "slow".
    struct Echo;

    impl Plugin for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a> {
            Box::pin(async move {
                if turn.text == "slow" {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if turn.text == "help" {
                    return Ok(Decision {
                        handoff: Some(Handoff {
                            reason: "asked".into(),
                        }),
                        ..Decision::default()
                    });
                }
                Ok(Decision {
                    reply: Some(format!("echo: {}", turn.text)),
                    ..Decision::default()
                })
            })
        }
    }

    fn stored(conv: u64, seq: u64, sender: &str, body: &str) -> StoredMessage {
        StoredMessage {
            conv: ConvId(conv),
            seq,
            sender: sender.into(),
            cid: format!("c{seq}"),
            body: body.into(),
            ts: 0,
        }
    }

    #[tokio::test]
    async fn visitor_messages_are_decided_in_order_once_and_others_are_not() {
        let chain = Chain::new().with(Arc::new(Echo), Duration::from_secs(1));
        let assistant = Assistant::start(BotMode::BotFirst, chain, 10).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let v = "v0000000000000001";
        let batch = [
            stored(1, 1, v, "slow"),
            stored(1, 2, "ann", "an agent's message"),
            stored(1, 3, v, "fast"),
            stored(1, 4, "bot:switchboard", "the bot's own"),
            stored(2, 1, v, "help"),
        ];
        assistant.feed(&batch, &tx);
        // A persist sent again after a reconnect: nothing is decided twice.
        assistant.feed(&batch[..3], &tx);
        let mut got = Vec::new();
        while got.len() < 3 {
            let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("decisions arrive")
                .unwrap();
            let BridgeMsg::Assist { conv, seq, assist } = msg else {
                panic!("{msg:?}")
            };
            got.push((conv.0, seq, assist));
        }
        let conv1: Vec<_> = got
            .iter()
            .filter(|(c, ..)| *c == 1)
            .map(|(_, s, a)| (*s, a.reply.clone().unwrap()))
            .collect();
        assert_eq!(
            conv1,
            vec![(1, "echo: slow".into()), (3, "echo: fast".into())],
            "in order, though the first was slower"
        );
        let (_, _, help) = got.iter().find(|(c, ..)| *c == 2).unwrap();
        assert_eq!(help.handoff.as_deref(), Some("asked"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(rx.try_recv().is_err(), "nothing else: no duplicates");
    }

    #[test]
    fn off_runs_nothing() {
        let chain = Chain::new().with(Arc::new(Echo), Duration::from_secs(1));
        let a = Assistant::start(BotMode::Off, chain, 10).unwrap();
        assert!(a.lanes.is_none());
        assert_eq!(a.mode(), BotMode::Off);
    }
}
