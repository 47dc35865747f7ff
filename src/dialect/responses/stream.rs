//! The encoder: Ollama's events as Responses output items, streamed
//! (`response.*` events) or collected into one response object.

use super::*;

/// An output item being streamed. `item_ref` is its
/// `,"item_id":…,"output_index":N`, rendered once for all its deltas.
pub(super) enum Open {
    None,
    Reasoning {
        id: String,
        index: u64,
        item_ref: Vec<u8>,
        text: String,
    },
    Message {
        id: String,
        index: u64,
        item_ref: Vec<u8>,
        text: String,
    },
}

/// How a response ended.
pub(super) enum End<'a, 'd> {
    InProgress,
    Completed(&'a Done<'d>),
    Incomplete(&'a Done<'d>),
    Failed(&'a str),
}

impl ResponseEncoder {
    pub(super) fn new(
        client_model: &str,
        echo: &[u8],
        stream: bool,
        signer: Option<Key>,
        namespaced: HashMap<String, (String, String)>,
    ) -> Self {
        let id = random_id("resp_", 32, false);
        let mut prefix = BytesMut::with_capacity(128 + echo.len());
        prefix.extend_from_slice(b"{\"id\":");
        write_str(&mut prefix, &id);
        prefix.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
        write_u64(&mut prefix, unix_now());
        prefix.extend_from_slice(b",\"model\":");
        write_str(&mut prefix, client_model);
        prefix.extend_from_slice(echo);
        ResponseEncoder {
            stream,
            prefix: prefix.to_vec(),
            seq: 0,
            started: false,
            finished: false,
            next_index: 0,
            open: Open::None,
            output: Vec::new(),
            signer,
            namespaced,
            call_ids: HashSet::new(),
            sources: false,
            searching: None,
            tool_search: false,
            custom: HashSet::new(),
            id,
            keep: None,
        }
    }

    /// Keeps the answered response: the conversation's items and the
    /// response object. Only a completed or incomplete one comes here.
    /// Answers as response `id` (chosen while parsing, so a kept
    /// conversation can be named before the answer starts).
    pub(super) fn set_id(&mut self, id: String) {
        let mut old = BytesMut::new();
        old.extend_from_slice(b"{\"id\":");
        write_str(&mut old, &self.id);
        let mut new = BytesMut::new();
        new.extend_from_slice(b"{\"id\":");
        write_str(&mut new, &id);
        if let Some(rest) = self.prefix.strip_prefix(&old[..]) {
            self.prefix = [&new[..], rest].concat();
            self.id = id;
        }
    }

    pub(super) fn keep(&mut self, response: Bytes) {
        let Some(keep) = self.keep.take() else {
            return;
        };
        if !self.stream && response.len() > keep.collect_limit {
            // The client gets a 502 for a document this large: nothing to
            // continue.
            return;
        }
        let mut items = Vec::with_capacity(keep.input.len() + self.output.len() + 3);
        items.push(b'[');
        items.extend_from_slice(&keep.input);
        if !keep.input.is_empty() && !self.output.is_empty() {
            items.push(b',');
        }
        items.extend_from_slice(&self.output);
        items.push(b']');
        let now = keep
            .timer
            .as_ref()
            .map_or_else(std::time::Instant::now, |t| t.now());
        let kept = Kept {
            items: items.into(),
            response,
            root: keep.root,
        };
        keep.store.put(self.id.clone(), keep.owner, kept, now);
    }

    /// Renders the model's calls of [`TOOL_SEARCH`] as `tool_search_call`
    /// items (when the request offered a client-run `tool_search`).
    pub(super) fn with_tool_search(mut self, on: bool) -> Self {
        self.tool_search = on;
        self
    }

    /// Renders the model's calls of these (flat) names as
    /// `custom_tool_call` items.
    pub(super) fn with_custom(mut self, custom: HashSet<String>) -> Self {
        self.custom = custom;
        self
    }

