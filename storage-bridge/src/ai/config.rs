//! The AI layer's configuration: which plugins run, in which order, with which deadlines,
//! thresholds and files, and when the bot speaks at all ([`Mode`]). Loaded from TOML and
//! checked whole at start, so a typo is an error that names the plugin, not a silent bot.
//!
//! ```toml
//! mode = "bot_first"          # bot_first | when_no_agent | off
//!
//! [[plugin]]
//! name = "intent"             # intent | kb | sentiment | llm | handoff
//! deadline_ms = 20
//! rules = "intents.toml"      # default: the shipped example rules
//!
//! [[plugin]]
//! name = "kb"
//! file = "faq.toml"           # required
//! threshold = 0.35
//!
//! [[plugin]]
//! name = "sentiment"
//! handoff_after = 3           # negative messages in a row; 0: never
//! priority = 3
//!
//! # The LLM connector needs a server, so the example leaves it out; after the kb:
//! # [[plugin]]
//! # name = "llm"
//! # base_url = "https://api.openai.com/v1"   # required; POST {base_url}/chat/completions
//! # model = "gpt-4o-mini"                    # required
//! # api_key_env = "OPENAI_API_KEY"           # or api_key_file = "llm.key"; or no key
//! # mode = "answer"                          # answer: the bot's reply | draft: for the agent
//! # deadline_ms = 8000                       # default 8000 for llm, 50 for the others
//! # timeout_ms = 5000                        # connect + response headers; < deadline_ms
//! # max_tokens = 300                         # per answer
//! # conversation_tokens = 4000               # budget per conversation
//! # tokens_per_minute = 60000                # budget across all conversations
//! # temperature = 0.2                        # default: the server's
//! # kb_context = true                        # the kb's closest entries as context
//! # memory = 6                               # remembered turns per conversation; 0: none
//! # system_prompt = "..."                    # default: llm::DEFAULT_SYSTEM_PROMPT
//!
//! [[plugin]]
//! name = "handoff"            # after the answering plugins: reads their labels
//! misses = 2                  # unanswered messages in a row
//! priority = 2
//! ```

