//! The intent plugin: rules per intent (keywords and regular expressions, Chinese and
//! English) from a TOML file; the example set is `storage-bridge/ai/intents.toml`.
//!
//! It labels each visitor message `intent = NAME` and, for intents configured so, asks for a
//! hand-off (the visitor wants a human) or a priority in the human queue. Rules are cheap to
//! run (a few substring searches and regexes per message) and need no model.

use super::plugin::{ready, Decision, Handoff, Plugin, PluginFuture, Turn};
use regex::Regex;
use serde::Deserialize;

/// The example rule set, shipped with the bridge.
pub const EXAMPLE_RULES: &str = include_str!("../../ai/intents.toml");

#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    #[error("intent rules: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("intent rules: intent {intent:?} has a bad regular expression: {error}")]
    Regex { intent: String, error: regex::Error },
    #[error("intent rules: intent {0:?} has no keywords and no patterns")]
    Empty(String),
    #[error("intent rules: intent {intent:?} names team {team:?}: 1-32 of a-z 0-9 _ -")]
    Team { intent: String, team: String },
}

#[derive(Deserialize)]
struct RulesFile {
    #[serde(rename = "intent", default)]
    intents: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    handoff: bool,
    priority: Option<i32>,
    /// The team whose queue takes it when it goes to a human (label `team`).
    team: Option<String>,
}

struct Rule {
    name: String,
    /// ASCII keywords, matched as whole words.
    words: Vec<Regex>,
    /// Other keywords, matched as lowercase substrings.
    substrings: Vec<String>,
    patterns: Vec<Regex>,
    handoff: bool,
    priority: Option<i32>,
    team: Option<String>,
}

impl Rule {
    fn score(&self, text: &str, lower: &str) -> usize {
        self.words.iter().filter(|w| w.is_match(text)).count()
            + self
                .substrings
                .iter()
                .filter(|s| lower.contains(s.as_str()))
                .count()
            + 2 * self.patterns.iter().filter(|p| p.is_match(text)).count()
    }
}

/// What the rules say about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match<'a> {
    pub intent: &'a str,
    pub score: usize,
}

pub struct IntentPlugin {
    rules: Vec<Rule>,
}

impl IntentPlugin {
    pub fn from_toml(text: &str) -> Result<Self, IntentError> {
        let file: RulesFile = toml::from_str(text)?;
        let mut rules = Vec::with_capacity(file.intents.len());
        for spec in file.intents {
            if spec.keywords.is_empty() && spec.patterns.is_empty() {
                return Err(IntentError::Empty(spec.name));
            }
            let bad = |error| IntentError::Regex {
                intent: spec.name.clone(),
                error,
            };
            let mut words = Vec::new();
            let mut substrings = Vec::new();
            for k in &spec.keywords {
                let k = k.trim();
                if k.is_empty() {
                    continue;
                }
                if k.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
                    let pattern = format!(r"(?i)\b{}\b", regex::escape(k).replace(' ', r"\s+"));
                    words.push(Regex::new(&pattern).map_err(bad)?);
                } else {
                    substrings.push(k.to_lowercase());
                }
            }
            let patterns = spec
                .patterns
                .iter()
                .map(|p| Regex::new(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            if let Some(team) = spec
                .team
                .as_deref()
                .filter(|t| !switchboard_protocol::token::is_team(t))
            {
                return Err(IntentError::Team {
                    intent: spec.name.clone(),
                    team: team.to_owned(),
                });
            }
            rules.push(Rule {
                team: spec.team,
                name: spec.name,
                words,
                substrings,
                patterns,
                handoff: spec.handoff,
                priority: spec.priority,
            });
        }
        Ok(Self { rules })
    }

    /// The shipped example rules.
    pub fn example() -> Self {
        Self::from_toml(EXAMPLE_RULES).expect("the example intent rules are valid")
    }

    /// The best-matching intent, if any rule matches.
    pub fn classify(&self, text: &str) -> Option<Match<'_>> {
        let lower = text.to_lowercase();
        let mut best: Option<(&Rule, usize)> = None;
        for rule in &self.rules {
            let score = rule.score(text, &lower);
            if score > 0 && best.is_none_or(|(_, s)| score > s) {
                best = Some((rule, score));
            }
        }
        best.map(|(rule, score)| Match {
            intent: &rule.name,
            score,
        })
    }