    /// The whole `response` object; `extra` is an unfinished item to list
    /// after the finished ones.
    pub(super) fn write_response(
        &self,
        out: &mut BytesMut,
        end: &End<'_, '_>,
        extra: Option<&[u8]>,
    ) {
        out.extend_from_slice(&self.prefix);
        let status = match end {
            End::InProgress => "in_progress",
            End::Completed(_) => "completed",
            End::Incomplete(_) => "incomplete",
            End::Failed(_) => "failed",
        };
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\"");
        if let End::Completed(_) = end {
            out.extend_from_slice(b",\"completed_at\":");
            write_u64(out, unix_now());
        }
        out.extend_from_slice(b",\"error\":");
        match end {
            End::Failed(message) => {
                out.extend_from_slice(b"{\"code\":\"server_error\",\"message\":");
                write_str(out, message);
                out.extend_from_slice(b"}");
            }
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"incomplete_details\":");
        match end {
            End::Incomplete(_) => out.extend_from_slice(b"{\"reason\":\"max_output_tokens\"}"),
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"output\":[");
        if !matches!(end, End::InProgress) {
            out.extend_from_slice(&self.output);
            if let Some(item) = extra {
                if !self.output.is_empty() {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(item);
            }
        }
        out.extend_from_slice(b"],\"usage\":");
        match end {
            End::Completed(done) | End::Incomplete(done) => write_usage(out, done),
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}");
    }

    /// `response.<kind>` with the whole response object.
    pub(super) fn lifecycle(
        &mut self,
        out: &mut BytesMut,
        ty: &str,
        end: &End<'_, '_>,
        extra: Option<&[u8]>,
    ) {
        begin_event(&mut self.seq, out, ty);
        out.extend_from_slice(b",\"response\":");
        self.write_response(out, end, extra);
        end_event(out);
    }

    pub(super) fn start(&mut self, out: &mut BytesMut) {
        if self.stream && !self.started {
            self.started = true;
            self.lifecycle(out, "response.created", &End::InProgress, None);
            self.lifecycle(out, "response.in_progress", &End::InProgress, None);
        }
    }

    pub(super) fn push_output(&mut self, item: &[u8]) {
        if !self.output.is_empty() {
            self.output.push(b',');
        }
        self.output.extend_from_slice(item);
    }

    pub(super) fn output_item_event(
        &mut self,
        out: &mut BytesMut,
        ty: &str,
        index: u64,
        item: &[u8],
    ) {
        begin_event(&mut self.seq, out, ty);
        out.extend_from_slice(b",\"output_index\":");
        write_u64(out, index);
        out.extend_from_slice(b",\"item\":");
        out.extend_from_slice(item);
        end_event(out);
    }

    pub(super) fn take_index(&mut self) -> u64 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    pub(super) fn open_reasoning(&mut self, out: &mut BytesMut) {
        let id = random_id("rs_", 32, false);
        let index = self.take_index();
        if self.stream {
            let mut item = BytesMut::new();
            write_reasoning_item(&mut item, &id, None, None);
            self.output_item_event(out, "response.output_item.added", index, &item);
            begin_event(&mut self.seq, out, "response.reasoning_summary_part.added");
            write_item_ref(out, &id, index);
            out.extend_from_slice(b",\"summary_index\":0,\"part\":");
            write_summary_text(out, "");
            end_event(out);
        }
        self.open = Open::Reasoning {
            item_ref: item_ref(&id, index),
            id,
            index,
            text: String::new(),
        };
    }

    pub(super) fn open_message(&mut self, out: &mut BytesMut) {
        let id = random_id("msg_", 32, false);
        let index = self.take_index();
        if self.stream {
            let mut item = BytesMut::new();
            write_message_item(&mut item, &id, "in_progress", None);
            self.output_item_event(out, "response.output_item.added", index, &item);
            begin_event(&mut self.seq, out, "response.content_part.added");
            write_item_ref(out, &id, index);
            out.extend_from_slice(b",\"content_index\":0,\"part\":");
            write_output_text(out, "");
            end_event(out);
        }
        self.open = Open::Message {
            item_ref: item_ref(&id, index),
            id,
            index,
            text: String::new(),
        };
    }

