//! A sans-IO parser for the streamed answers of the OpenAI-compatible chat-completions API
//! (`"stream": true`), which OpenAI, vLLM, Ollama and llama.cpp's server all send as
//! server-sent events: `data: {json}` events separated by blank lines, `data: [DONE]` at the
//! end, `:` comment lines as keep-alives. Bytes can arrive split anywhere, inside a line or
//! inside a UTF-8 character; [`ChatStream::feed`] returns what the bytes so far complete.
//!
//! Besides the text, a chunk may say why the answer ended (`finish_reason`: `stop`, or
//! `length` when `max_tokens` cut it) and, when the request asked for
//! `stream_options.include_usage`, how many tokens it cost (`usage`, usually in a last chunk
//! with no choices); both are surfaced so the caller can judge the answer and count its cost.

/// What a completed event carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// More of the answer's text.
    Delta(String),
    /// The server ended the answer.
    Done,
    /// The server reported an error in the stream.
    Error(String),
    /// Why the answer ended (`stop`, `length`, ...), sent before `[DONE]`.
    Finish(String),
    /// What the request cost, as the server counted it.
    Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("LLM stream: an event over {0} bytes")]
    TooLarge(usize),
    #[error("LLM stream: not UTF-8")]
    Utf8,
    #[error("LLM stream: an event that is not JSON: {0}")]
    Json(String),
}

/// Largest event accepted (an answer's chunks are small; this bounds a broken server).
const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Default)]
pub struct ChatStream {
    /// Bytes of the line being read.
    line: Vec<u8>,
    /// `data:` lines of the event being read, joined by newlines.
    data: String,
    has_data: bool,
    done: bool,
}

impl ChatStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once `[DONE]` was seen; later bytes are ignored.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, StreamError> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.done {
                break;
            }
            if b != b'\n' {
                if self.line.len() + self.data.len() >= MAX_EVENT_BYTES {
                    return Err(StreamError::TooLarge(MAX_EVENT_BYTES));
                }
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| StreamError::Utf8)?;
            if line.is_empty() {
                self.dispatch(&mut events)?;
            } else if let Some(value) = line.strip_prefix("data:") {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
                self.has_data = true;
            }
            // `event:`, `id:`, `retry:` and `:` comments carry nothing we use.
        }
        Ok(events)
    }

    /// Turns the event read so far into what it carries: nothing, or the text, the finish
    /// reason and the usage of one chunk, in that order.
    fn dispatch(&mut self, events: &mut Vec<Event>) -> Result<(), StreamError> {
        if !std::mem::take(&mut self.has_data) {
            return Ok(());
        }
        let data = std::mem::take(&mut self.data);
        if data.trim() == "[DONE]" {
            self.done = true;
            events.push(Event::Done);
            return Ok(());
        }
        let v: serde_json::Value =
            serde_json::from_str(&data).map_err(|e| StreamError::Json(e.to_string()))?;
        if let Some(err) = v.get("error") {
            let message = err
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| err.to_string());
            events.push(Event::Error(message));
            return Ok(());
        }
        let text = v
            .pointer("/choices/0/delta/content")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        if !text.is_empty() {
            events.push(Event::Delta(text.to_owned()));
        }
        if let Some(reason) = v
            .pointer("/choices/0/finish_reason")
            .and_then(|r| r.as_str())
        {
            events.push(Event::Finish(reason.to_owned()));
        }
        // Some servers send `"usage": null` in every chunk and the numbers in the last one.
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            let count = |k: &str| usage.get(k).and_then(|n| n.as_u64()).unwrap_or(0);
            events.push(Event::Usage {
                prompt_tokens: count("prompt_tokens"),
                completion_tokens: count("completion_tokens"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"您好，\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"orders ship in 24 h.\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"after the end\"}}]}\n\n",
    );

    fn want() -> Vec<Event> {
        vec![
            Event::Delta("您好，".into()),
            Event::Delta("orders ship in 24 h.".into()),
            Event::Finish("stop".into()),
            Event::Done,
        ]
    }

    #[test]
    fn a_whole_stream_gives_its_text_then_done() {
        let mut s = ChatStream::new();
        assert_eq!(s.feed(STREAM.as_bytes()).unwrap(), want());
        assert!(s.is_done());
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_events() {
        let bytes = STREAM.as_bytes();
        for cut in 1..bytes.len() {
            let mut s = ChatStream::new();
            let mut got = s.feed(&bytes[..cut]).unwrap();
            got.extend(s.feed(&bytes[cut..]).unwrap());
            assert_eq!(got, want(), "cut at {cut}");
        }
        let mut s = ChatStream::new();
        let got: Vec<Event> = bytes.iter().flat_map(|b| s.feed(&[*b]).unwrap()).collect();
        assert_eq!(got, want(), "one byte at a time");
    }

    #[test]
    fn usage_and_the_finish_reason_are_surfaced() {
        let mut s = ChatStream::new();
        let got = s
            .feed(concat!(
                "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
                "data: {\"choices\":[{\"delta\":{\"content\":\" there\"},\"finish_reason\":\"length\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":2,\"total_tokens\":33}}\n\n",
                "data: [DONE]\n\n",
            ).as_bytes())
            .unwrap();
        assert_eq!(
            got,
            vec![
                Event::Delta("Hi".into()),
                Event::Delta(" there".into()),
                Event::Finish("length".into()),
                Event::Usage {
                    prompt_tokens: 31,
                    completion_tokens: 2
                },
                Event::Done,
            ]
        );
    }

    #[test]
    fn errors_in_the_stream_and_broken_servers() {
        let mut s = ChatStream::new();
        let e = s
            .feed(b"data: {\"error\":{\"message\":\"rate limited\",\"type\":\"requests\"}}\n\n")
            .unwrap();
        assert_eq!(e, vec![Event::Error("rate limited".into())]);
        assert!(matches!(
            ChatStream::new().feed(b"data: {not json\n\n"),
            Err(StreamError::Json(_))
        ));
        assert_eq!(
            ChatStream::new().feed(b"data: \xff\xfe\n\n"),
            Err(StreamError::Utf8)
        );
        let huge = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(
            ChatStream::new().feed(&huge),
            Err(StreamError::TooLarge(MAX_EVENT_BYTES))
        );
    }
}
