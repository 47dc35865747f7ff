//! The streaming encoder: Ollama's events as Anthropic server-sent events
//! (`message_start`, content blocks, `message_delta`, `message_stop`).

use super::*;

/// What is constant for one response.
pub(super) struct Head {
    pub(super) id: String,
    pub(super) model: String,
    pub(super) key: Key,
}

impl Head {
    pub(super) fn new(model: &str, key: Key) -> Self {
        Head {
            id: random_id("msg_", 24, true),
            model: model.to_string(),
            key,
        }
    }
}

pub(super) fn tool_use_id() -> String {
    random_id("toolu_", 24, true)
}

pub(super) fn stop_reason(done: &Done<'_>, tool_calls: bool) -> &'static str {
    match done.reason {
        _ if tool_calls => "tool_use",
        Some(Reason::Length) => "max_tokens",
        _ => "end_turn",
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Block {
    Thinking,
    Text,
}

pub(super) const BLOCK_START: &[u8] =
    b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":";
pub(super) const BLOCK_DELTA: &[u8] =
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":";
pub(super) const BLOCK_STOP: &[u8] =
    b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":";
pub(super) const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";
pub(super) const MESSAGE_STOP: &[u8] =
    b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
pub(super) const END: &[u8] = b"}\n\n";

/// Streams Anthropic server-sent events.
pub(super) struct StreamEncoder {
    /// The whole `message_start` event.
    pub(super) message_start: Vec<u8>,
    pub(super) key: Key,
    pub(super) started: bool,
    /// The open text or thinking block, if any.
    pub(super) open: Option<Block>,
    /// Index of the open block, or of the next one.
    pub(super) index: u64,
    /// The open thinking block's text, to sign at its end.
    pub(super) thinking: String,
    pub(super) tool_calls: bool,
    /// Web searches run for this answer.
    pub(super) searches: u64,
}

impl StreamEncoder {
    pub(super) fn new(head: Head) -> Self {
        let mut m = BytesMut::with_capacity(256);
        m.extend_from_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        write_str(&mut m, &head.id);
        m.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        write_str(&mut m, &head.model);
        m.extend_from_slice(
            b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":0}}}\n\n",
        );
        StreamEncoder {
            message_start: m.to_vec(),
            key: head.key,
            started: false,
            open: None,
            index: 0,
            thinking: String::new(),
            tool_calls: false,
            searches: 0,
        }
    }

    pub(super) fn start(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            out.extend_from_slice(&self.message_start);
        }
    }

    /// Closes the open block (signing a thinking block first).
    pub(super) fn close(&mut self, out: &mut BytesMut) {
        let Some(block) = self.open.take() else {
            return;
        };
        if block == Block::Thinking {
            let signature = signing::sign(&self.key, THINKING_PURPOSE, &self.thinking);
            self.thinking.clear();
            out.extend_from_slice(BLOCK_DELTA);
            write_u64(out, self.index);
            out.extend_from_slice(b",\"delta\":{\"type\":\"signature_delta\",\"signature\":");
            write_str(out, &signature);
            out.extend_from_slice(b"}");
            out.extend_from_slice(END);
        }
        self.stop_block(out);
    }

    /// `content_block_stop` for the block at `index`, and the next index.
    pub(super) fn stop_block(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(BLOCK_STOP);
        write_u64(out, self.index);
        out.extend_from_slice(END);
        self.index += 1;
    }

    /// Makes `block` the open block, starting it if needed.
    pub(super) fn open(&mut self, block: Block, out: &mut BytesMut) {
        if self.open == Some(block) {
            return;
        }
        self.close(out);
        self.open = Some(block);
        out.extend_from_slice(BLOCK_START);
        write_u64(out, self.index);
        out.extend_from_slice(match block {
            Block::Thinking => {
                b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}"
                    as &[u8]
            }
            Block::Text => b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}",
        });
        out.extend_from_slice(END);
    }

    pub(super) fn delta(&mut self, block: Block, text: &str, out: &mut BytesMut) {
        self.open(block, out);
        out.extend_from_slice(BLOCK_DELTA);
        write_u64(out, self.index);
        out.extend_from_slice(match block {
            Block::Thinking => b",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":" as &[u8],
            Block::Text => b",\"delta\":{\"type\":\"text_delta\",\"text\":",
        });
        write_str(out, text);
        out.extend_from_slice(b"}");
        out.extend_from_slice(END);
    }

    pub(super) fn ping(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(PING);
    }
}

