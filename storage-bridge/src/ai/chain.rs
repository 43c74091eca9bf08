//! Runs the configured plugins over one visitor message, in order, each under its deadline.
//!
//! A plugin that returns an error, panics or misses its deadline is skipped for that message:
//! counted (`bridge_ai_plugin_calls_total{outcome=...}`), logged at most once per interval per
//! plugin and outcome, and the rest of the chain runs as if it were not there. With every
//! plugin off or broken the outcome is empty and the conversation takes the human path as
//! it would without this layer.

use super::plugin::{Decision, Handoff, Labels, Plugin, Turn};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_protocol::throttle::LogThrottle;

/// Why a plugin was skipped for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Error,
    Panic,
    Timeout,
}

impl Skip {
    fn as_str(self) -> &'static str {
        match self {
            Skip::Error => "error",
            Skip::Panic => "panic",
            Skip::Timeout => "timeout",
        }
    }
}

/// What the chain decided about one message, with who decided it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChainOutcome {
    /// The bot's reply and the plugin that wrote it (the first reply in chain order wins).
    pub reply: Option<(String, String)>,
    /// A draft for the agent and the plugin that wrote it (the first in chain order wins).
    pub draft: Option<(String, String)>,
    pub labels: Labels,
    /// The highest priority any plugin asked for.
    pub priority: Option<i32>,
    /// A hand-off to a human and the plugin that asked for it; it ends the chain.
    pub handoff: Option<(String, Handoff)>,
    /// Plugins skipped for this message, and why.
    pub skipped: Vec<(String, Skip)>,
}

struct Entry {
    plugin: Arc<dyn Plugin>,
    deadline: Duration,
}

/// The ordered plugins of one deployment.
pub struct Chain {
    entries: Vec<Entry>,
    throttle: Mutex<LogThrottle>,
    epoch: Instant,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            throttle: Mutex::new(LogThrottle::new(5_000)),
            epoch: Instant::now(),
        }
    }

    /// Appends a plugin; plugins run in the order they were added.
    pub fn with(mut self, plugin: Arc<dyn Plugin>, deadline: Duration) -> Self {
        self.entries.push(Entry { plugin, deadline });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Asks every plugin to read its files again: for each that has some, its name and
    /// what it reloaded, or why it kept what it had.
    pub fn reload(&self) -> Vec<(String, Result<String, String>)> {
        self.entries
            .iter()
            .filter_map(|e| {
                let name = e.plugin.name().to_owned();
                match e.plugin.reload() {
                    Ok(None) => None,
                    Ok(Some(what)) => Some((name, Ok(what))),
                    Err(err) => Some((name, Err(format!("{err:#}")))),
                }
            })
            .collect()
    }

    pub async fn run(&self, conv: &str, visitor: &str, text: &str) -> ChainOutcome {
        let mut out = ChainOutcome::default();
        if text.trim().is_empty() {
            return out;
        }
        let mut failed: Vec<String> = Vec::new();
        for entry in &self.entries {
            let name = entry.plugin.name().to_owned();
            let turn = Turn {
                conv,
                visitor,
                text,
                labels: &out.labels,
                answered: out.reply.is_some(),
                failed: &failed,
            };
            let wanted =
                std::panic::catch_unwind(AssertUnwindSafe(|| entry.plugin.can_handle(&turn)));
            let result = match wanted {
                Ok(false) => continue,
                Err(_) => Err((Skip::Panic, String::new())),
                Ok(true) => {
                    let start = Instant::now();
                    let call = AssertUnwindSafe(entry.plugin.process(&turn)).catch_unwind();
                    let r = match tokio::time::timeout(entry.deadline, call).await {
                        Ok(Ok(Ok(decision))) => Ok(decision),
                        Ok(Ok(Err(e))) => Err((Skip::Error, e.to_string())),
                        Ok(Err(_)) => Err((Skip::Panic, String::new())),
                        Err(_) => Err((Skip::Timeout, String::new())),
                    };
                    metrics::histogram!("bridge_ai_plugin_seconds", "plugin" => name.clone())
                        .record(start.elapsed().as_secs_f64());
                    r
                }
            };
            match result {
                Ok(decision) => {
                    let outcome = if decision == Decision::default() {
                        "nothing"
                    } else {
                        "decided"
                    };
                    metrics::counter!("bridge_ai_plugin_calls_total", "plugin" => name.clone(), "outcome" => outcome)
                        .increment(1);
                    if merge(&mut out, &name, decision) {
                        break;
                    }
                }
                Err((skip, detail)) => {
                    metrics::counter!("bridge_ai_plugin_calls_total", "plugin" => name.clone(), "outcome" => skip.as_str())
                        .increment(1);
                    self.warn(&name, skip, &detail);
                    failed.push(name.clone());
                    out.skipped.push((name, skip));
                }
            }
        }
        out
    }

    fn warn(&self, plugin: &str, skip: Skip, detail: &str) {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let key = format!("{plugin}/{}", skip.as_str());
        let allowed = self.throttle.lock().map(|mut t| t.allow(&key, now_ms));
        if let Ok(Some(suppressed)) = allowed {
            tracing::warn!(
                plugin,
                outcome = skip.as_str(),
                detail,
                suppressed,
                "AI plugin skipped for a message"
            );
        }
    }
}

