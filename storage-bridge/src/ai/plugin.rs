//! The plugin interface ([`Plugin`]) and what a plugin decides about one visitor message
//! ([`Decision`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// One visitor message, as a plugin sees it.
#[derive(Clone, Debug)]
pub struct Turn<'a> {
    pub conv: &'a str,
    pub visitor: &'a str,
    pub text: &'a str,
    /// What the plugins earlier in the chain decided about this message (e.g. the intent),
    /// so a later one can build on it.
    pub labels: &'a Labels,
    /// Whether a plugin earlier in the chain already wrote a reply (a costly answering
    /// plugin, such as the LLM, can skip the message then).
    pub answered: bool,
    /// Plugins earlier in the chain that failed, panicked or timed out on this message.
    pub failed: &'a [String],
}

/// Labels on a message or conversation: `intent`, `sentiment`, `language`, ... with values.
pub type Labels = BTreeMap<String, String>;

/// Why a conversation goes to a human, shown to the agent who takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub reason: String,
}

/// What one plugin decided about one message. Everything is optional: `Decision::default()`
/// means "nothing to say".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// A reply to send to the visitor as the bot.
    pub reply: Option<String>,
    /// A reply only the conversation's agent sees, to send or edit.
    pub draft: Option<String>,
    /// Labels to add (later plugins in the chain see them).
    pub labels: Labels,
    /// Priority for the human queue; higher goes first.
    pub priority: Option<i32>,
    /// Hand the conversation to a human.
    pub handoff: Option<Handoff>,
}

impl Decision {
    pub fn label(mut self, key: &str, value: impl Into<String>) -> Self {
        self.labels.insert(key.to_owned(), value.into());
        self
    }
}

/// What `process` returns: boxed so that plugins are usable as trait objects.
pub type PluginFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Decision>> + Send + 'a>>;

/// The future of a decision made without waiting (most plugins decide synchronously).
pub fn ready<'a>(decision: Decision) -> PluginFuture<'a> {
    Box::pin(std::future::ready(Ok(decision)))
}

/// A plugin in the chain. Implementations are `Send + Sync`: the bridge's runtime is
/// multi-threaded and one plugin instance serves every conversation.
pub trait Plugin: Send + Sync {
    /// A short stable name: configuration key, metrics label, log field.
    fn name(&self) -> &str;

    /// A cheap filter, called before `process`: false skips this message. (A blank message
    /// reaches no plugin: the chain skips it.)
    fn can_handle(&self, turn: &Turn<'_>) -> bool {
        let _ = turn;
        true
    }

    /// Decides about one message. Runs under the chain's deadline for this plugin.
    fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a>;

    /// Reads its files again (the bridge got SIGHUP), keeping what it had if they are bad:
    /// what it reloaded, or `None` when it has nothing to reload.
    fn reload(&self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
}
