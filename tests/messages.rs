//! The Anthropic Messages dialect end to end: the real proxy composition
//! (`examples/proxy`, a child process) on a real socket, in front of the fake Ollama,
//! driven the way Claude Code drives it.

mod common;

use common::fake_ollama::FakeOllama;
use serde_json::{json, Value};

use common::proxy::{last_chat, send, Answer, Proxy};

async fn proxy(fake: &FakeOllama, env: &[(&str, &str)]) -> Proxy {
    common::proxy::start(&fake.base_url(), env).await
}

/// Anthropic's SSE: named events whose data names the same type.
trait Events {
    fn events(&self) -> Vec<(String, Value)>;
}

impl Events for Answer {
    fn events(&self) -> Vec<(String, Value)> {
        assert!(self.body.ends_with("\n\n"), "{}", self.body);
        self.sse()
            .into_iter()
            .map(|(name, data)| {
                let name = name.expect("an event name");
                let data: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect()
    }
}

/// Posts like Claude Code: query string, Anthropic headers, a key.
async fn post(proxy: &Proxy, path: &str, body: Value) -> Answer {
    let headers = [
        ("anthropic-version", "2023-06-01"),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        ),
        ("x-api-key", "sk-ant-anything"),
        ("accept-encoding", "gzip, br, zstd"),
    ];
    send(
        "POST",
        &format!("{}{path}", proxy.url),
        &headers,
        Some(&body),
    )
    .await
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"], "additionalProperties": false},
        "cache_control": {"type": "ephemeral"}
    })
}

/// A body shaped like Claude Code 2.1's.
fn claude_code_body(model: &str, stream: bool, messages: Value) -> Value {
    json!({
        "model": model,
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "Be concise.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": messages,
        "tools": [weather_tool()],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "user_abc_account_def_session_ghi"},
        "temperature": 1
    })
}