    /// Finishes the open item (its `.done` events) and files it in `output`.
    pub(super) fn close_open(&mut self, out: &mut BytesMut, status: &str) {
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Reasoning {
                id, index, text, ..
            } => {
                let sealed = self.signer.as_ref().map(|k| seal_reasoning(k, &text));
                if self.stream {
                    begin_event(&mut self.seq, out, "response.reasoning_summary_text.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"summary_index\":0,\"text\":");
                    write_str(out, &text);
                    end_event(out);
                    begin_event(&mut self.seq, out, "response.reasoning_summary_part.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"summary_index\":0,\"part\":");
                    write_summary_text(out, &text);
                    end_event(out);
                }
                let mut item = BytesMut::new();
                write_reasoning_item(&mut item, &id, Some(&text), sealed.as_deref());
                if self.stream {
                    self.output_item_event(out, "response.output_item.done", index, &item);
                }
                self.push_output(&item);
            }
            Open::Message {
                id, index, text, ..
            } => {
                if self.stream {
                    begin_event(&mut self.seq, out, "response.output_text.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"content_index\":0,\"logprobs\":[],\"text\":");
                    write_str(out, &text);
                    end_event(out);
                    begin_event(&mut self.seq, out, "response.content_part.done");
                    write_item_ref(out, &id, index);
                    out.extend_from_slice(b",\"content_index\":0,\"part\":");
                    write_output_text(out, &text);
                    end_event(out);
                }
                let mut item = BytesMut::new();
                write_message_item(&mut item, &id, status, Some(&text));
                if self.stream {
                    self.output_item_event(out, "response.output_item.done", index, &item);
                }
                self.push_output(&item);
            }
        }
    }

