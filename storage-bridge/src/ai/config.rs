//! The AI layer's configuration: which plugins run, in which order, with which deadlines,
//! thresholds and files, and when the bot speaks at all ([`Mode`]). Loaded from TOML and
//! checked whole at start, so a typo is an error that names the plugin, not a silent bot.
//!
//! ```toml
//! mode = "bot_first"          # bot_first | when_no_agent | off
//!
//! [[plugin]]
//! name = "intent"             # intent | kb | sentiment | handoff
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
//! [[plugin]]
//! name = "handoff"            # after the answering plugins: reads their labels
//! misses = 2                  # unanswered messages in a row
//! priority = 2
//! ```

use super::chain::Chain;
use super::handoff::HandoffPlugin;
use super::intent::IntentPlugin;
use super::kb::{KbPlugin, KnowledgeBase, DEFAULT_THRESHOLD};
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
    #[error("AI configuration, plugin {plugin:?}: {why}")]
    Plugin { plugin: String, why: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(rename = "plugin", default)]
    pub plugins: Vec<PluginConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    /// Time allowed per message; the plugin is skipped for that message past it.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
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
}

fn default_deadline_ms() -> u64 {
    50
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
        let mut chain = Chain::new();
        if self.mode == Mode::Off {
            return Ok(chain);
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.plugins {
            let fail = |why: String| AiConfigError::Plugin {
                plugin: p.name.clone(),
                why,
            };
            if !seen.insert(p.name.as_str()) {
                return Err(fail("listed twice".into()));
            }
            if !(1..=60_000).contains(&p.deadline_ms) {
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
                    let file = p
                        .file
                        .as_ref()
                        .ok_or_else(|| fail("file is required".into()))?;
                    let threshold = p.threshold.unwrap_or(DEFAULT_THRESHOLD);
                    if !(0.0..=1.0).contains(&threshold) {
                        return Err(fail("threshold must be 0..=1".into()));
                    }
                    let kb =
                        KnowledgeBase::load(&base.join(file)).map_err(|e| fail(e.to_string()))?;
                    Arc::new(KbPlugin::new(kb, threshold))
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
                other => {
                    return Err(fail(format!(
                        "no such plugin (known: intent, kb, sentiment, handoff); got {other:?}"
                    )))
                }
            };
            chain = chain.with(plugin, Duration::from_millis(p.deadline_ms));
        }
        Ok(chain)
    }
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
    fn off_builds_an_empty_chain() {
        let cfg = AiConfig::from_toml("[[plugin]]\nname = \"oracle\"\n").unwrap();
        assert_eq!(cfg.mode, Mode::Off);
        assert!(cfg.chain(Path::new(".")).unwrap().is_empty());
    }
}
