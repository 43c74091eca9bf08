//! The LLM connector: a plugin that asks an OpenAI-compatible chat-completions server
//! (OpenAI, vLLM, Ollama, llama.cpp, ...) to answer a visitor's message, grounded in the
//! knowledge base's closest entries, and returns the answer as the bot's reply (mode
//! `answer`) or as a draft only the agent sees (mode `draft`).
//!
//! It is the costly, slow and fallible member of the chain, so it is fenced in:
//! - it runs only when no plugin before it answered ([`Plugin::can_handle`]);
//! - the visitor's text, and the turns it remembers, are redacted ([`redact`]) before they
//!   leave the host; the knowledge base is read locally with the original text;
//! - token budgets per conversation and per minute ([`llm_budget`](super::llm_budget)) turn
//!   into an error ("budget exhausted") before any request goes out;
//! - every failure (server down, non-2xx, an error in the stream, an answer that stops before
//!   `[DONE]` or at `max_tokens`, a slow server) is an error: the chain skips the plugin and
//!   the hand-off plugin after it sends the conversation to a human at once;
//! - when the model says it cannot answer from the context (the default prompt asks it to
//!   write [`HANDOFF_MARKER`]), the plugin hands off itself rather than send a promise that
//!   nobody keeps.
//!
//! Tokens are counted from the server's `usage` (requested with
//! `stream_options.include_usage`) and estimated ([`estimate_tokens`]) when it sends none.
//!
//! Threading: one plugin serves every conversation; its budgets and memory are bounded maps
//! behind short locks, never held across an await.

use super::conv_state::ConvState;
use super::kb::KbPlugin;
use super::llm_budget::{estimate_tokens, Budgets};
use super::llm_http::{Answer, Client, LlmError};
use super::plugin::{Decision, Handoff, Plugin, PluginFuture, Turn};
use super::redact::redact;
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::llm_http::ApiKey;

/// What the model's answer becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmMode {
    /// The bot's reply to the visitor.
    #[default]
    Answer,
    /// A draft only the conversation's agent sees, to send or edit.
    Draft,
}

/// What the default prompt asks the model to write when the context has no answer.
pub const HANDOFF_MARKER: &str = "[HANDOFF]";

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are the customer-service assistant of an online \
shop. Answer the customer's last message briefly and politely, in the customer's language, \
using only the facts in the knowledge-base context below. Never invent orders, prices, dates \
or policies. If the context does not answer the message, or the customer asks for a person, \
reply with exactly [HANDOFF] and nothing else: a human agent will take over. Placeholders \
such as [phone] or [email] stand for personal data that was removed; do not ask for it.";

pub const DEFAULT_MAX_TOKENS: u32 = 300;
pub const DEFAULT_CONVERSATION_TOKENS: u64 = 4_000;
pub const DEFAULT_TOKENS_PER_MINUTE: u64 = 60_000;
/// The chain's deadline for the plugin unless configured (a model takes seconds).
pub const DEFAULT_DEADLINE_MS: u64 = 8_000;
/// For connecting and the response's headers, unless configured (and only when the deadline
/// is longer: otherwise the deadline alone applies).
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Remembered turns per conversation (visitor and bot), unless configured.
pub const DEFAULT_MEMORY: usize = 6;

/// Knowledge-base entries given as context, and the confidence an entry needs to be one (far
/// below the kb plugin's answer threshold: the model can tell a near miss from an answer).
const KB_CONTEXT_ENTRIES: usize = 3;
const KB_CONTEXT_FLOOR: f32 = 0.1;
/// Characters of the visitor's message, and of each remembered turn, sent at most.
const MESSAGE_CHARS: usize = 2_000;
const REMEMBERED_CHARS: usize = 500;
/// Conversations whose budgets and turns are kept (the oldest forgotten first).
const CONVERSATIONS: usize = 10_000;
/// Tokens a chat message costs beyond its text (role and separators).
const MESSAGE_OVERHEAD_TOKENS: u64 = 4;

/// The plugin's settings, checked by the configuration.
#[derive(Clone, Debug)]
pub struct LlmOptions {
    /// e.g. `https://api.openai.com/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<ApiKey>,
    pub mode: LlmMode,
    /// Per answer.
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub conversation_tokens: u64,
    pub tokens_per_minute: u64,
    pub system_prompt: String,
    /// For connecting and the response's headers; `None`: only the chain's deadline.
    pub timeout: Option<Duration>,
    /// Remembered turns per conversation; 0: none.
    pub memory: usize,
}