    /// The open item as it stands, marked incomplete, without `.done` events
    /// (for `response.failed`).
    pub(super) fn abandon_open(&mut self) -> Option<Vec<u8>> {
        let mut item = BytesMut::new();
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return None,
            Open::Reasoning { id, text, .. } => {
                write_reasoning_item(&mut item, &id, Some(&text), None);
            }
            Open::Message { id, text, .. } => {
                write_message_item(&mut item, &id, "incomplete", Some(&text));
            }
        }
        Some(item.to_vec())
    }

    pub(super) fn thinking(&mut self, t: &str, out: &mut BytesMut) {
        if !matches!(self.open, Open::Reasoning { .. }) {
            self.close_open(out, "completed");
            self.open_reasoning(out);
        }
        if let Open::Reasoning { item_ref, text, .. } = &mut self.open {
            text.push_str(t);
            if self.stream {
                begin_event(&mut self.seq, out, "response.reasoning_summary_text.delta");
                out.extend_from_slice(item_ref);
                out.extend_from_slice(b",\"summary_index\":0,\"delta\":");
                write_str(out, t);
                end_event(out);
            }
        }
    }

    pub(super) fn text(&mut self, t: &str, out: &mut BytesMut) {
        if !matches!(self.open, Open::Message { .. }) {
            self.close_open(out, "completed");
            self.open_message(out);
        }
        if let Open::Message { item_ref, text, .. } = &mut self.open {
            text.push_str(t);
            if self.stream {
                begin_event(&mut self.seq, out, "response.output_text.delta");
                out.extend_from_slice(item_ref);
                out.extend_from_slice(b",\"content_index\":0,\"delta\":");
                write_str(out, t);
                out.extend_from_slice(b",\"logprobs\":[]");
                end_event(out);
            }
        }
    }

    /// A unique `call_id`: the SDK tells calls apart by it, so Ollama's is
    /// kept unless it repeats.
    pub(super) fn call_id(&mut self, id: Option<&str>) -> String {
        match id {
            Some(id) if self.call_ids.insert(id.to_string()) => id.to_string(),
            _ => {
                let fresh = random_id("call_", 24, false);
                self.call_ids.insert(fresh.clone());
                fresh
            }
        }
    }

    pub(super) fn tool_call(
        &mut self,
        id: Option<&str>,
        name: &str,
        arguments: &str,
        out: &mut BytesMut,
    ) {
        if self.tool_search && name == TOOL_SEARCH {
            return self.tool_search_call(id, arguments, out);
        }
        if self.custom.contains(name) {
            return self.custom_tool_call(id, name, arguments, out);
        }
        self.close_open(out, "completed");
        let index = self.take_index();
        let item_id = random_id("fc_", 32, false);
        let call_id = self.call_id(id);
        let (namespace, name) = match self.namespaced.get(name) {
            Some((ns, member)) => (Some(ns.as_str()), member.as_str()),
            None => (None, name),
        };
        let mut done_item = BytesMut::new();
        write_function_item(
            &mut done_item,
            &item_id,
            "completed",
            &call_id,
            name,
            namespace,
            arguments,
        );
        if self.stream {
            let mut added = BytesMut::new();
            write_function_item(
                &mut added,
                &item_id,
                "in_progress",
                &call_id,
                name,
                namespace,
                "",
            );
            self.output_item_event(out, "response.output_item.added", index, &added);
            begin_event(&mut self.seq, out, "response.function_call_arguments.delta");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"delta\":");
            write_str(out, arguments);
            end_event(out);
            begin_event(&mut self.seq, out, "response.function_call_arguments.done");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"arguments\":");
            write_str(out, arguments);
            end_event(out);
            self.output_item_event(out, "response.output_item.done", index, &done_item);
        }
        self.push_output(&done_item);
    }

    /// A `web_search_call` event for the running search.
    pub(super) fn search_event(&mut self, out: &mut BytesMut, ty: &str) {
        if let (true, Some((id, index))) = (self.stream, &self.searching) {
            let (id, index) = (id.clone(), *index);
            begin_event(&mut self.seq, out, ty);
            write_item_ref(out, &id, index);
            end_event(out);
        }
    }

    /// A `tool_search_call` item (`execution: "client"`): its `arguments`
    /// an object, whole in `output_item.added` and `.done` (the model's
    /// arguments arrive in one piece).
    pub(super) fn tool_search_call(
        &mut self,
        id: Option<&str>,
        arguments: &str,
        out: &mut BytesMut,
    ) {
        self.close_open(out, "completed");
        let index = self.take_index();
        let item_id = random_id("tsc_", 32, false);
        let call_id = self.call_id(id);
        let mut done_item = BytesMut::new();
        write_tool_search_item(&mut done_item, &item_id, "completed", &call_id, arguments);
        if self.stream {
            let mut added = BytesMut::new();
            write_tool_search_item(&mut added, &item_id, "in_progress", &call_id, arguments);
            self.output_item_event(out, "response.output_item.added", index, &added);
            self.output_item_event(out, "response.output_item.done", index, &done_item);
        }
        self.push_output(&done_item);
    }

    /// A `custom_tool_call` item: its `input` is the text the model wrote
    /// ([`custom_input`]), whole in one `response.custom_tool_call_input.delta`
    /// (the model's arguments arrive in one piece), then `.done`.
    pub(super) fn custom_tool_call(
        &mut self,
        id: Option<&str>,
        name: &str,
        arguments: &str,
        out: &mut BytesMut,
    ) {
        self.close_open(out, "completed");
        let index = self.take_index();
        let item_id = random_id("ctc_", 32, false);
        let call_id = self.call_id(id);
        let input = custom_input(arguments);
        let (namespace, name) = match self.namespaced.get(name) {
            Some((ns, member)) => (Some(ns.as_str()), member.as_str()),
            None => (None, name),
        };
        let item = |status: &str, input: &str| {
            let mut v = json!({"id": item_id, "type": "custom_tool_call", "status": status,
                "call_id": call_id, "name": name, "input": input});
            if let Some(ns) = namespace {
                v["namespace"] = Value::from(ns);
            }
            v.to_string()
        };
        let done_item = item("completed", &input);
        if self.stream {
            let added = item("in_progress", "");
            self.output_item_event(out, "response.output_item.added", index, added.as_bytes());
            begin_event(&mut self.seq, out, "response.custom_tool_call_input.delta");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"delta\":");
            write_str(out, &input);
            end_event(out);
            begin_event(&mut self.seq, out, "response.custom_tool_call_input.done");
            write_item_ref(out, &item_id, index);
            out.extend_from_slice(b",\"input\":");
            write_str(out, &input);
            end_event(out);
            self.output_item_event(
                out,
                "response.output_item.done",
                index,
                done_item.as_bytes(),
            );
        }
        self.push_output(done_item.as_bytes());
    }

    pub(super) fn done(&mut self, done: &Done<'_>, out: &mut BytesMut) {
        let length = done.reason == Some(Reason::Length);
        self.close_open(out, if length { "incomplete" } else { "completed" });
        let (ty, end) = if length {
            ("response.incomplete", End::Incomplete(done))
        } else {
            ("response.completed", End::Completed(done))
        };
        // Rendered once: what is kept is what the client got.
        let mut document = BytesMut::new();
        self.write_response(&mut document, &end, None);
        if self.stream {
            begin_event(&mut self.seq, out, ty);
            out.extend_from_slice(b",\"response\":");
            out.extend_from_slice(&document);
            end_event(out);
        } else {
            out.extend_from_slice(&document);
        }
        self.keep(document.freeze());
    }

    pub(super) fn fail(&mut self, message: &str, out: &mut BytesMut) {
        let extra = self.abandon_open();
        let end = End::Failed(message);
        if self.stream {
            self.lifecycle(out, "response.failed", &end, extra.as_deref());
        } else {
            self.write_response(out, &end, extra.as_deref());
        }
    }
}