#[tokio::test]
async fn claude_code_text_turn_streams_the_exact_event_sequence() {
    let fake = FakeOllama::start().await;
    let p = proxy(
        &fake,
        &[
            ("MODEL_ALIASES", "claude-sonnet-4-5=llama3.2"),
            ("DEFAULT_MODEL", "qwen3"),
        ],
    )
    .await;
    let a = post(
        &p,
        "/v1/messages?beta=true",
        claude_code_body(
            "claude-sonnet-4-5",
            true,
            json!([{"role": "user", "content": [{"type": "text", "text": "hello there", "cache_control": {"type": "ephemeral"}}]}]),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/event-stream");
    let evs = a.events();
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    let n = names.len();
    assert_eq!(names[..2], ["message_start", "content_block_start"]);
    assert!(names[2..n - 3].iter().all(|&e| e == "content_block_delta"));
    assert_eq!(
        names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(evs[0].1["message"]["model"], "claude-sonnet-4-5");
    let text: String = evs
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "Hello! You said: hello there");
    let delta = &evs[n - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // What reached Ollama: the alias, the system blocks, the tool, no think
    // (llama3.2 is not a think-model; adaptive is not an explicit request).
    let up = last_chat(&fake);
    assert_eq!(up["model"], "llama3.2");
    assert_eq!(up["stream"], true);
    assert!(up.get("think").is_none(), "{up}");
    assert_eq!(
        up["messages"][0],
        json!({"role": "system", "content": "You are Claude Code, Anthropic's official CLI for Claude.\n\nBe concise."})
    );
    assert_eq!(up["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(up["options"]["num_predict"], 32000);
    assert_eq!(up["options"]["temperature"], 1);

    // An unknown claude-* name goes to DEFAULT_MODEL; the answer names the client's model.
    let a = post(
        &p,
        "/v1/messages",
        json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 512,
               "messages": [{"role": "user", "content": "quick one"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json");
    let m = a.json();
    assert_eq!(m["model"], "claude-haiku-4-5-20251001");
    assert_eq!(m["type"], "message");
    assert_eq!(last_chat(&fake)["model"], "qwen3");
    assert_eq!(
        last_chat(&fake)["stream"],
        true,
        "Ollama streams; the message is collected"
    );
    // qwen3 thinks by default, but thinking is dropped by default.
    assert_eq!(m["content"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["content"][0]["type"], "text");
    assert_eq!(m["stop_reason"], "end_turn");
}

#[tokio::test]
async fn thinking_round_trip_verifies_our_signature() {
    let fake = FakeOllama::start().await;
    let env = [
        ("REASONING", "forward"),
        ("THINKING_KEY", "a shared secret"),
    ];
    let p = proxy(&fake, &env).await;
    let a = post(
        &p,
        "/v1/messages?beta=true",
        json!({"model": "qwen3", "max_tokens": 1000, "stream": true,
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let evs = a.events();
    assert_eq!(evs[1].1["content_block"]["type"], "thinking");
    let thinking: String = evs
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/thinking").and_then(Value::as_str))
        .collect();
    assert_eq!(thinking, "Let me think about this.");
    let signature = evs
        .iter()
        .find_map(|(_, d)| d.pointer("/delta/signature").and_then(Value::as_str))
        .expect("a signature_delta")
        .to_string();
    // The signature comes right before the thinking block stops.
    let sig_at = evs
        .iter()
        .position(|(_, d)| d.pointer("/delta/signature").is_some())
        .unwrap();
    assert_eq!(evs[sig_at + 1].0, "content_block_stop");
    assert_eq!(evs[sig_at + 1].1["index"], 0);
    assert_eq!(evs[sig_at + 2].1["index"], 1, "contiguous indices");

    let replay = |signature: &str| {
        json!({"model": "qwen3", "max_tokens": 1000,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": thinking, "signature": signature},
                {"type": "text", "text": "Hello! You said: hi"}
            ]},
            {"role": "user", "content": "and again"}
        ]})
    };
    let a = post(&p, "/v1/messages", replay(&signature)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(last_chat(&fake)["messages"][1]["thinking"], thinking);

    // Tampered: still answered, but the thinking never reaches the model.
    let mut tampered = signature.clone();
    let first = if tampered.starts_with('a') { "b" } else { "a" };
    tampered.replace_range(0..1, first);
    let a = post(&p, "/v1/messages", replay(&tampered)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let up = last_chat(&fake);
    assert!(up["messages"][1].get("thinking").is_none(), "{up}");
    assert_eq!(up["messages"][1]["content"], "Hello! You said: hi");

    // The same THINKING_KEY after a restart still verifies; another key does not.
    let again = proxy(&fake, &env).await;
    post(&again, "/v1/messages", replay(&signature)).await;
    assert_eq!(last_chat(&fake)["messages"][1]["thinking"], thinking);
    let other = proxy(
        &fake,
        &[("REASONING", "forward"), ("THINKING_KEY", "another")],
    )
    .await;
    post(&other, "/v1/messages", replay(&signature)).await;
    assert!(last_chat(&fake)["messages"][1].get("thinking").is_none());
}

#[tokio::test]
async fn tool_use_round_trip_with_calls_on_the_done_line() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let ask = json!({"role": "user", "content": "what's the weather in two cities?"});
    let a = post(
        &p,
        "/v1/messages?beta=true",
        json!({"model": "gpt-oss:20b", "max_tokens": 4096, "stream": true, "tools": [weather_tool()],
               "tool_choice": {"type": "auto"}, "messages": [ask]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let evs = a.events();
    let starts: Vec<&Value> = evs
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(starts.len(), 2, "one block per call: {}", a.body);
    let mut ids = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        assert_eq!(start["index"], i);
        let block = &start["content_block"];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], json!({}));
        let id = block["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("toolu_") && id.len() == 30, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let inputs: Vec<Value> = evs
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(inputs, [json!({"city": "Tokyo"}), json!({"city": "Paris"})]);
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs.last().unwrap().0, "message_stop");

    // Send the results back: ids become tool_call_id, names are looked up.
    let a = post(
        &p,
        "/v1/messages",
        json!({"model": "gpt-oss:20b", "max_tokens": 4096, "tools": [weather_tool()],
               "messages": [
                   ask,
                   {"role": "assistant", "content": [
                       {"type": "tool_use", "id": ids[0], "name": "get_weather", "input": {"city": "Tokyo"}},
                       {"type": "tool_use", "id": ids[1], "name": "get_weather", "input": {"city": "Paris"}}
                   ]},
                   {"role": "user", "content": [
                       {"type": "tool_result", "tool_use_id": ids[0], "content": "sunny"},
                       {"type": "tool_result", "tool_use_id": ids[1], "is_error": true,
                        "content": [{"type": "text", "text": "service down"}]}
                   ]}
               ]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let up = last_chat(&fake);
    let msgs = up["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4, "{up}");
    assert_eq!(msgs[1]["tool_calls"][0]["id"], ids[0].as_str());
    assert_eq!(
        msgs[1]["tool_calls"][1]["function"]["arguments"],
        json!({"city": "Paris"})
    );
    assert_eq!(
        msgs[2],
        json!({"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": ids[0]})
    );
    assert_eq!(msgs[3]["content"], "Error: service down");
    assert_eq!(msgs[3]["tool_call_id"], ids[1].as_str());
    let m = a.json();
    let text = m["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "text")
        .unwrap();
    assert_eq!(text["text"], "Tool said: Error: service down");

    // tool_choice none: the tools never reach Ollama, so no call.
    post(
        &p,
        "/v1/messages",
        json!({"model": "qwen3", "max_tokens": 100, "tools": [weather_tool()],
               "tool_choice": {"type": "none"}, "messages": [{"role": "user", "content": "weather?"}]}),
    )
    .await;
    assert!(last_chat(&fake).get("tools").is_none());
}

/// Claude Code 2.1.332's tools with tool search on: `ToolSearch`, the
/// placeholder, and (once loaded) the deferred tool, each deferred one
/// marked `defer_loading`.
fn tool_search_tools(loaded: bool) -> Value {
    let mut tools = vec![
        json!({"name": "Bash", "description": "Run a command",
               "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}),
        json!({"name": "ToolSearch",
               "description": "Fetches full schema definitions for deferred tools so they can be called.",
               "input_schema": {"type": "object", "properties": {"query": {"type": "string"},
                   "max_results": {"type": "number", "default": 5}}, "required": ["query"]}}),
        json!({"name": "DeferredToolPlaceholder",
               "description": "Reserved placeholder that keeps deferred tool loading active; never call this tool.",
               "input_schema": {"type": "object", "properties": {}}, "defer_loading": true}),
    ];
    if loaded {
        tools.insert(
            1,
            json!({"name": "CronList", "description": "List all cron jobs scheduled via CronCreate.",
                   "input_schema": {"type": "object", "properties": {}}, "defer_loading": true}),
        );
    }
    Value::Array(tools)
}

fn tool_uses(evs: &[(String, Value)]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, data) in evs {
        if name == "content_block_start" && data["content_block"]["type"] == "tool_use" {
            out.push((
                data["content_block"]["name"].as_str().unwrap().to_string(),
                data["content_block"]["id"].clone(),
            ));
        }
    }
    out
}

fn offered(up: &Value) -> Vec<&str> {
    up["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn claude_code_tool_search_loads_a_deferred_tool_then_calls_it() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("DEFAULT_MODEL", "llama3.2")]).await;
    let ask = json!({"role": "user", "content": [{"type": "text", "text": "list my jobs [load:CronList:{}]"}]});
    let body = |loaded: bool, messages: Value| {
        json!({"model": "claude-opus-5-5", "max_tokens": 32000, "stream": true,
               "tools": tool_search_tools(loaded), "messages": messages})
    };

    // 1. Deferred tools are not offered: the model searches.
    let a = post(&p, "/v1/messages?beta=true", body(false, json!([ask]))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let evs = a.events();
    let calls = tool_uses(&evs);
    assert_eq!(calls.len(), 1, "{}", a.body);
    assert_eq!(calls[0].0, "ToolSearch");
    let search_id = calls[0].1.clone();
    let input: Value = evs
        .iter()
        .find_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .map(|s| serde_json::from_str(s).unwrap())
        .unwrap();
    assert_eq!(input, json!({"query": "select:CronList"}));
    let up = last_chat(&fake);
    assert_eq!(offered(&up), ["Bash", "ToolSearch"]);

    // 2. Claude Code answers with a tool_reference (and adds the loaded tool
    // to `tools`): the model reads which tool it got and can call it.
    let searched = json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": search_id, "name": "ToolSearch", "input": input}]});
    let found = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": search_id,
         "content": [{"type": "tool_reference", "tool_name": "CronList"}]},
        {"type": "text", "text": "Tool loaded.", "cache_control": {"type": "ephemeral"}}]});
    let a = post(
        &p,
        "/v1/messages?beta=true",
        body(true, json!([ask, searched, found])),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let calls = tool_uses(&a.events());
    assert_eq!(calls.len(), 1, "{}", a.body);
    assert_eq!(calls[0].0, "CronList");
    let cron_id = calls[0].1.clone();
    let up = last_chat(&fake);
    assert_eq!(offered(&up), ["Bash", "CronList", "ToolSearch"]);
    let msgs = up["messages"].as_array().unwrap();
    assert_eq!(
        msgs[msgs.len() - 2],
        json!({"role": "tool", "tool_name": "ToolSearch", "tool_call_id": search_id,
               "content": "Tool \"CronList\" is now available: List all cron jobs scheduled via CronCreate."})
    );

    // 3. The tool's result, as always.
    let called = json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": cron_id, "name": "CronList", "input": {}}]});
    let result = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": cron_id, "content": "No scheduled jobs."}]});
    let a = post(
        &p,
        "/v1/messages?beta=true",
        body(true, json!([ask, searched, found, called, result])),
    )
    .await;
    let text: String = a
        .events()
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "Tool said: No scheduled jobs.");

    // A deferred tool no tool_reference loaded stays out of reach.
    let unloaded = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": search_id, "content": "CronList: no match"}]});
    let a = post(
        &p,
        "/v1/messages",
        body(true, json!([ask, searched, unloaded])),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(offered(&last_chat(&fake)), ["Bash", "ToolSearch"]);
    let text: String = a
        .events()
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "CronList is not offered");
}

#[tokio::test]
async fn count_tokens_asks_ollama_and_grows_with_the_prompt() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let count = |text: String| {
        json!({"model": "qwen3", "system": "You are helpful.", "tools": [weather_tool()],
               "thinking": {"type": "adaptive"},
               "messages": [{"role": "user", "content": text}]})
    };
    let a = post(
        &p,
        "/v1/messages/count_tokens?beta=true",
        count("hello".into()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let small = a.json()["input_tokens"].as_u64().unwrap();
    assert!(small > 0);
    let up = last_chat(&fake);
    assert_eq!(up["stream"], false);
    assert_eq!(up["options"]["num_predict"], 1);
    assert_eq!(up["tools"][0]["function"]["name"], "get_weather");

    let a = post(&p, "/v1/messages/count_tokens", count("hello ".repeat(500))).await;
    let big = a.json()["input_tokens"].as_u64().unwrap();
    assert!(big > small + 100, "{small} → {big}");

    let a = post(
        &p,
        "/v1/messages/count_tokens",
        json!({"model": "nosuch", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn errors_are_anthropic_shaped() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let msg = |model: &str, content: Value, stream: bool| {
        json!({"model": model, "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": content}]})
    };

    // Unknown model: Ollama's 404 in Anthropic's shape, streaming or not.
    for stream in [false, true] {
        let a = post(&p, "/v1/messages", msg("nosuch", json!("hi"), stream)).await;
        assert_eq!(a.status, 404);
        assert_eq!(a.content_type, "application/json");
        let e = a.json();
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], "not_found_error");
        assert!(e["error"]["message"].as_str().unwrap().contains("nosuch"));
    }

    // Our own 400 names the field; nothing reaches Ollama.
    fake.clear_requests();
    let image = json!([{"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]);
    let a = post(&p, "/v1/messages", msg("qwen3", image, false)).await;
    assert_eq!(a.status, 400);
    let e = a.json();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("messages.0.content.1.source"));
    assert!(fake.requests().is_empty());
    let a = post(
        &p,
        "/v1/messages",
        json!({"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("max_tokens"));
    // A string tool_choice: Anthropic's 400, the field named first.
    for (path, stream) in [("/v1/messages", true), ("/v1/messages/count_tokens", false)] {
        let mut body = msg("qwen3", json!("hi"), stream);
        body["tool_choice"] = json!("auto");
        body["tools"] = json!([weather_tool()]);
        let a = post(&p, path, body).await;
        assert_eq!(a.status, 400, "{path}");
        let e = a.json();
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(
            e["error"]["message"],
            "tool_choice: must be an object, got a string"
        );
    }
    assert!(fake.requests().is_empty());

    // Mid-stream error: an error event, never a clean message_stop.
    let a = post(
        &p,
        "/v1/messages",
        msg("llama3.2", json!("tell me [error]"), true),
    )
    .await;
    assert_eq!(a.status, 200);
    let evs = a.events();
    let (name, data) = evs.last().unwrap();
    assert_eq!(name, "error", "{}", a.body);
    assert_eq!(data["error"]["type"], "api_error");
    assert_eq!(
        data["error"]["message"],
        common::fake_ollama::RUNNER_STOPPED
    );
    assert!(!evs.iter().any(|(n, _)| n == "message_stop"));
    assert!(a.failed.is_none(), "a reported error is a proper end");

    // Dropped connection: an error event too.
    let a = post(
        &p,
        "/v1/messages",
        msg("llama3.2", json!("tell me [drop]"), true),
    )
    .await;
    assert!(
        a.body.contains("event: error"),
        "dropped stream: {}",
        a.body
    );
    assert!(!a.body.contains("message_stop"));
    assert!(a.failed.is_some(), "the body fails after the event");

    // max_tokens reached.
    let a = post(
        &p,
        "/v1/messages",
        msg("llama3.2", json!("a long story [length]"), true),
    )
    .await;
    let evs = a.events();
    assert_eq!(evs[evs.len() - 2].1["delta"]["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn silent_model_gets_pings_then_an_idle_timeout_error() {
    let fake = FakeOllama::start().await;
    let p = proxy(
        &fake,
        &[("KEEPALIVE_SECS", "1"), ("UPSTREAM_IDLE_TIMEOUT", "3")],
    )
    .await;
    let a = post(
        &p,
        "/v1/messages?beta=true",
        json!({"model": "llama3.2", "max_tokens": 100, "stream": true,
               "messages": [{"role": "user", "content": "think hard [stall]"}]}),
    )
    .await;
    assert_eq!(a.status, 200);
    let evs = a.events();
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start");
    let pings = names.iter().filter(|&&n| n == "ping").count();
    assert!(pings >= 1, "{names:?}");
    assert_eq!(*names.last().unwrap(), "error", "{names:?}");
    assert!(!names.contains(&"message_stop"));
}

#[tokio::test]
async fn thinking_reaches_a_client_that_asks_for_it_by_default() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let ask = |thinking: Value| {
        json!({"model": "qwen3", "max_tokens": 100, "stream": true, "thinking": thinking,
               "messages": [{"role": "user", "content": "hello"}]})
    };
    // Claude Code's `adaptive`, and `enabled`: signed thinking blocks.
    for thinking in [
        json!({"type": "adaptive"}),
        json!({"type": "enabled", "budget_tokens": 2048}),
    ] {
        let a = post(&p, "/v1/messages", ask(thinking.clone())).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let evs = a.events();
        let block = &evs[1].1["content_block"];
        assert_eq!(block["type"], "thinking", "{thinking}: {evs:?}");
        let signed = evs
            .iter()
            .any(|(n, d)| n == "content_block_delta" && d["delta"]["type"] == "signature_delta");
        assert!(signed, "{evs:?}");
    }
    // Asked for nothing, or turned off: no thinking block.
    for thinking in [Value::Null, json!({"type": "disabled"})] {
        let a = post(&p, "/v1/messages", ask(thinking.clone())).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(!a.body.contains("\"thinking\""), "{thinking}: {}", a.body);
    }
    // REASONING=drop still drops.
    let p = proxy(&fake, &[("REASONING", "drop")]).await;
    let a = post(
        &p,
        "/v1/messages",
        ask(json!({"type": "enabled", "budget_tokens": 2048})),
    )
    .await;
    assert!(!a.body.contains("thinking_delta"), "{}", a.body);
}
