//! The LLM connector's HTTP side: one streamed `POST {base_url}/chat/completions` to an
//! OpenAI-compatible server, its body fed to [`ChatStream`] as it arrives, and every way that
//! can go wrong turned into an [`LlmError`] the plugin counts by outcome.
//!
//! The API key lives in an [`ApiKey`], whose `Debug` shows no part of it; it goes out only as
//! a header marked sensitive, and it is masked out of the excerpt of an error body (some
//! servers echo what they were sent). Errors never carry the URL's credentials either.
//!
//! Threading: one [`Client`] (a pooled `reqwest` client) serves every conversation.

use super::llm_stream::{ChatStream, Event, StreamError};
use std::time::Duration;

/// A secret bearer token. `Debug` prints `ApiKey(***)`; there is no `Display`.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// `None` for a blank key. Surrounding whitespace (a file's last newline) is dropped.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim();
        (!key.is_empty()).then(|| Self(key.to_owned()))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Why a request to the LLM server produced no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error(transparent)]
    Budget(#[from] super::llm_budget::Exhausted),
    #[error("LLM server unreachable: {0}")]
    Connect(String),
    #[error("LLM server: no response within {0} ms")]
    Timeout(u128),
    #[error("LLM server answered {status}: {excerpt}")]
    Http { status: u16, excerpt: String },
    #[error("LLM server reported an error in the stream: {0}")]
    Server(String),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("LLM stream ended before [DONE] ({0} characters received)")]
    Incomplete(usize),
    #[error("LLM answer cut at max_tokens")]
    Truncated,
    #[error("LLM answer is empty")]
    Empty,
    #[error("LLM client: {0}")]
    Client(String),
}

impl LlmError {
    /// The `outcome` label of `bridge_ai_llm_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            LlmError::Budget(_) => "budget",
            LlmError::Connect(_) | LlmError::Client(_) => "connect",
            LlmError::Timeout(_) => "timeout",
            LlmError::Http { .. } => "http_error",
            LlmError::Server(_)
            | LlmError::Stream(_)
            | LlmError::Incomplete(_)
            | LlmError::Truncated
            | LlmError::Empty => "stream_error",
        }
    }
}

/// What a stream brought, complete or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    /// `[DONE]` arrived; false when the body ended (or broke) before it.
    pub done: bool,
    /// The `finish_reason` the server gave, if any (`length`: cut at `max_tokens`).
    pub finish: Option<String>,
    /// `(prompt, completion)` tokens as the server counted them, if it did.
    pub usage: Option<(u64, u64)>,
}

/// Bytes of an error body read for its excerpt, and characters kept.
const ERROR_BODY_BYTES: usize = 2048;
const EXCERPT_CHARS: usize = 200;

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    key: Option<ApiKey>,
    /// Allowed for connecting and the response's headers (the server's first byte); `None`:
    /// only the chain's deadline.
    timeout: Option<Duration>,
}

