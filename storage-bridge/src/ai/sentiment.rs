//! The sentiment plugin: a lexicon score per message (Chinese and English, with negation and
//! intensifiers) and a per-conversation trend. A conversation whose trend turns negative is
//! raised in the human queue and, after enough negative messages in a row, handed to a
//! human.
//!
//! A lexicon is what runs here without a model download; its accuracy on the small labelled
//! set in `storage-bridge/ai/sentiment-eval.tsv` is measured by this module's tests and
//! reported in `docs/ai.md`. A trained classifier can replace `score` behind the same plugin.

use super::conv_state::ConvState;
use super::plugin::{ready, Decision, Handoff, Plugin, PluginFuture, Turn};

/// Positive and negative words with weights. English entries match whole words
/// (lowercase); Chinese entries match as substrings.
const POSITIVE: &[(&str, f32)] = &[
    ("thank", 1.0),
    ("thanks", 1.0),
    ("great", 1.0),
    ("love", 1.0),
    ("perfect", 1.0),
    ("awesome", 1.0),
    ("excellent", 1.0),
    ("happy", 1.0),
    ("wonderful", 1.0),
    ("helpful", 1.0),
    ("appreciate", 1.0),
    ("kind", 0.5),
    ("solved", 0.5),
    ("good", 0.7),
    ("nice", 0.7),
    ("satisfied", 1.0),
    ("works", 0.3),
    ("谢谢", 1.0),
    ("感谢", 1.0),
    ("太好了", 1.5),
    ("很好", 1.0),
    ("满意", 1.0),
    ("点赞", 1.0),
    ("真棒", 1.0),
    ("开心", 1.0),
    ("辛苦了", 0.7),
    ("解决了", 0.7),
    ("不错", 1.0),
    ("好评", 1.0),
];
const NEGATIVE: &[(&str, f32)] = &[
    ("terrible", 1.5),
    ("worst", 1.5),
    ("angry", 1.5),
    ("unacceptable", 1.5),
    ("useless", 1.5),
    ("ridiculous", 1.5),
    ("hate", 1.5),
    ("broken", 1.0),
    ("crashing", 1.0),
    ("awful", 1.5),
    ("disappointed", 1.5),
    ("scam", 1.5),
    ("bad", 1.0),
    ("horrible", 1.5),
    ("nobody", 0.7),
    ("waiting", 0.5),
    ("refund", 0.3),
    ("太差", 1.5),
    ("垃圾", 1.5),
    ("气死", 1.5),
    ("生气", 1.5),
    ("失望", 1.5),
    ("骗", 1.5),
    ("坏了", 1.0),
    ("没人管", 1.0),
    ("很差", 1.5),
    ("不行", 1.0),
    ("投诉", 1.0),
    ("差评", 1.5),
    ("再也不", 1.0),
    ("还没到", 0.7),
    ("退款", 0.3),
];
const NEGATIONS_EN: &[&str] = &[
    "not", "no", "never", "don't", "didn't", "isn't", "wasn't", "nothing",
];
const NEGATIONS_ZH: &[&str] = &["不", "没", "别"];
const INTENSIFIERS_EN: &[&str] = &["very", "so", "really", "extremely", "too"];
const INTENSIFIERS_ZH: &[&str] = &["非常", "太", "特别", "超级", "真"];

/// A message's sentiment in [-1, 1] (negative below zero).
pub fn score(text: &str) -> f32 {
    let lower = text.to_lowercase();
    let mut sum = 0.0f32;
    // English: word by word, a negation flips the next sentiment word within 3 words.
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let weight = POSITIVE
            .iter()
            .find(|(k, _)| k == w)
            .map(|(_, v)| *v)
            .unwrap_or(0.0)
            - NEGATIVE
                .iter()
                .find(|(k, _)| k == w)
                .map(|(_, v)| *v)
                .unwrap_or(0.0);
        if weight == 0.0 {
            continue;
        }
        let window = &words[i.saturating_sub(3)..i];
        let negated = window.iter().any(|p| NEGATIONS_EN.contains(p));
        let intensified = window.iter().any(|p| INTENSIFIERS_EN.contains(p));
        let w = if intensified { weight * 1.5 } else { weight };
        sum += if negated { -w } else { w };
    }
    // Chinese: substrings; a negation right before the phrase flips it.
    for (list, sign) in [(POSITIVE, 1.0f32), (NEGATIVE, -1.0)] {
        for (phrase, weight) in list.iter().filter(|(k, _)| !k.is_ascii()) {
            for (at, _) in lower.match_indices(phrase) {
                let before = &lower[..at];
                let negated = NEGATIONS_ZH.iter().any(|n| before.ends_with(n));
                let intensified = INTENSIFIERS_ZH.iter().any(|n| before.ends_with(n));
                let w = if intensified { weight * 1.5 } else { *weight };
                sum += if negated { -sign * w } else { sign * w };
            }
        }
    }
    if text.contains('!') || text.contains('！') {
        sum *= 1.2;
    }
    (sum / 2.0).tanh()
}