use super::chain::Chain;
use super::fault::{Fault, FaultPlugin};
use super::handoff::HandoffPlugin;
use super::intent::IntentPlugin;
use super::kb::{KbPlugin, DEFAULT_THRESHOLD};
use super::llm::{self, LlmMode, LlmPlugin};
use super::llm_config::llm_options;
use super::plugin::Plugin;
use super::sentiment::SentimentPlugin;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// When the bot answers visitors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The bot answers before any human.
    BotFirst,
    /// The bot answers only while no agent is online.
    WhenNoAgent,
    /// No plugin runs; every conversation goes to humans as without this layer.
    #[default]
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum AiConfigError {
    #[error("AI configuration {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("AI configuration: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("AI configuration: nice must be 0..=19, got {0}")]
    Nice(i32),
    #[error("AI configuration, plugin {plugin:?}: {why}")]
    Plugin { plugin: String, why: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiConfig {
    #[serde(default)]
    pub mode: Mode,
    /// The nice value of the thread plugins run on (0..=19): the message path goes first
    /// when the host is short of CPU, and the AI layer falls behind (and skips messages,
    /// counted) rather than slowing it.
    #[serde(default = "default_nice")]
    pub nice: i32,
    #[serde(rename = "plugin", default)]
    pub plugins: Vec<PluginConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    /// Time allowed per message; the plugin is skipped for that message past it. Default:
    /// 8000 ms for llm, 50 ms for the others.
    pub deadline_ms: Option<u64>,
    /// intent: the rules file.
    pub rules: Option<PathBuf>,
    /// kb: the knowledge base.
    pub file: Option<PathBuf>,
    /// kb: the confidence at or above which the bot answers.
    pub threshold: Option<f32>,
    /// sentiment: negative messages in a row that hand off (0: never).
    pub handoff_after: Option<u32>,
    /// sentiment: the priority of a conversation whose trend is negative; handoff: of a
    /// conversation it hands over.
    pub priority: Option<i32>,
    /// handoff: unanswered messages in a row that hand the conversation to a human.
    pub misses: Option<u32>,
    /// llm: the server's API root, e.g. `https://api.openai.com/v1`.
    pub base_url: Option<String>,
    /// llm: the model's name on that server.
    pub model: Option<String>,
    /// llm: the environment variable that holds the API key.
    pub api_key_env: Option<String>,
    /// llm: the file that holds the API key (relative to the configuration's directory).
    pub api_key_file: Option<PathBuf>,
    /// llm: whether the answer is the bot's reply or a draft for the agent.
    pub mode: Option<LlmMode>,
    /// llm: connecting and the response's headers, in ms.
    pub timeout_ms: Option<u64>,
    /// llm: tokens per answer.
    pub max_tokens: Option<u32>,
    /// llm: the token budget of one conversation.
    pub conversation_tokens: Option<u64>,
    /// llm: the token budget per minute across all conversations.
    pub tokens_per_minute: Option<u64>,
    pub temperature: Option<f32>,
    pub system_prompt: Option<String>,
    /// llm: the knowledge base's closest entries as context (default true; needs a kb).
    pub kb_context: Option<bool>,
    /// llm: turns remembered per conversation.
    pub memory: Option<usize>,
    /// fault (drills and tests only): how the plugin fails on every message.
    pub fault: Option<Fault>,
}

fn default_nice() -> i32 {
    19
}

/// The deadline of a plugin whose configuration gives none.
fn default_deadline_ms(plugin: &str) -> u64 {
    match plugin {
        "llm" => llm::DEFAULT_DEADLINE_MS,
        _ => 50,
    }
}

impl AiConfig {
    pub fn from_toml(text: &str) -> Result<Self, AiConfigError> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> Result<Self, AiConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| AiConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_toml(&text)
    }

    /// Builds the chain; relative files are resolved against `base` (the configuration's
    /// directory). With mode `off` the chain is empty.
    pub fn chain(&self, base: &Path) -> Result<Chain, AiConfigError> {
        if !(0..=19).contains(&self.nice) {
            return Err(AiConfigError::Nice(self.nice));
        }
        let mut chain = Chain::new();
        if self.mode == Mode::Off {
            return Ok(chain);
        }
        let mut seen = std::collections::HashSet::new();
        // Built on first need: by its own entry, or by the llm plugin for context (which
        // may come first in the chain).
        let mut kb: Option<Arc<KbPlugin>> = None;
        for p in &self.plugins {
            let fail = |why: String| AiConfigError::Plugin {
                plugin: p.name.clone(),
                why,
            };
            if !seen.insert(p.name.as_str()) {
                return Err(fail("listed twice".into()));
            }
            let deadline_ms = p
                .deadline_ms
                .unwrap_or_else(|| default_deadline_ms(&p.name));
            if !(1..=60_000).contains(&deadline_ms) {
                return Err(fail("deadline_ms must be 1..=60000".into()));
            }
            let only = |allowed: &[&str]| -> Result<(), AiConfigError> {
                let given = [
                    ("rules", p.rules.is_some()),
                    ("file", p.file.is_some()),
                    ("threshold", p.threshold.is_some()),
                    ("handoff_after", p.handoff_after.is_some()),
                    ("priority", p.priority.is_some()),
                    ("misses", p.misses.is_some()),
                    ("base_url", p.base_url.is_some()),
                    ("model", p.model.is_some()),
                    ("api_key_env", p.api_key_env.is_some()),
                    ("api_key_file", p.api_key_file.is_some()),
                    ("mode", p.mode.is_some()),
                    ("timeout_ms", p.timeout_ms.is_some()),
                    ("max_tokens", p.max_tokens.is_some()),
                    ("conversation_tokens", p.conversation_tokens.is_some()),
                    ("tokens_per_minute", p.tokens_per_minute.is_some()),
                    ("temperature", p.temperature.is_some()),
                    ("system_prompt", p.system_prompt.is_some()),
                    ("kb_context", p.kb_context.is_some()),
                    ("memory", p.memory.is_some()),
                    ("fault", p.fault.is_some()),
                ];
                match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
                    Some((k, _)) => Err(fail(format!("{k} does not apply to this plugin"))),
                    None => Ok(()),
                }
            };
            let plugin: Arc<dyn Plugin> = match p.name.as_str() {
                "intent" => {
                    only(&["rules"])?;
                    let plugin = match &p.rules {
                        Some(f) => {
                            let text = std::fs::read_to_string(base.join(f))
                                .map_err(|e| fail(format!("{}: {e}", f.display())))?;
                            IntentPlugin::from_toml(&text).map_err(|e| fail(e.to_string()))?
                        }
                        None => IntentPlugin::example(),
                    };
                    Arc::new(plugin)
                }
                "kb" => {
                    only(&["file", "threshold"])?;
                    match &kb {
                        Some(built) => built.clone(),
                        None => kb.insert(Arc::new(kb_plugin(p, base)?)).clone(),
                    }
                }
                "llm" => {
                    only(&[
                        "base_url",
                        "model",
                        "api_key_env",
                        "api_key_file",
                        "mode",
                        "timeout_ms",
                        "max_tokens",
                        "conversation_tokens",
                        "tokens_per_minute",
                        "temperature",
                        "system_prompt",
                        "kb_context",
                        "memory",
                    ])?;
                    let kb_config = self.plugins.iter().find(|k| k.name == "kb");
                    let context = match (p.kb_context, kb_config) {
                        (Some(false), _) => None,
                        (Some(true), None) => {
                            return Err(fail("kb_context needs a kb plugin".into()))
                        }
                        (_, None) => None,
                        (_, Some(k)) => Some(match &kb {
                            Some(built) => built.clone(),
                            None => kb.insert(Arc::new(kb_plugin(k, base)?)).clone(),
                        }),
                    };
                    let options = llm_options(p, base, deadline_ms).map_err(fail)?;
                    Arc::new(LlmPlugin::new(options, context).map_err(|e| fail(e.to_string()))?)
                }
                "sentiment" => {
                    only(&["handoff_after", "priority"])?;
                    Arc::new(SentimentPlugin::new(
                        100_000,
                        p.handoff_after.unwrap_or(3),
                        p.priority.unwrap_or(3),
                    ))
                }
                "handoff" => {
                    only(&["misses", "priority"])?;
                    let misses = p.misses.unwrap_or(2);
                    if misses == 0 {
                        return Err(fail("misses must be at least 1".into()));
                    }
                    Arc::new(HandoffPlugin::new(misses, p.priority.unwrap_or(2)))
                }
                "fault" => {
                    only(&["fault"])?;
                    let fault = p.fault.ok_or_else(|| fail("fault is required".into()))?;
                    tracing::warn!(?fault, "the fault plugin is configured: it fails on every message (drills and tests only)");
                    Arc::new(FaultPlugin(fault))
                }
                other => {
                    return Err(fail(format!(
                        "no such plugin (known: intent, kb, sentiment, llm, handoff, fault); got {other:?}"
                    )))
                }
            };
            chain = chain.with(plugin, Duration::from_millis(deadline_ms));
        }
        Ok(chain)
    }
}