impl Client {
    pub fn new(
        base_url: &str,
        key: Option<ApiKey>,
        timeout: Option<Duration>,
    ) -> Result<Self, LlmError> {
        let mut http = reqwest::Client::builder();
        if let Some(t) = timeout {
            http = http.connect_timeout(t);
        }
        let http = http
            .build()
            .map_err(|e| LlmError::Client(e.without_url().to_string()))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            key,
            timeout,
        })
    }

    /// The request for `body` (a chat-completions JSON body), not yet sent.
    pub fn request(&self, body: &serde_json::Value) -> Result<reqwest::Request, LlmError> {
        let mut req = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(body.to_string());
        if let Some(key) = &self.key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.0))
                .map_err(|_| LlmError::Client("the API key is not a valid header value".into()))?;
            value.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, value);
        }
        req.build()
            .map_err(|e| LlmError::Client(e.without_url().to_string()))
    }

    /// Sends `body` and reads the streamed answer to its end.
    pub async fn complete(&self, body: &serde_json::Value) -> Result<Answer, LlmError> {
        let req = self.request(body)?;
        let timeout_ms = self.timeout.map_or(0, |t| t.as_millis());
        let sent = match self.timeout {
            Some(t) => tokio::time::timeout(t, self.http.execute(req))
                .await
                .map_err(|_| LlmError::Timeout(timeout_ms))?,
            None => self.http.execute(req).await,
        };
        let mut resp = match sent {
            Err(e) if e.is_timeout() => return Err(LlmError::Timeout(timeout_ms)),
            Err(e) => return Err(LlmError::Connect(e.without_url().to_string())),
            Ok(resp) => resp,
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(LlmError::Http {
                status: status.as_u16(),
                excerpt: self.excerpt(&mut resp).await,
            });
        }
        let mut stream = ChatStream::new();
        let mut answer = Answer::default();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    // A connection broken mid-answer ends the stream early; said below.
                    tracing::debug!(error = %e.without_url(), "LLM stream broke off");
                    break;
                }
            };
            for event in stream.feed(&chunk)? {
                match event {
                    Event::Delta(text) => answer.text.push_str(&text),
                    Event::Finish(reason) => answer.finish = Some(reason),
                    Event::Usage {
                        prompt_tokens,
                        completion_tokens,
                    } => answer.usage = Some((prompt_tokens, completion_tokens)),
                    Event::Error(message) => return Err(LlmError::Server(self.mask(&message))),
                    Event::Done => answer.done = true,
                }
            }
            if answer.done {
                break;
            }
        }
        Ok(answer)
    }

    /// The start of an error body, on one line, without the key.
    async fn excerpt(&self, resp: &mut reqwest::Response) -> String {
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(ERROR_BODY_BYTES);
        let text = String::from_utf8_lossy(&body);
        let line: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(EXCERPT_CHARS)
            .collect();
        self.mask(&line)
    }

    /// `text` with the API key, if it appears, masked.
    fn mask(&self, text: &str) -> String {
        match &self.key {
            Some(key) => text.replace(&key.0, "***"),
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-test-0123456789abcdef";

    fn client(key: Option<&str>) -> Client {
        Client::new(
            "https://llm.example.com/v1/",
            key.and_then(ApiKey::new),
            Some(Duration::from_secs(1)),
        )
        .unwrap()
    }

    #[test]
    fn the_request_carries_the_key_as_a_bearer_token_and_the_body_as_json() {
        let body = serde_json::json!({"model": "m", "stream": true});
        let req = client(Some(KEY)).request(&body).unwrap();
        assert_eq!(req.method(), reqwest::Method::POST);
        assert_eq!(
            req.url().as_str(),
            "https://llm.example.com/v1/chat/completions"
        );
        let auth = req.headers().get("authorization").unwrap();
        assert_eq!(auth.to_str().unwrap(), format!("Bearer {KEY}"));
        assert!(auth.is_sensitive());
        assert_eq!(req.headers()["content-type"], "application/json");
        let sent: serde_json::Value =
            serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(sent, body);
        let anonymous = client(None).request(&body).unwrap();
        assert!(anonymous.headers().get("authorization").is_none());
    }

    #[test]
    fn the_key_is_never_in_debug_output_or_error_excerpts() {
        let c = client(Some(KEY));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains(KEY) && !debug.contains("0123456789"),
            "{debug}"
        );
        assert!(debug.contains("ApiKey(***)"), "{debug}");
        assert_eq!(
            c.mask(&format!("Incorrect API key provided: {KEY}.")),
            "Incorrect API key provided: ***."
        );
        assert!(ApiKey::new(" \n").is_none());
    }

    #[test]
    fn outcomes_name_what_failed() {
        assert_eq!(
            LlmError::Http {
                status: 429,
                excerpt: String::new()
            }
            .outcome(),
            "http_error"
        );
        assert_eq!(LlmError::Incomplete(3).outcome(), "stream_error");
        assert_eq!(LlmError::Connect(String::new()).outcome(), "connect");
    }
}