impl Encoder for StreamEncoder {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        if let Event::Error(message) = event {
            // In-band error; no message_stop follows.
            let err = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
            out.extend_from_slice(b"event: error\ndata: ");
            write_error_object(&err, out);
            out.extend_from_slice(b"\n\n");
            return;
        }
        self.start(out);
        match event {
            // Silent thinking is kept alive by the body's keep-alive.
            Event::Heartbeat | Event::Error(_) => {}
            Event::Thinking(t) => {
                self.thinking.push_str(t);
                self.delta(Block::Thinking, t, out);
            }
            Event::Text(t) => self.delta(Block::Text, t, out),
            Event::ToolCall(call) => {
                self.close(out);
                self.tool_calls = true;
                out.extend_from_slice(BLOCK_START);
                write_u64(out, self.index);
                out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                write_str(out, &tool_use_id());
                out.extend_from_slice(b",\"name\":");
                write_str(out, call.name);
                out.extend_from_slice(b",\"input\":{}}");
                out.extend_from_slice(END);
                out.extend_from_slice(BLOCK_DELTA);
                write_u64(out, self.index);
                out.extend_from_slice(
                    b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":",
                );
                write_str(out, call.arguments);
                out.extend_from_slice(b"}");
                out.extend_from_slice(END);
                self.stop_block(out);
            }
            Event::Done(done) => {
                self.close(out);
                out.extend_from_slice(
                    b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"",
                );
                out.extend_from_slice(stop_reason(&done, self.tool_calls).as_bytes());
                out.extend_from_slice(b"\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":");
                write_u64(out, done.prompt_tokens);
                out.extend_from_slice(b",\"output_tokens\":");
                write_u64(out, done.completion_tokens);
                if self.searches > 0 {
                    out.extend_from_slice(b",\"server_tool_use\":{\"web_search_requests\":");
                    write_u64(out, self.searches);
                    out.extend_from_slice(b",\"web_fetch_requests\":0}");
                }
                out.extend_from_slice(b"}}\n\n");
                out.extend_from_slice(MESSAGE_STOP);
            }
        }
    }

    fn idle(&mut self, out: &mut BytesMut) {
        self.start(out);
        self.ping(out);
    }

    fn server_call(&mut self, call: &ServerCall<'_>, out: &mut BytesMut) {
        self.start(out);
        self.close(out);
        out.extend_from_slice(BLOCK_START);
        write_u64(out, self.index);
        out.extend_from_slice(b",\"content_block\":{\"type\":\"server_tool_use\",\"id\":");
        write_str(out, &server_tool_id(call.id));
        out.extend_from_slice(b",\"name\":\"web_search\",\"input\":{}}");
        out.extend_from_slice(END);
        out.extend_from_slice(BLOCK_DELTA);
        write_u64(out, self.index);
        out.extend_from_slice(b",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
        write_str(out, &json!({"query": call.query}).to_string());
        out.extend_from_slice(b"}");
        out.extend_from_slice(END);
        self.stop_block(out);
    }

    fn server_result(&mut self, result: &ServerResult<'_>, out: &mut BytesMut) {
        self.start(out);
        if result.outcome.is_ok() {
            self.searches += 1;
        }
        let block = search_result_block(&self.key, result);
        out.extend_from_slice(BLOCK_START);
        write_u64(out, self.index);
        out.extend_from_slice(b",\"content_block\":");
        out.extend_from_slice(block.to_string().as_bytes());
        out.extend_from_slice(END);
        self.stop_block(out);
    }
}

/// The `srvtoolu_…` id of a server tool call.
pub(super) fn server_tool_id(id: &str) -> String {
    format!("srvtoolu_{id}")
}

/// The `server_tool_use` block of a web search.
pub(super) fn server_tool_use_block(call: &ServerCall<'_>) -> Value {
    json!({
        "type": "server_tool_use",
        "id": server_tool_id(call.id),
        "name": search::FUNCTION,
        "input": {"query": call.query},
    })
}

/// The `web_search_tool_result` block of a search: its hits (each with its
/// sealed `encrypted_content`) or its error.
pub(super) fn search_result_block(key: &Key, result: &ServerResult<'_>) -> Value {
    let content = match result.outcome {
        Ok(hits) => Value::Array(
            hits.iter()
                .map(|hit| {
                    let mut item = json!({
                        "type": "web_search_result",
                        "url": hit.url,
                        "title": hit.title,
                        "encrypted_content": search::seal_hit(key, hit),
                    });
                    if let Some(age) = &hit.page_age {
                        item["page_age"] = Value::from(age.as_str());
                    }
                    item
                })
                .collect(),
        ),
        Err(code) => json!({"type": "web_search_tool_result_error", "error_code": code.as_str()}),
    };
    json!({
        "type": "web_search_tool_result",
        "tool_use_id": server_tool_id(result.id),
        "content": content,
    })
}