impl LlmOptions {
    /// Settings with every default.
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            model: model.to_owned(),
            api_key: None,
            mode: LlmMode::Answer,
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: None,
            conversation_tokens: DEFAULT_CONVERSATION_TOKENS,
            tokens_per_minute: DEFAULT_TOKENS_PER_MINUTE,
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
            timeout: Some(Duration::from_millis(DEFAULT_TIMEOUT_MS)),
            memory: DEFAULT_MEMORY,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Visitor,
    Bot,
}

/// One request, ready to send, with what it is estimated to cost.
#[derive(Debug)]
pub struct Prompt {
    pub body: serde_json::Value,
    pub estimated_tokens: u64,
    /// The visitor's message as sent (redacted, bounded), to remember.
    redacted: String,
}

pub struct LlmPlugin {
    options: LlmOptions,
    client: Client,
    budgets: Budgets,
    /// Recent redacted turns per conversation, oldest first.
    memory: ConvState<VecDeque<(Role, String)>>,
    /// The knowledge base's plugin, for context (it may reload its entries).
    kb: Option<Arc<KbPlugin>>,
}

impl LlmPlugin {
    pub fn new(options: LlmOptions, kb: Option<Arc<KbPlugin>>) -> Result<Self, LlmError> {
        let client = Client::new(&options.base_url, options.api_key.clone(), options.timeout)?;
        Ok(Self {
            budgets: Budgets::new(
                options.conversation_tokens,
                options.tokens_per_minute,
                CONVERSATIONS,
            ),
            memory: ConvState::new(CONVERSATIONS),
            client,
            options,
            kb,
        })
    }

    /// The request for a message: system prompt and knowledge-base context, remembered
    /// turns, then the message, all personal data redacted.
    pub fn prompt(&self, turn: &Turn<'_>) -> Prompt {
        let mut system = self.options.system_prompt.clone();
        if let Some(kb) = self.kb.as_ref().and_then(|kb| kb.knowledge_base()) {
            system.push_str("\n\nKnowledge-base context:\n");
            let hits: Vec<_> = kb
                .top(turn.text, KB_CONTEXT_ENTRIES)
                .into_iter()
                .filter(|h| h.confidence >= KB_CONTEXT_FLOOR)
                .collect();
            if hits.is_empty() {
                system.push_str("(no entry matches this message)\n");
            }
            for hit in hits {
                let question = hit.entry.questions.first().map_or("", String::as_str);
                system.push_str(&format!("- Q: {question}\n  A: {}\n", hit.entry.answer));
            }
        }
        let redacted = bounded(&redact(turn.text), MESSAGE_CHARS);
        let mut messages = vec![json!({"role": "system", "content": system})];
        let remembered = self
            .memory
            .with(turn.conv, |turns| turns.clone())
            .unwrap_or_default();
        for (role, text) in &remembered {
            let role = match role {
                Role::Visitor => "user",
                Role::Bot => "assistant",
            };
            messages.push(json!({"role": role, "content": text}));
        }
        messages.push(json!({"role": "user", "content": redacted}));
        let estimated_tokens = messages
            .iter()
            .map(|m| MESSAGE_OVERHEAD_TOKENS + estimate_tokens(m["content"].as_str().unwrap_or("")))
            .sum();
        let mut body = json!({
            "model": self.options.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": self.options.max_tokens,
        });
        if let Some(t) = self.options.temperature {
            body["temperature"] = json!(t);
        }
        Prompt {
            body,
            estimated_tokens,
            redacted,
        }
    }

    async fn answer(&self, turn: &Turn<'_>) -> Result<Decision, LlmError> {
        let prompt = self.prompt(turn);
        let worst = prompt.estimated_tokens + u64::from(self.options.max_tokens);
        let reservation = self.budgets.reserve(turn.conv, worst, Instant::now())?;
        let result = self.client.complete(&prompt.body).await;
        // What the request cost: the server's count, else an estimate; nothing when the
        // server was not reached or refused the request.
        let (prompt_tokens, completion_tokens) = match &result {
            Ok(Answer {
                usage: Some(usage), ..
            }) => *usage,
            Ok(answer) => (prompt.estimated_tokens, estimate_tokens(&answer.text)),
            Err(LlmError::Connect(_) | LlmError::Http { .. } | LlmError::Client(_)) => (0, 0),
            Err(_) => (prompt.estimated_tokens, 0),
        };
        self.budgets.settle(
            reservation,
            prompt_tokens + completion_tokens,
            Instant::now(),
        );
        metrics::counter!("bridge_ai_llm_tokens_total", "kind" => "prompt")
            .increment(prompt_tokens);
        metrics::counter!("bridge_ai_llm_tokens_total", "kind" => "completion")
            .increment(completion_tokens);
        let decision = self.decide(result?)?;
        tracing::debug!(
            conv = turn.conv,
            prompt_tokens,
            completion_tokens,
            "LLM answered"
        );
        let reply = decision
            .reply
            .as_deref()
            .filter(|_| decision.handoff.is_none());
        self.remember(turn.conv, prompt.redacted, reply);
        Ok(decision)
    }