impl Encoder for ResponseEncoder {
    fn event(&mut self, event: Event<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.start(out);
        match event {
            // Silent thinking is kept alive by the body's keep-alive.
            Event::Heartbeat => {}
            Event::Thinking(t) => self.thinking(t, out),
            Event::Text(t) => self.text(t, out),
            Event::ToolCall(call) => self.tool_call(call.id, call.name, call.arguments, out),
            Event::Done(done) => {
                self.finished = true;
                self.done(&done, out);
            }
            Event::Error(message) => {
                self.finished = true;
                self.fail(message, out);
            }
        }
    }

    /// An SSE comment: ignored by clients, keeps idle watchdogs calm.
    fn idle(&mut self, out: &mut BytesMut) {
        if self.stream && !self.finished {
            self.start(out);
            out.extend_from_slice(b": keep-alive\n\n");
        }
    }

    fn server_call(&mut self, call: &ServerCall<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.start(out);
        self.close_open(out, "completed");
        let id = format!("ws_{}", call.id);
        let index = self.take_index();
        if self.stream {
            let item = web_search_item(&id, "in_progress", call.query, None);
            self.output_item_event(out, "response.output_item.added", index, item.as_bytes());
        }
        self.searching = Some((id, index));
        self.search_event(out, "response.web_search_call.in_progress");
        self.search_event(out, "response.web_search_call.searching");
    }

    fn server_result(&mut self, result: &ServerResult<'_>, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        let (status, hits) = match result.outcome {
            Ok(hits) => ("completed", hits),
            Err(_) => ("failed", &[][..]),
        };
        if status == "completed" {
            self.search_event(out, "response.web_search_call.completed");
        }
        let Some((id, index)) = self.searching.take() else {
            return;
        };
        let sources = self.sources.then_some(hits);
        let item = web_search_item(&id, status, result.query, sources);
        if self.stream {
            self.output_item_event(out, "response.output_item.done", index, item.as_bytes());
        }
        self.push_output(item.as_bytes());
    }
}

/// The text of a custom tool call from the model's arguments (the JSON text
/// of an object, see `ollama::tool_arguments`): its `input`, as asked; else
/// the one value it holds (a model that named the argument otherwise, or
/// sent the bare text, which arrives wrapped as `{"value":…}`); nothing for
/// `{}`; else the arguments' JSON as they are, so no word of the model's is
/// lost. A value that is not a string is its JSON text.
pub(super) fn custom_input(arguments: &str) -> String {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(arguments) else {
        return arguments.to_string();
    };
    let value = match map.remove(CUSTOM_INPUT) {
        Some(v) => v,
        None if map.len() == 1 => match map.into_iter().next() {
            Some((_, v)) => v,
            None => return String::new(),
        },
        None if map.is_empty() => return String::new(),
        None => return arguments.to_string(),
    };
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// A `web_search_call` output item; `sources` when `include` asked for them.
pub(super) fn web_search_item(
    id: &str,
    status: &str,
    query: &str,
    sources: Option<&[SearchHit]>,
) -> String {
    let mut action = json!({"type": "search", "query": query});
    if let Some(hits) = sources {
        action["sources"] = hits
            .iter()
            .map(|h| json!({"type": "url", "url": h.url}))
            .collect();
    }
    json!({"id": id, "type": "web_search_call", "status": status, "action": action}).to_string()
}