fn kb_plugin(p: &PluginConfig, base: &Path) -> Result<KbPlugin, AiConfigError> {
    let fail = |why: String| AiConfigError::Plugin {
        plugin: p.name.clone(),
        why,
    };
    let file = p
        .file
        .as_ref()
        .ok_or_else(|| fail("file is required".into()))?;
    let threshold = p.threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(fail("threshold must be 0..=1".into()));
    }
    KbPlugin::from_file(&base.join(file), threshold).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ai")
    }

    #[tokio::test]
    async fn the_example_chain_answers_labels_and_hands_off() {
        let cfg = AiConfig::from_toml(
            r#"
            mode = "bot_first"
            [[plugin]]
            name = "intent"
            rules = "intents.toml"
            [[plugin]]
            name = "sentiment"
            [[plugin]]
            name = "kb"
            file = "faq.toml"
            "#,
        )
        .unwrap();
        let chain = cfg.chain(&examples_dir()).unwrap();
        let out = chain.run("c1", "v1", "怎么退款").await;
        assert_eq!(out.labels.get("intent").map(String::as_str), Some("refund"));
        assert_eq!(out.reply.as_ref().map(|(p, _)| p.as_str()), Some("kb"));
        let out = chain.run("c2", "v2", "转人工").await;
        assert_eq!(
            out.handoff.map(|(p, h)| (p, h.reason)),
            Some(("intent".into(), "intent: ask_human".into()))
        );
        assert!(
            out.reply.is_none(),
            "the hand-off ended the chain before the knowledge base"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let dir = examples_dir();
        let err = |text: &str| {
            AiConfig::from_toml(text)
                .and_then(|c| c.chain(&dir).map(|_| ()))
                .unwrap_err()
                .to_string()
        };
        let on = "mode = \"bot_first\"\n";
        assert!(err(&format!("{on}[[plugin]]\nname = \"kb\"\n")).contains("file is required"));
        assert!(err(&format!(
            "{on}[[plugin]]\nname = \"kb\"\nfile = \"missing.toml\"\n"
        ))
        .contains("\"kb\""));
        assert!(err(&format!(
            "{on}[[plugin]]\nname = \"sentiment\"\nthreshold = 0.5\n"
        ))
        .contains("threshold does not apply"));
        assert!(err(&format!("{on}[[plugin]]\nname = \"oracle\"\n")).contains("no such plugin"));
        assert!(err(&format!(
            "{on}[[plugin]]\nname = \"intent\"\n[[plugin]]\nname = \"intent\"\n"
        ))
        .contains("listed twice"));
        assert!(err(&format!(
            "{on}[[plugin]]\nname = \"intent\"\ndeadline_ms = 0\n"
        ))
        .contains("deadline_ms"));
        assert!(
            err("mode = \"sometimes\"\n").contains("mode"),
            "{}",
            err("mode = \"sometimes\"\n")
        );
    }

    #[test]
    fn the_llm_gets_a_longer_default_deadline_than_the_rest() {
        assert_eq!(default_deadline_ms("llm"), 8_000);
        assert_eq!(default_deadline_ms("kb"), 50);
        let cfg = AiConfig::from_toml("[[plugin]]\nname = \"kb\"\ndeadline_ms = 20\n").unwrap();
        assert_eq!(cfg.plugins[0].deadline_ms, Some(20));
    }

    #[test]
    fn off_builds_an_empty_chain() {
        let cfg = AiConfig::from_toml("[[plugin]]\nname = \"oracle\"\n").unwrap();
        assert_eq!(cfg.mode, Mode::Off);
        assert!(cfg.chain(Path::new(".")).unwrap().is_empty());
    }
}