/// Labels a score: `negative`, `neutral` or `positive`.
pub fn label(score: f32) -> &'static str {
    if score <= -0.3 {
        "negative"
    } else if score >= 0.3 {
        "positive"
    } else {
        "neutral"
    }
}

/// Per-conversation state: the trend (an exponential moving average) and how many negative
/// messages came in a row.
#[derive(Clone, Copy, Debug, Default)]
struct Trend {
    average: f32,
    negative_run: u32,
}

pub struct SentimentPlugin {
    /// Negative messages in a row that hand the conversation to a human (0: never).
    handoff_after: u32,
    /// Priority asked for a conversation whose trend is negative.
    priority: i32,
    /// Per conversation, at most `capacity` of them (the oldest forgotten first).
    trends: ConvState<Trend>,
}

impl Default for SentimentPlugin {
    fn default() -> Self {
        Self::new(100_000, 3, 3)
    }
}

impl SentimentPlugin {
    pub fn new(capacity: usize, handoff_after: u32, priority: i32) -> Self {
        Self {
            handoff_after,
            priority,
            trends: ConvState::new(capacity),
        }
    }

    fn observe(&self, conv: &str, s: f32) -> Trend {
        self.trends
            .with(conv, |t| {
                t.average = 0.5 * t.average + 0.5 * s;
                t.negative_run = if label(s) == "negative" {
                    t.negative_run + 1
                } else {
                    0
                };
                *t
            })
            .unwrap_or_default()
    }

    fn decide(&self, conv: &str, text: &str) -> Decision {
        let s = score(text);
        let trend = self.observe(conv, s);
        let mut d = Decision::default()
            .label("sentiment", label(s))
            .label("sentiment_trend", label(trend.average));
        if label(trend.average) == "negative" {
            d.priority = Some(self.priority);
        }
        if self.handoff_after > 0 && trend.negative_run >= self.handoff_after {
            d.handoff = Some(Handoff {
                reason: format!(
                    "sentiment: {} negative messages in a row",
                    trend.negative_run
                ),
            });
        }
        d
    }
}

impl Plugin for SentimentPlugin {
    fn name(&self) -> &str {
        "sentiment"
    }

    fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a> {
        ready(self.decide(turn.conv, turn.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVAL: &str = include_str!("../../ai/sentiment-eval.tsv");

    #[test]
    fn accuracy_on_the_labelled_set() {
        let (mut right, mut total) = (0, 0);
        let mut wrong = Vec::new();
        for line in EVAL
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (want, text) = line.split_once('\t').expect("label<TAB>text");
            let want = match want {
                "pos" => "positive",
                "neg" => "negative",
                _ => "neutral",
            };
            total += 1;
            if label(score(text)) == want {
                right += 1;
            } else {
                wrong.push(format!("{want}: {text} ({:.2})", score(text)));
            }
        }
        let accuracy = right as f64 / total as f64;
        println!("sentiment accuracy {right}/{total} = {accuracy:.3}; wrong: {wrong:#?}");
        assert!(total >= 48, "the labelled set is all there");
        assert!(accuracy >= 0.85, "accuracy {accuracy:.3}: {wrong:#?}");
    }

    #[test]
    fn negation_and_intensifiers() {
        assert!(score("I am happy") > 0.3);
        assert!(score("I am not happy") < -0.3);
        assert!(score("满意") > 0.3 && score("不满意") < -0.3);
        assert!(score("very bad") < score("bad"));
    }

    #[test]
    fn a_negative_run_raises_priority_then_hands_off() {
        let p = SentimentPlugin::new(10, 3, 7);
        assert_eq!(p.decide("c", "hello").priority, None);
        let first = p.decide("c", "this is terrible");
        assert_eq!(
            first.labels.get("sentiment").map(String::as_str),
            Some("negative")
        );
        assert!(first.handoff.is_none());
        let second = p.decide("c", "你们的服务太垃圾了");
        assert_eq!(second.priority, Some(7), "the trend is negative now");
        assert!(second.handoff.is_none());
        let third = p.decide("c", "I hate this");
        assert!(third
            .handoff
            .is_some_and(|h| h.reason.contains("3 negative")));
        assert!(
            p.decide("other", "I hate this").handoff.is_none(),
            "trends are per conversation"
        );
    }

    #[test]
    fn old_conversations_are_forgotten_at_capacity() {
        let p = SentimentPlugin::new(2, 2, 1);
        p.decide("a", "terrible");
        p.decide("b", "fine");
        p.decide("c", "fine");
        // "a" was forgotten: one more negative message is a run of one, not two.
        assert!(p.decide("a", "terrible").handoff.is_none());
    }
}
