//! The hand-off plugin: sends a conversation to a human when the bot has not been able to
//! help `misses` times in a row. It runs after the answering plugins and reads their labels:
//! a message that no plugin answered (no `kb` label) and that is not small talk (intent
//! `greeting`) is a miss; an answered one resets the count. Hand-offs for an explicit request
//! ("转人工") and for anger come from the intent and sentiment plugins themselves.
//!
//! A message that no plugin answered because a plugin before this one failed (an error, a
//! panic, a missed deadline: the LLM server down, say) hands off at once: a broken bot
//! never keeps a visitor from a human.

use super::conv_state::ConvState;
use super::plugin::{ready, Decision, Handoff, Plugin, PluginFuture, Turn};

pub struct HandoffPlugin {
    misses: u32,
    priority: i32,
    /// Misses in a row per conversation.
    runs: ConvState<u32>,
}

impl HandoffPlugin {
    pub fn new(misses: u32, priority: i32) -> Self {
        Self {
            misses: misses.max(1),
            priority,
            runs: ConvState::new(100_000),
        }
    }

    fn decide(&self, turn: &Turn<'_>) -> Decision {
        let answered = turn.answered || turn.labels.contains_key("kb");
        if !answered && !turn.failed.is_empty() {
            self.runs.with(turn.conv, |run| *run = 0);
            return Decision {
                priority: Some(self.priority),
                handoff: Some(Handoff {
                    reason: format!("the bot is unavailable ({} failed)", turn.failed.join(", ")),
                }),
                ..Decision::default()
            };
        }
        let small_talk = turn.labels.get("intent").is_some_and(|i| i == "greeting");
        let handed_off = self.runs.with(turn.conv, |run| {
            if answered {
                *run = 0;
            } else if !small_talk {
                *run += 1;
            }
            let over = *run >= self.misses;
            if over {
                *run = 0;
            }
            over
        });
        if handed_off == Some(true) {
            return Decision {
                priority: Some(self.priority),
                handoff: Some(Handoff {
                    reason: format!("the bot could not answer {} messages in a row", self.misses),
                }),
                ..Decision::default()
            };
        }
        Decision::default()
    }
}

impl Plugin for HandoffPlugin {
    fn name(&self) -> &str {
        "handoff"
    }

    fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a> {
        ready(self.decide(turn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::plugin::Labels;

    fn turn<'a>(conv: &'a str, labels: &'a Labels) -> Turn<'a> {
        Turn {
            conv,
            visitor: "v",
            text: "…",
            labels,
            answered: false,
            failed: &[],
        }
    }

    #[test]
    fn a_failed_answering_plugin_hands_off_at_once() {
        let p = HandoffPlugin::new(3, 4);
        let none = Labels::new();
        let failed = ["llm".to_owned()];
        let d = p.decide(&Turn {
            failed: &failed,
            ..turn("c", &none)
        });
        assert!(d.handoff.is_some_and(|h| h.reason.contains("llm")));
        let answered = p.decide(&Turn {
            failed: &failed,
            answered: true,
            ..turn("c", &none)
        });
        assert!(answered.handoff.is_none(), "another plugin answered");
    }

    #[test]
    fn hands_off_after_misses_in_a_row_and_answers_reset_the_count() {
        let p = HandoffPlugin::new(2, 4);
        let none = Labels::new();
        let answered: Labels = [("kb".to_owned(), "refund_policy".to_owned())].into();
        let hello: Labels = [("intent".to_owned(), "greeting".to_owned())].into();
        assert!(p.decide(&turn("c", &none)).handoff.is_none());
        assert!(
            p.decide(&turn("c", &answered)).handoff.is_none(),
            "an answer resets"
        );
        assert!(p.decide(&turn("c", &none)).handoff.is_none());
        assert!(
            p.decide(&turn("c", &hello)).handoff.is_none(),
            "small talk is not a miss"
        );
        let d = p.decide(&turn("c", &none));
        assert_eq!(d.priority, Some(4));
        assert!(d.handoff.is_some_and(|h| h.reason.contains("2 messages")));
        assert!(
            p.decide(&turn("other", &none)).handoff.is_none(),
            "per conversation"
        );
    }
}
