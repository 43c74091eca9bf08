//! Token budgets for the LLM connector, so a chatty visitor or a traffic spike cannot run up
//! an unbounded bill: a budget per conversation and one per minute across all of them.
//!
//! A request **reserves** its worst case before it goes out (the estimated prompt plus
//! `max_tokens`) from both budgets, and goes out only if that fits. When the answer is in,
//! the reservation is **settled** with what the request really cost, giving back the rest.
//! A request cut off before it settles (the chain's deadline dropped it) keeps its whole
//! reservation: the server may still be generating, and erring towards spending less is the
//! safe side. The server's count can exceed the estimate of the prompt, so a conversation
//! can go over its budget by that difference, once: its next request no longer fits.
//!
//! The per-minute budget is a token bucket that refills continuously (`tokens_per_minute`
//! per 60 s, never above one minute's worth), so no burst at a minute boundary doubles it.
//! Per-conversation counts live in a bounded [`ConvState`]: a conversation forgotten past
//! its capacity starts again from zero.
//!
//! Sans-IO: time is an argument ([`Instant`]), so the tests need no clock. Threading: one
//! `Budgets` serves every conversation; each check-and-take happens under one short lock.
//!
//! Without a count from the server, tokens are estimated by [`estimate_tokens`].

use super::conv_state::ConvState;
use std::sync::Mutex;
use std::time::Instant;

/// Which budget a request did not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    #[error("budget exhausted: this conversation has used {used} of its {limit} tokens")]
    Conversation { used: u64, limit: u64 },
    #[error(
        "budget exhausted: {available} of {limit} tokens left this minute across all conversations"
    )]
    Minute { available: u64, limit: u64 },
}

/// A token bucket holding at most one minute's worth.
#[derive(Debug)]
struct Bucket {
    limit: u64,
    /// Tokens that can be taken now; negative after requests that cost more than reserved.
    available: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let secs = now.saturating_duration_since(last).as_secs_f64();
            self.available =
                (self.available + secs * self.limit as f64 / 60.0).min(self.limit as f64);
        }
        self.last = Some(now.max(self.last.unwrap_or(now)));
    }
}

/// Both budgets of one LLM plugin.
pub struct Budgets {
    per_conversation: u64,
    /// Tokens used (or reserved) per conversation.
    used: ConvState<u64>,
    /// Guards the global bucket; held only for arithmetic, never across an await.
    minute: Mutex<Bucket>,
}

/// Tokens taken from both budgets for one request; give it back to [`Budgets::settle`].
/// Dropped unsettled, the whole reservation stays spent.
#[derive(Debug)]
#[must_use = "settle the reservation with what the request cost"]
pub struct Reservation {
    conv: String,
    tokens: u64,
}

impl Reservation {
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

impl Budgets {
    /// `conversations`: how many conversations' counts are kept (the oldest forgotten first).
    pub fn new(per_conversation: u64, per_minute: u64, conversations: usize) -> Self {
        Self {
            per_conversation,
            used: ConvState::new(conversations),
            minute: Mutex::new(Bucket {
                limit: per_minute,
                available: per_minute as f64,
                last: None,
            }),
        }
    }

    /// Takes `tokens` from the conversation's and the minute's budget, or neither.
    pub fn reserve(&self, conv: &str, tokens: u64, now: Instant) -> Result<Reservation, Exhausted> {
        let limit = self.per_conversation;
        let taken = self.used.with(conv, |used| {
            if used.saturating_add(tokens) > limit {
                return Err(Exhausted::Conversation { used: *used, limit });
            }
            *used += tokens;
            Ok(())
        });
        // A poisoned lock (a panic elsewhere) fails closed: no request.
        taken.unwrap_or(Err(Exhausted::Conversation { used: limit, limit }))?;
        let minute = match self.minute.lock() {
            Ok(mut bucket) => {
                bucket.refill(now);
                if bucket.available >= tokens as f64 {
                    bucket.available -= tokens as f64;
                    Ok(())
                } else {
                    Err(Exhausted::Minute {
                        available: bucket.available.max(0.0) as u64,
                        limit: bucket.limit,
                    })
                }
            }
            Err(_) => Err(Exhausted::Minute {
                available: 0,
                limit: 0,
            }),
        };
        if let Err(e) = minute {
            self.used
                .with(conv, |used| *used = used.saturating_sub(tokens));
            return Err(e);
        }
        Ok(Reservation {
            conv: conv.to_owned(),
            tokens,
        })
    }