    fn decide(&self, text: &str) -> Decision {
        let Some(m) = self.classify(text) else {
            return Decision::default();
        };
        let rule = self
            .rules
            .iter()
            .find(|r| r.name == m.intent)
            .expect("a match names a rule");
        let labelled = Decision::default().label("intent", m.intent);
        let labelled = match &rule.team {
            Some(team) => labelled.label("team", team),
            None => labelled,
        };
        Decision {
            priority: rule.priority,
            handoff: rule.handoff.then(|| Handoff {
                reason: format!("intent: {}", rule.name),
            }),
            ..labelled
        }
    }
}

impl Plugin for IntentPlugin {
    fn name(&self) -> &str {
        "intent"
    }

    fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a> {
        ready(self.decide(turn.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(text: &str) -> Option<String> {
        IntentPlugin::example()
            .classify(text)
            .map(|m| m.intent.to_owned())
    }

    #[test]
    fn the_example_rules_recognise_chinese_and_english() {
        for (text, want) in [
            ("转人工", "ask_human"),
            ("I want to talk to a human please", "ask_human"),
            ("我要投诉你们的服务", "complaint"),
            ("This is the worst service ever", "complaint"),
            ("怎么申请退款", "refund"),
            ("Can I get my money back?", "refund"),
            ("我的快递到哪了", "order_status"),
            ("Where is my order #123456?", "order_status"),
            ("你好，在吗", "greeting"),
            ("Hello there", "greeting"),
        ] {
            assert_eq!(intent(text).as_deref(), Some(want), "{text:?}");
        }
    }

    #[test]
    fn english_keywords_match_whole_words_only() {
        assert_eq!(intent("this thing"), None, "\"hi\" is not in \"this\"");
        assert_eq!(intent("what a nice day"), None);
        assert_eq!(intent("HI!").as_deref(), Some("greeting"));
    }

    #[test]
    fn ask_human_hands_off_with_the_reason_and_complaints_get_priority() {
        let p = IntentPlugin::example();
        let d = p.decide("人工客服");
        assert_eq!(
            d.handoff.map(|h| h.reason),
            Some("intent: ask_human".into())
        );
        assert_eq!(
            d.labels.get("intent").map(String::as_str),
            Some("ask_human")
        );
        let d = p.decide("投诉");
        assert_eq!((d.priority, d.handoff), (Some(2), None));
        assert_eq!(p.decide("random words"), Decision::default());
    }

    #[test]
    fn bad_rules_are_refused_with_the_intent_named() {
        let e = IntentPlugin::from_toml("[[intent]]\nname = \"x\"\npatterns = ['(']\n")
            .err()
            .expect("a bad regex is refused");
        assert!(e.to_string().contains("\"x\""), "{e}");
        let e = IntentPlugin::from_toml("[[intent]]\nname = \"empty\"\n")
            .err()
            .expect("empty");
        assert!(e.to_string().contains("no keywords"), "{e}");
        assert!(
            IntentPlugin::from_toml("[[intent]]\nname = \"y\"\nkeyword = [\"a\"]\n").is_err(),
            "unknown field"
        );
    }

    #[test]
    fn an_intent_may_name_the_team_that_takes_it() {
        let p = IntentPlugin::from_toml(
            r#"
            [[intent]]
            name = "invoice"
            keywords = ["invoice", "发票"]
            handoff = true
            team = "billing"
            "#,
        )
        .unwrap();
        let d = p.decide("I need an invoice");
        assert_eq!(d.labels.get("team").map(String::as_str), Some("billing"));
        assert!(d.handoff.is_some());
        let bad = IntentPlugin::from_toml(
            "[[intent]]\nname = \"x\"\nkeywords = [\"x\"]\nteam = \"Not A Team\"\n",
        );
        assert!(matches!(bad, Err(IntentError::Team { .. })));
    }
}
