//! The AI layer: a chain of plugins that read each visitor message and may answer as the
//! bot, label the conversation, raise its priority in the human queue or hand it to a human.
//!
//! - [`plugin`]: the interface a plugin implements, and what it can decide.
//! - [`chain`]: runs the configured plugins in order, each under a deadline; a plugin that
//!   fails, panics or is slow is skipped for that message and the human path is untouched.
//! - [`config`]: which plugins run, in which order and with which settings (TOML).
//! - [`conv_state`]: bounded per-conversation state for plugins that remember.
//! - [`handoff`]: hands a conversation to a human after unanswered messages in a row.
//! - [`intent`]: the rule-based intent plugin (keywords and regular expressions, Chinese and
//!   English), with an example rule set.
//! - [`kb`]: knowledge-base answers (tantivy over jieba-segmented Chinese and stemmed English).
//! - [`llm_stream`]: the streamed answers of an OpenAI-compatible server, parsed sans-IO.
//! - [`redact`]: personal data out of text before it leaves the host.
//! - [`sentiment`]: a zh/en lexicon score per message and a per-conversation trend.
//!
//! Everything here is runtime-light: plugins are plain async code the bridge's tokio runtime
//! drives, tested without sockets.

pub mod chain;
pub mod config;
pub mod conv_state;
pub mod handoff;
pub mod intent;
pub mod kb;
pub mod llm_stream;
pub mod plugin;
pub mod redact;
pub mod sentiment;

pub use chain::{Chain, ChainOutcome};
pub use plugin::{Decision, Handoff, Labels, Plugin, PluginFuture, Turn};
