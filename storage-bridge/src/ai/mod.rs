//! The AI layer: a chain of plugins that read each visitor message and may answer as the
//! bot, label the conversation, raise its priority in the human queue or hand it to a human.
//!
//! - [`plugin`]: the interface a plugin implements, and what it can decide.
//! - [`chain`]: runs the configured plugins in order, each under a deadline; a plugin that
//!   fails, panics or is slow is skipped for that message and the human path is untouched.
//! - [`config`]: which plugins run, in which order and with which settings (TOML).
//! - [`conv_state`]: bounded per-conversation state for plugins that remember.
//! - [`fault`]: a plugin that fails on purpose (drills and tests).
//! - [`handoff`]: hands a conversation to a human after unanswered messages in a row.
//! - [`intent`]: the rule-based intent plugin (keywords and regular expressions, Chinese and
//!   English), with an example rule set.
//! - [`kb`]: knowledge-base answers (tantivy over jieba-segmented Chinese and stemmed English).
//! - [`llm`]: the LLM connector: answers or drafts from an OpenAI-compatible server,
//!   grounded in the knowledge base, redacted, within token budgets.
//! - [`llm_budget`]: its token budgets per conversation and per minute, sans-IO.
//! - [`llm_config`]: its settings, checked.
//! - [`llm_http`]: its streamed HTTP request and the ways that fails.
//! - [`llm_stream`]: the streamed answers of an OpenAI-compatible server, parsed sans-IO.
//! - [`redact`]: personal data out of text before it leaves the host.
//! - [`sentiment`]: a zh/en lexicon score per message and a per-conversation trend.
//!
//! Everything here is runtime-light: plugins are plain async code the bridge's tokio runtime
//! drives, tested without sockets (the LLM connector's HTTP client against a local server in
//! `tests/llm.rs`).

pub mod chain;
pub mod config;
pub mod conv_state;
pub mod fault;
pub mod handoff;
pub mod intent;
pub mod kb;
pub mod llm;
pub mod llm_budget;
pub mod llm_config;
pub mod llm_http;
pub mod llm_stream;
pub mod plugin;
pub mod redact;
pub mod sentiment;

pub use chain::{Chain, ChainOutcome};
pub use plugin::{Decision, Handoff, Labels, Plugin, PluginFuture, Turn};