/// Adds one plugin's decision to the outcome; true when the chain should stop (a hand-off).
fn merge(out: &mut ChainOutcome, plugin: &str, d: Decision) -> bool {
    out.labels.extend(d.labels);
    if let Some(p) = d.priority {
        out.priority = Some(out.priority.map_or(p, |q| q.max(p)));
    }
    if out.reply.is_none() {
        if let Some(text) = d.reply {
            out.reply = Some((plugin.to_owned(), text));
        }
    }
    if out.draft.is_none() {
        if let Some(text) = d.draft {
            out.draft = Some((plugin.to_owned(), text));
        }
    }
    if let Some(h) = d.handoff {
        out.handoff = Some((plugin.to_owned(), h));
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::plugin::PluginFuture;

    /// A plugin that does what it is told, for testing the chain.
    struct Scripted {
        name: &'static str,
        act: fn(&Turn<'_>) -> Act,
    }

    enum Act {
        Decide(Decision),
        Fail,
        Panic,
        Hang,
    }

    impl Plugin for Scripted {
        fn name(&self) -> &str {
            self.name
        }
        fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a> {
            let act = (self.act)(turn);
            Box::pin(async move {
                match act {
                    Act::Decide(d) => Ok(d),
                    Act::Fail => anyhow::bail!("backend unavailable"),
                    Act::Panic => panic!("plugin bug"),
                    Act::Hang => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                }
            })
        }
    }

    fn plugin(name: &'static str, act: fn(&Turn<'_>) -> Act) -> Arc<dyn Plugin> {
        Arc::new(Scripted { name, act })
    }

    const MS: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn broken_plugins_are_skipped_and_the_rest_still_decide() {
        let chain = Chain::new()
            .with(plugin("fails", |_| Act::Fail), MS)
            .with(plugin("panics", |_| Act::Panic), MS)
            .with(plugin("hangs", |_| Act::Hang), MS)
            .with(
                plugin("labels", |_| {
                    Act::Decide(Decision::default().label("intent", "refund"))
                }),
                MS,
            );
        let start = Instant::now();
        let out = chain.run("c1", "v1", "I want my money back").await;
        assert_eq!(out.labels.get("intent").map(String::as_str), Some("refund"));
        assert_eq!(
            out.skipped,
            vec![
                ("fails".to_owned(), Skip::Error),
                ("panics".to_owned(), Skip::Panic),
                ("hangs".to_owned(), Skip::Timeout)
            ]
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a hung plugin costs its deadline, no more"
        );
    }

    #[tokio::test]
    async fn later_plugins_see_earlier_labels_and_a_handoff_ends_the_chain() {
        let chain = Chain::new()
            .with(
                plugin("intent", |_| {
                    Act::Decide(Decision {
                        priority: Some(1),
                        ..Decision::default().label("intent", "ask_human")
                    })
                }),
                MS,
            )
            .with(
                plugin("handoff", |t| {
                    if t.labels.get("intent").map(String::as_str) == Some("ask_human") {
                        Act::Decide(Decision {
                            reply: Some("connecting you".into()),
                            priority: Some(5),
                            handoff: Some(Handoff {
                                reason: "visitor asked for a human".into(),
                            }),
                            ..Decision::default()
                        })
                    } else {
                        Act::Decide(Decision::default())
                    }
                }),
                MS,
            )
            .with(plugin("after", |_| Act::Panic), MS);
        let out = chain.run("c1", "v1", "转人工").await;
        assert_eq!(out.priority, Some(5));
        assert_eq!(
            out.reply,
            Some(("handoff".to_owned(), "connecting you".to_owned()))
        );
        assert_eq!(
            out.handoff
                .as_ref()
                .map(|(p, h)| (p.as_str(), h.reason.as_str())),
            Some(("handoff", "visitor asked for a human"))
        );
        assert!(
            out.skipped.is_empty(),
            "the chain stopped at the hand-off: {:?}",
            out.skipped
        );
    }

    #[tokio::test]
    async fn a_blank_message_reaches_no_plugin() {
        let chain = Chain::new().with(plugin("panics", |_| Act::Panic), MS);
        assert_eq!(chain.run("c", "v", " \n\t").await, ChainOutcome::default());
    }

    #[tokio::test]
    async fn a_chain_with_nothing_to_say_is_empty() {
        let chain = Chain::new().with(plugin("quiet", |_| Act::Decide(Decision::default())), MS);
        assert_eq!(chain.run("c", "v", "hello").await, ChainOutcome::default());
        assert_eq!(
            Chain::new().run("c", "v", "hello").await,
            ChainOutcome::default()
        );
    }
}