    /// What an answer becomes in this plugin's mode; an unusable answer is an error.
    fn decide(&self, answer: Answer) -> Result<Decision, LlmError> {
        let draft = self.options.mode == LlmMode::Draft;
        let text = answer.text.trim();
        let cut = answer.finish.as_deref() == Some("length");
        if text.is_empty() {
            return Err(LlmError::Empty);
        }
        // A reply cut short must not reach a visitor; an agent can finish a draft.
        if !draft && !answer.done {
            return Err(LlmError::Incomplete(answer.text.chars().count()));
        }
        if !draft && cut {
            return Err(LlmError::Truncated);
        }
        if text.to_uppercase().contains(HANDOFF_MARKER) {
            return Ok(if draft {
                Decision::default().label("llm", "no_answer")
            } else {
                Decision {
                    handoff: Some(Handoff {
                        reason: "the LLM found no answer in the knowledge base".into(),
                    }),
                    ..Decision::default().label("llm", "no_answer")
                }
            });
        }
        Ok(if draft {
            let label = if answer.done && !cut {
                "draft"
            } else {
                "partial_draft"
            };
            Decision {
                draft: Some(text.to_owned()),
                ..Decision::default().label("llm", label)
            }
        } else {
            Decision {
                reply: Some(text.to_owned()),
                ..Decision::default().label("llm", "answer")
            }
        })
    }

    /// Keeps the visitor's redacted message and the bot's reply (not a draft: the agent may
    /// have sent something else), at most `memory` turns.
    fn remember(&self, conv: &str, visitor: String, bot: Option<&str>) {
        let keep = self.options.memory;
        if keep == 0 {
            return;
        }
        self.memory.with(conv, |turns| {
            turns.push_back((Role::Visitor, bounded(&visitor, REMEMBERED_CHARS)));
            if let Some(bot) = bot {
                turns.push_back((Role::Bot, bounded(&redact(bot), REMEMBERED_CHARS)));
            }
            while turns.len() > keep {
                turns.pop_front();
            }
        });
    }
}