    /// Replaces a reservation with what the request cost: the difference goes back to
    /// (or, when it cost more, is taken from) both budgets.
    pub fn settle(&self, r: Reservation, cost: u64, now: Instant) {
        self.used.with(&r.conv, |used| {
            *used = (*used + cost).saturating_sub(r.tokens)
        });
        if let Ok(mut bucket) = self.minute.lock() {
            bucket.refill(now);
            bucket.available =
                (bucket.available + r.tokens as f64 - cost as f64).min(bucket.limit as f64);
        }
    }

    /// Tokens the conversation has used or reserved.
    pub fn used(&self, conv: &str) -> u64 {
        self.used.with(conv, |used| *used).unwrap_or(0)
    }
}

/// Whether `c` is written in a CJK script, where one character is about one token.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF       // Hangul Jamo
        | 0x2E80..=0x9FFF     // CJK radicals, punctuation, kana, unified ideographs
        | 0xAC00..=0xD7AF     // Hangul syllables
        | 0xF900..=0xFAFF     // CJK compatibility ideographs
        | 0xFF00..=0xFFEF     // full-width forms
        | 0x20000..=0x3FFFF) // CJK extensions
}

/// An estimate of the tokens of `text`, for when the server does not count: one per CJK
/// character, one per four other characters (rounded up). BPE tokenizers of current models
/// give about 4 characters of English per token and 0.7 to 1.5 tokens per Chinese character,
/// so this errs a little high for English and is close for Chinese.
pub fn estimate_tokens(text: &str) -> u64 {
    let (cjk, other) = text.chars().fold((0u64, 0u64), |(cjk, other), c| {
        if is_cjk(c) {
            (cjk + 1, other)
        } else {
            (cjk, other + 1)
        }
    });
    cjk + other.div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn estimates_count_cjk_characters_and_quarter_other_ones() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("怎么退款"), 4);
        assert_eq!(estimate_tokens("退款 refund"), 2 + 2);
        assert_eq!(estimate_tokens("こんにちは"), 5);
        assert_eq!(estimate_tokens("안녕"), 2);
    }

    #[test]
    fn a_conversation_stops_when_its_next_request_does_not_fit() {
        let b = Budgets::new(1_000, 1_000_000, 10);
        let t = Instant::now();
        let r = b.reserve("c", 400, t).unwrap();
        assert_eq!(b.used("c"), 400);
        b.settle(r, 250, t);
        assert_eq!(b.used("c"), 250, "the unused part came back");
        let r = b.reserve("c", 400, t).unwrap();
        b.settle(r, 500, t);
        assert_eq!(b.used("c"), 750, "a request may cost more than reserved");
        assert_eq!(
            b.reserve("c", 400, t).unwrap_err(),
            Exhausted::Conversation {
                used: 750,
                limit: 1_000
            }
        );
        assert_eq!(b.used("c"), 750, "a refused request takes nothing");
        assert!(b.reserve("other", 400, t).is_ok(), "per conversation");
    }

    #[test]
    fn the_minute_budget_is_shared_and_refills_over_time() {
        let b = Budgets::new(10_000, 600, 10);
        let t = Instant::now();
        let r1 = b.reserve("a", 300, t).unwrap();
        let _r2 = b.reserve("b", 300, t).unwrap();
        let err = b.reserve("c", 10, t).unwrap_err();
        assert_eq!(
            err,
            Exhausted::Minute {
                available: 0,
                limit: 600
            }
        );
        assert_eq!(b.used("c"), 0, "the conversation's reservation was undone");
        assert!(err.to_string().starts_with("budget exhausted"));
        b.settle(r1, 100, t);
        assert!(b.reserve("c", 200, t).is_ok(), "settling gave 200 back");
        assert!(b.reserve("c", 10, t).is_err());
        // 600 per minute is 10 per second.
        let later = t + Duration::from_secs(3);
        assert!(b.reserve("d", 30, later).is_ok());
        assert!(b.reserve("d", 1, later).is_err());
        let much_later = t + Duration::from_secs(3_600);
        assert!(
            b.reserve("e", 600, much_later).is_ok(),
            "refilled to the limit"
        );
        assert!(
            b.reserve("e", 1, much_later).is_err(),
            "never above one minute's worth"
        );
    }

    #[test]
    fn a_dropped_reservation_stays_spent() {
        let b = Budgets::new(1_000, 1_000, 10);
        let t = Instant::now();
        drop(b.reserve("c", 700, t).unwrap());
        assert_eq!(b.used("c"), 700);
        assert!(b.reserve("c", 400, t).is_err());
    }
}
