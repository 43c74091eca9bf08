//! The LLM connector against a local server that keeps the contract of the OpenAI-compatible
//! chat-completions API (`POST /v1/chat/completions`, `stream: true`, server-sent events),
//! in each way such a server answers or fails: a streamed answer split awkwardly across
//! chunks, 500, 429, an error inside the stream, a stream that stops before `[DONE]`, a
//! server too slow for the deadline, and no server at all.
//!
//! The chain under test is built from TOML as a deployment would build it (kb, llm, handoff),
//! so each case checks what a visitor would get: the LLM's reply (or an agent's draft), or,
//! when the LLM fails, no bot text and a hand-off to a human.

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage_bridge::ai::chain::Skip;
use storage_bridge::ai::config::AiConfig;
use storage_bridge::ai::llm::{ApiKey, LlmOptions, LlmPlugin};
use storage_bridge::ai::{Chain, ChainOutcome, Labels, Plugin, Turn};

const KEY: &str = "sk-contract-test-key-5150";
const MODEL: &str = "contract-model";
const ANSWER: &str = "Sorry about the damage! We replace damaged items within 7 days.";
/// What the server reports the normal answer cost.
const USAGE: (u64, u64) = (80, 20);

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: Option<String>,
    body: Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

struct Server {
    base: String,
    seen: Log,
}

impl Server {
    async fn start() -> Self {
        let seen = Log::default();
        let app = Router::new()
            .route("/{scenario}/v1/chat/completions", post(completions))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, seen }
    }

    fn url(&self, scenario: &str) -> String {
        format!("{}/{scenario}/v1", self.base)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A base URL where nothing listens.
fn down() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/v1")
}

fn delta(text: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "model": MODEL,
               "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    )
}

fn finish() -> String {
    format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    )
}

fn usage() -> String {
    format!(
        "data: {}\n\n",
        json!({"choices": [], "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1,
               "total_tokens": USAGE.0 + USAGE.1}})
    )
}

/// An event stream cut into chunks at awkward places, sent a few milliseconds apart.
fn sse(text: String, cuts: &[usize]) -> Response {
    let mut chunks = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().filter(|&&c| c < text.len()) {
        chunks.push(text[last..cut].to_owned());
        last = cut;
    }
    chunks.push(text[last..].to_owned());
    let stream = futures_util::stream::unfold(chunks.into_iter(), |mut rest| async move {
        let chunk = rest.next()?;
        tokio::time::sleep(Duration::from_millis(3)).await;
        Some((Ok::<_, std::convert::Infallible>(chunk), rest))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The normal answer: a keep-alive comment, a role chunk, the text in two deltas with events
/// split across chunks, the finish reason, the usage, then `[DONE]`.
fn normal(text: &str) -> Response {
    let (a, b) = text.split_at(text.len() / 2);
    let role = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    );
    let body = format!(
        ": keep-alive\n\n{role}{}{}{}{}data: [DONE]\n\n",
        delta(a),
        delta(b),
        finish(),
        usage()
    );
    let first = body.find("data: {").unwrap();
    let cuts = [5, first + 3, first + 40, body.len() / 2, body.len() - 8];
    sse(body, &cuts)
}

async fn completions(
    UrlPath(scenario): UrlPath<String>,
    State(seen): State<Log>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.lock().unwrap().push(Seen {
        path: format!("/{scenario}/v1/chat/completions"),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let error = |status: StatusCode, message: String| {
        (
            status,
            [("content-type", "application/json")],
            json!({"error": {"message": message, "type": "server_error"}}).to_string(),
        )
            .into_response()
    };
    match scenario.as_str() {
        "ok" => normal(ANSWER),
        "handoff" => normal("[HANDOFF]"),
        "http500" => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
        // Some servers echo the key they were sent; the connector must not repeat it.
        "http429" => error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Rate limit reached for key {KEY}"),
        ),
        "stream_error" => sse(
            format!(
                "{}data: {}\n\n",
                delta("Sorry"),
                json!({"error": {"message": "model overloaded"}})
            ),
            &[10],
        ),
        "nodone" => sse(
            format!("{}{}", delta("We replace"), delta(" damaged")),
            &[7],
        ),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            normal(ANSWER)
        }
        _ => error(StatusCode::NOT_FOUND, "no such scenario".into()),
    }
}

/// A directory with the API key file and a copy of the example knowledge base.
fn config_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sb-llm-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("llm.key"), format!("{KEY}\n")).unwrap();
    let faq = Path::new(env!("CARGO_MANIFEST_DIR")).join("ai/faq.toml");
    std::fs::copy(faq, dir.join("faq.toml")).unwrap();
    dir
}