/// At most `n` characters of `text`.
fn bounded(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

impl Plugin for LlmPlugin {
    fn name(&self) -> &str {
        "llm"
    }

    /// Not when an earlier plugin (the knowledge base, say) already answered.
    fn can_handle(&self, turn: &Turn<'_>) -> bool {
        !turn.answered
    }

    fn process<'a>(&'a self, turn: &'a Turn<'a>) -> PluginFuture<'a> {
        Box::pin(async move {
            let result = self.answer(turn).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            };
            metrics::counter!("bridge_ai_llm_requests_total", "outcome" => outcome).increment(1);
            result.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::kb::{KnowledgeBase, DEFAULT_THRESHOLD};
    use crate::ai::plugin::Labels;

    const KEY: &str = "sk-unit-secret-42";

    fn plugin(options: LlmOptions, kb: bool) -> LlmPlugin {
        let kb = kb.then(|| Arc::new(KbPlugin::new(KnowledgeBase::example(), DEFAULT_THRESHOLD)));
        LlmPlugin::new(options, kb).unwrap()
    }

    fn options() -> LlmOptions {
        LlmOptions {
            api_key: ApiKey::new(KEY),
            ..LlmOptions::new("http://127.0.0.1:9/v1", "test-model")
        }
    }

    fn turn<'a>(conv: &'a str, text: &'a str, labels: &'a Labels) -> Turn<'a> {
        Turn {
            conv,
            visitor: "v",
            text,
            labels,
            answered: false,
            failed: &[],
        }
    }

    fn contents(body: &serde_json::Value) -> Vec<(String, String)> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_request_is_redacted_streamed_and_grounded_in_the_knowledge_base() {
        let p = plugin(
            LlmOptions {
                temperature: Some(0.2),
                ..options()
            },
            true,
        );
        let none = Labels::new();
        let text = "my item arrived damaged, call 13800138000 or mail li.wei@example.com";
        let prompt = p.prompt(&turn("c", text, &none));
        let body = &prompt.body;
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
        let msgs = contents(body);
        assert_eq!(msgs.len(), 2);
        let (role, system) = &msgs[0];
        assert_eq!(role, "system");
        assert!(system.starts_with(DEFAULT_SYSTEM_PROMPT));
        let damaged = KnowledgeBase::example()
            .top("damaged", 1)
            .first()
            .map(|h| h.entry.answer.clone())
            .unwrap();
        assert!(
            system.contains(&damaged),
            "the damaged-item answer is context: {system}"
        );
        let (role, user) = &msgs[1];
        assert_eq!(role, "user");
        assert_eq!(
            user,
            "my item arrived damaged, call [phone] or mail [email]"
        );
        let wire = body.to_string();
        assert!(!wire.contains("13800138000") && !wire.contains("li.wei@"));
        assert!(
            prompt.estimated_tokens > estimate_tokens(system),
            "the estimate covers every message"
        );
    }

    #[test]
    fn without_a_knowledge_base_or_temperature_the_request_has_neither() {
        let p = plugin(options(), false);
        let none = Labels::new();
        let body = p.prompt(&turn("c", "hello", &none)).body;
        assert!(body.get("temperature").is_none());
        assert_eq!(contents(&body)[0].1, DEFAULT_SYSTEM_PROMPT);
    }

    #[test]
    fn remembered_turns_are_redacted_bounded_and_per_conversation() {
        let p = plugin(
            LlmOptions {
                memory: 3,
                ..options()
            },
            false,
        );
        p.remember(
            "c",
            redact("I am at 13800138000"),
            Some("Noted, a@b.example.org"),
        );
        p.remember("c", "second".into(), Some("reply two"));
        let none = Labels::new();
        let msgs = contents(&p.prompt(&turn("c", "third", &none)).body);
        let roles: Vec<&str> = msgs.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(roles, ["system", "assistant", "user", "assistant", "user"]);
        assert_eq!(msgs[1].1, "Noted, [email]");
        assert_eq!(msgs[4].1, "third");
        assert!(!msgs.iter().any(|(_, t)| t.contains("13800138000")));
        assert_eq!(contents(&p.prompt(&turn("d", "x", &none)).body).len(), 2);
        let off = plugin(
            LlmOptions {
                memory: 0,
                ..options()
            },
            false,
        );
        off.remember("c", "x".into(), Some("y"));
        assert_eq!(contents(&off.prompt(&turn("c", "z", &none)).body).len(), 2);
    }

    fn answer(text: &str, done: bool, finish: Option<&str>) -> Answer {
        Answer {
            text: text.into(),
            done,
            finish: finish.map(str::to_owned),
            usage: None,
        }
    }

    #[test]
    fn answers_become_replies_or_drafts_and_unusable_ones_errors() {
        let a = plugin(options(), false);
        let d = plugin(
            LlmOptions {
                mode: LlmMode::Draft,
                ..options()
            },
            false,
        );
        let ok = answer(" Orders ship in 24 h. ", true, Some("stop"));
        assert_eq!(
            a.decide(ok.clone()).unwrap().reply.as_deref(),
            Some("Orders ship in 24 h.")
        );
        let drafted = d.decide(ok).unwrap();
        assert_eq!(drafted.draft.as_deref(), Some("Orders ship in 24 h."));
        assert_eq!(drafted.reply, None);
        let partial = answer("Orders ship", false, None);
        assert!(matches!(
            a.decide(partial.clone()),
            Err(LlmError::Incomplete(11))
        ));
        let kept = d.decide(partial).unwrap();
        assert_eq!(kept.draft.as_deref(), Some("Orders ship"));
        assert_eq!(kept.labels["llm"], "partial_draft");
        assert!(matches!(
            a.decide(answer("Orders", true, Some("length"))),
            Err(LlmError::Truncated)
        ));
        assert!(matches!(
            a.decide(answer("  ", true, None)),
            Err(LlmError::Empty)
        ));
        let handoff = a.decide(answer("[handoff]", true, Some("stop"))).unwrap();
        assert!(handoff.handoff.is_some() && handoff.reply.is_none());
        let quiet = d.decide(answer("[HANDOFF]", true, Some("stop"))).unwrap();
        assert!(quiet.handoff.is_none() && quiet.draft.is_none());
    }

    #[test]
    fn skips_answered_messages() {
        let p = plugin(options(), false);
        let none = Labels::new();
        assert!(p.can_handle(&turn("c", "hi", &none)));
        assert!(!p.can_handle(&Turn {
            answered: true,
            ..turn("c", "hi", &none)
        }));
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let debug = format!("{:?} {:?}", options(), plugin(options(), false).client);
        assert!(!debug.contains(KEY) && !debug.contains("secret"), "{debug}");
    }

    #[tokio::test]
    async fn an_exhausted_budget_is_an_error_before_any_request() {
        // Nothing listens on the discard port of a test host, and nothing is sent anyway.
        let p = plugin(
            LlmOptions {
                conversation_tokens: 300,
                max_tokens: 300,
                ..options()
            },
            false,
        );
        let none = Labels::new();
        let t = turn("c", "hello", &none);
        let err = p.process(&t).await.unwrap_err().to_string();
        assert!(err.starts_with("budget exhausted"), "{err}");
        assert_eq!(p.budgets.used("c"), 0);
    }
}
