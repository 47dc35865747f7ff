//! The non-streaming encoder: Ollama's events collected into one
//! `message` object.

use super::*;

/// Builds one `message` object.
pub(super) struct Collector {
    pub(super) head: Head,
    pub(super) content: Vec<Value>,
    pub(super) open: Option<Block>,
    pub(super) text: String,
    pub(super) tool_calls: bool,
    /// Web searches run for this answer.
    pub(super) searches: u64,
}

impl Collector {
    pub(super) fn new(head: Head) -> Self {
        Collector {
            head,
            content: Vec::new(),
            open: None,
            text: String::new(),
            tool_calls: false,
            searches: 0,
        }
    }

    pub(super) fn close(&mut self) {
        let Some(block) = self.open.take() else {
            return;
        };
        let text = std::mem::take(&mut self.text);
        self.content.push(match block {
            Block::Thinking => {
                let signature = signing::sign(&self.head.key, THINKING_PURPOSE, &text);
                json!({"type": "thinking", "thinking": text, "signature": signature})
            }
            Block::Text => json!({"type": "text", "text": text}),
        });
    }

    pub(super) fn append(&mut self, block: Block, text: &str) {
        if self.open != Some(block) {
            self.close();
            self.open = Some(block);
        }
        self.text.push_str(text);
    }
}

impl Encoder for Collector {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        match event {
            Event::Heartbeat => {}
            Event::Thinking(t) => self.append(Block::Thinking, t),
            Event::Text(t) => self.append(Block::Text, t),
            Event::ToolCall(call) => {
                self.close();
                self.tool_calls = true;
                let input: Value =
                    serde_json::from_str(call.arguments).unwrap_or_else(|_| json!({}));
                self.content.push(json!({
                    "type": "tool_use",
                    "id": tool_use_id(),
                    "name": call.name,
                    "input": input,
                }));
            }
            Event::Done(done) => {
                self.close();
                let mut body = json!({
                    "id": self.head.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.head.model,
                    "content": std::mem::take(&mut self.content),
                    "stop_reason": stop_reason(&done, self.tool_calls),
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": done.prompt_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": done.completion_tokens,
                    },
                });
                if self.searches > 0 {
                    body["usage"]["server_tool_use"] =
                        json!({"web_search_requests": self.searches, "web_fetch_requests": 0});
                }
                out.extend_from_slice(body.to_string().as_bytes());
            }
            Event::Error(message) => {
                let err = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
                write_error_object(&err, out);
            }
        }
    }

    fn server_call(&mut self, call: &ServerCall<'_>, _out: &mut BytesMut) {
        self.close();
        self.content.push(server_tool_use_block(call));
    }

    fn server_result(&mut self, result: &ServerResult<'_>, _out: &mut BytesMut) {
        if result.outcome.is_ok() {
            self.searches += 1;
        }
        self.content
            .push(search_result_block(&self.head.key, result));
    }
}