/// kb, llm (with `extra` settings), handoff: the chain a deployment with an LLM runs.
fn chain(base_url: &str, extra: &str) -> Chain {
    let text = format!(
        r#"
        mode = "bot_first"
        [[plugin]]
        name = "kb"
        file = "faq.toml"
        [[plugin]]
        name = "llm"
        base_url = "{base_url}"
        model = "{MODEL}"
        api_key_file = "llm.key"
        {extra}
        [[plugin]]
        name = "handoff"
        misses = 2
        "#
    );
    AiConfig::from_toml(&text)
        .unwrap()
        .chain(&config_dir())
        .unwrap()
}

/// Not in the knowledge base with confidence, and full of personal data.
const QUESTION: &str =
    "My vase came broken in pieces, call me on 13800138000 or write to li.wei@example.com";

fn messages(seen: &Seen) -> Vec<(String, String)> {
    seen.body["messages"]
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

fn handed_off_because_llm_failed(out: &ChainOutcome) {
    assert_eq!(out.reply, None, "{out:?}");
    assert_eq!(out.draft, None, "{out:?}");
    let (by, handoff) = out.handoff.as_ref().expect("a hand-off");
    assert_eq!(by, "handoff");
    assert!(handoff.reason.contains("llm"), "{}", handoff.reason);
}

#[tokio::test]
async fn a_streamed_answer_becomes_the_bots_reply_and_the_request_keeps_the_contract() {
    let server = Server::start().await;
    let out = chain(&server.url("ok"), "").run("c1", "v1", QUESTION).await;
    assert_eq!(
        out.reply,
        Some(("llm".to_owned(), ANSWER.to_owned())),
        "{out:?}"
    );
    assert_eq!(out.handoff, None);
    assert_eq!(out.labels.get("llm").map(String::as_str), Some("answer"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/ok/v1/chat/completions");
    assert_eq!(req.auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(req.body["model"], MODEL);
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["max_tokens"], 300);
    let wire = req.body.to_string();
    assert!(
        !wire.contains("13800138000") && !wire.contains("li.wei@example.com"),
        "personal data left the host: {wire}"
    );
    let msgs = messages(req);
    let (role, user) = msgs.last().unwrap();
    assert_eq!(role, "user");
    assert!(
        user.contains("[phone]") && user.contains("[email]"),
        "{user}"
    );
    let (role, system) = &msgs[0];
    assert_eq!(role, "system");
    assert!(
        system.contains("Knowledge-base context") && system.contains("damaged"),
        "the damaged-item entry is context: {system}"
    );
}

#[tokio::test]
async fn a_question_the_knowledge_base_answers_never_reaches_the_server() {
    let server = Server::start().await;
    let chain = chain(&server.url("ok"), "");
    for question in ["怎么退款", "How do I reset my password?"] {
        let out = chain.run("c1", "v1", question).await;
        assert_eq!(
            out.reply.as_ref().map(|(p, _)| p.as_str()),
            Some("kb"),
            "{out:?}"
        );
    }
    assert_eq!(server.seen().len(), 0);
}

#[tokio::test]
async fn in_draft_mode_only_the_agent_sees_the_answer() {
    let server = Server::start().await;
    let out = chain(&server.url("ok"), "mode = \"draft\"")
        .run("c1", "v1", QUESTION)
        .await;
    assert_eq!(out.reply, None);
    assert_eq!(
        out.draft,
        Some(("llm".to_owned(), ANSWER.to_owned())),
        "{out:?}"
    );
    assert_eq!(
        out.handoff, None,
        "one unanswered message is not yet a miss run"
    );
}

#[tokio::test]
async fn when_the_model_finds_no_answer_it_hands_off() {
    let server = Server::start().await;
    let out = chain(&server.url("handoff"), "")
        .run("c1", "v1", QUESTION)
        .await;
    assert_eq!(out.reply, None);
    let (by, _) = out.handoff.expect("a hand-off");
    assert_eq!(by, "llm");
}

#[tokio::test]
async fn a_failing_server_hands_the_conversation_to_a_human() {
    let server = Server::start().await;
    for scenario in ["http500", "http429", "stream_error", "nodone"] {
        let before = server.seen().len();
        let start = Instant::now();
        let out = chain(&server.url(scenario), "")
            .run("c1", "v1", QUESTION)
            .await;
        assert!(start.elapsed() < Duration::from_secs(2), "{scenario}");
        assert_eq!(server.seen().len(), before + 1, "{scenario}: one request");
        assert_eq!(
            out.skipped,
            vec![("llm".to_owned(), Skip::Error)],
            "{scenario}"
        );
        handed_off_because_llm_failed(&out);
    }
}

#[tokio::test]
async fn a_server_that_is_down_hands_the_conversation_to_a_human() {
    let start = Instant::now();
    let out = chain(&down(), "").run("c1", "v1", QUESTION).await;
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(out.skipped, vec![("llm".to_owned(), Skip::Error)]);
    handed_off_because_llm_failed(&out);
}

#[tokio::test]
async fn a_slow_server_is_cut_off_by_the_deadline() {
    let server = Server::start().await;
    let start = Instant::now();
    let out = chain(&server.url("slow"), "deadline_ms = 300")
        .run("c1", "v1", QUESTION)
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(out.skipped, vec![("llm".to_owned(), Skip::Timeout)]);
    handed_off_because_llm_failed(&out);
}

#[tokio::test]
async fn the_plugins_own_timeout_gives_up_before_the_deadline() {
    let server = Server::start().await;
    let start = Instant::now();
    let out = chain(&server.url("slow"), "deadline_ms = 5000\ntimeout_ms = 200")
        .run("c1", "v1", QUESTION)
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(
        out.skipped,
        vec![("llm".to_owned(), Skip::Error)],
        "the plugin's error, not the chain's timeout"
    );
    handed_off_because_llm_failed(&out);
}

#[tokio::test]
async fn the_conversation_budget_stops_calls_once_spent() {
    let server = Server::start().await;
    // Each answer costs 100 tokens (the server's usage); a request reserves its estimated
    // prompt (a few dozen tokens here) plus 50 first: two fit in 250, a third does not.
    let chain = chain(
        &server.url("ok"),
        "max_tokens = 50\nconversation_tokens = 250\nkb_context = false\nsystem_prompt = \"Be brief.\"",
    );
    for _ in 0..2 {
        let out = chain.run("c1", "v1", "Do you sell vases?").await;
        assert_eq!(out.reply.map(|(p, _)| p), Some("llm".to_owned()));
    }
    let out = chain.run("c1", "v1", "Do you sell vases?").await;
    assert_eq!(out.skipped, vec![("llm".to_owned(), Skip::Error)]);
    handed_off_because_llm_failed(&out);
    assert_eq!(server.seen().len(), 2, "the third request never went out");
    let second = messages(&server.seen()[1]);
    assert!(
        second.iter().any(|(r, t)| r == "assistant" && t == ANSWER),
        "the second request remembers the first answer: {second:?}"
    );
    let other = chain.run("c2", "v2", "Do you sell vases?").await;
    assert_eq!(
        other.reply.map(|(p, _)| p),
        Some("llm".to_owned()),
        "another conversation has its own budget"
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn errors_name_the_status_and_never_the_key() {
    let server = Server::start().await;
    let plugin = |scenario: &str| {
        LlmPlugin::new(
            LlmOptions {
                api_key: ApiKey::new(KEY),
                ..LlmOptions::new(&server.url(scenario), MODEL)
            },
            None,
        )
        .unwrap()
    };
    let labels = Labels::new();
    let turn = Turn {
        conv: "c1",
        visitor: "v1",
        text: QUESTION,
        labels: &labels,
        answered: false,
        failed: &[],
    };
    let err = plugin("http429")
        .process(&turn)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("429") && err.contains("Rate limit"), "{err}");
    assert!(!err.contains(KEY), "{err}");
    let err = plugin("http500")
        .process(&turn)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("500") && err.contains("internal error"),
        "{err}"
    );
    let err = plugin("stream_error")
        .process(&turn)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("model overloaded"), "{err}");
    let err = plugin("nodone")
        .process(&turn)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("[DONE]"), "{err}");
    let p = LlmPlugin::new(LlmOptions::new(&down(), MODEL), None).unwrap();
    let err = p.process(&turn).await.unwrap_err().to_string();
    assert!(err.contains("unreachable"), "{err}");
}
