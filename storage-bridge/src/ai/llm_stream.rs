//! A sans-IO parser for the streamed answers of the OpenAI-compatible chat-completions API
//! (`"stream": true`), which OpenAI, vLLM, Ollama and llama.cpp's server all send as
//! server-sent events: `data: {json}` events separated by blank lines, `data: [DONE]` at the
//! end, `:` comment lines as keep-alives. Bytes can arrive split anywhere, inside a line or
//! inside a UTF-8 character; [`ChatStream::feed`] returns what the bytes so far complete.

/// What a completed event carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// More of the answer's text.
    Delta(String),
    /// The server ended the answer.
    Done,
    /// The server reported an error in the stream.
    Error(String),
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
                if let Some(e) = self.dispatch()? {
                    events.push(e);
                }
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

    fn dispatch(&mut self) -> Result<Option<Event>, StreamError> {
        if !std::mem::take(&mut self.has_data) {
            return Ok(None);
        }
        let data = std::mem::take(&mut self.data);
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(Some(Event::Done));
        }
        let v: serde_json::Value =
            serde_json::from_str(&data).map_err(|e| StreamError::Json(e.to_string()))?;
        if let Some(err) = v.get("error") {
            let message = err
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| err.to_string());
            return Ok(Some(Event::Error(message)));
        }
        let text = v
            .pointer("/choices/0/delta/content")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        Ok((!text.is_empty()).then(|| Event::Delta(text.to_owned())))
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
