use super::*;
use crate::dialect::Transcode;
use crate::ollama::tests::Recorder;
use crate::ollama::Decoder;
use serde_json::json;

fn parse(body: Value) -> Result<Parsed, ApiError> {
    parse_request(&Config::default(), body.to_string().as_bytes())
}

fn native(body: Value) -> Value {
    let p = parse(body).unwrap();
    crate::dialect::native::finished(&Config::default(), p.native)
}

#[test]
fn maps_every_message_kind() {
    let v = native(json!({
        "model": "qwen3",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "reasoning_content": "I need the weather.",
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}},
                            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "thanks", "name": "bob"}
        ]
    }));
    let m = &v["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(m[1], json!({"role": "system", "content": "A\nB"}));
    assert_eq!(m[2]["images"], json!(["iVBORw0KGgo="]));
    assert_eq!(m[2]["content"], "What is this?");
    assert_eq!(m[3]["thinking"], "I need the weather.");
    assert_eq!(m[3]["content"], "");
    assert_eq!(
        m[3]["tool_calls"],
        json!([
            {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
            {"id": "call_2", "function": {"name": "get_time", "arguments": {}}}
        ])
    );
    assert_eq!(
        m[4],
        json!({"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_1"})
    );
    assert_eq!(m[5]["tool_name"], "get_time");
    assert_eq!(m[5]["content"], "noon");
    assert_eq!(m[6], json!({"role": "user", "content": "thanks"}));
    assert_eq!(v["stream"], false, "stream is explicit even when absent");
    assert!(v.get("options").is_none(), "no invented options");
    assert!(v.get("think").is_none());
}

#[test]
fn maps_sampling_and_native_extras() {
    let v = native(json!({
        "model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.3, "top_p": 0.9,
        "seed": 7, "stop": "END", "presence_penalty": 0.1, "frequency_penalty": 0.2,
        "top_k": 40, "num_ctx": 8192, "keep_alive": "1h", "options": {"min_p": 0.05, "num_ctx": 1},
        "response_format": {"type": "json_object"}, "think": "high",
        "n": 1, "user": "u", "metadata": {"a": "b"}, "store": false, "parallel_tool_calls": true
    }));
    assert_eq!(
        v["options"],
        json!({"num_predict": 20, "temperature": 0.3, "top_p": 0.9, "seed": 7, "stop": ["END"],
               "presence_penalty": 0.1, "frequency_penalty": 0.2, "top_k": 40, "num_ctx": 8192, "min_p": 0.05})
    );
    assert_eq!(v["keep_alive"], "1h");
    assert_eq!(v["format"], "json");
    assert_eq!(v["think"], "high");
    assert_eq!(v["stream"], true);
}

#[test]
fn maps_reasoning_effort_and_json_schema() {
    let v = native(json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": "none",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    }));
    assert_eq!(v["think"], false);
    assert_eq!(v["format"], json!({"type": "object"}));
    let v = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": {"effort": "minimal", "summary": "auto"}}),
    );
    assert_eq!(v["think"], "low");
    let v = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": "low", "reasoning": {"effort": "high"}}),
    );
    assert_eq!(
        v["think"], "high",
        "reasoning.effort wins, as in Ollama's layer"
    );
}

#[test]
fn tools_pass_through_and_tool_choice_none_drops_them() {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "d", "strict": true,
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}},
        {"type": "custom", "custom": {"name": "x"}}
    ]);
    let v = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}),
    );
    assert_eq!(
        v["tools"].as_array().unwrap().len(),
        1,
        "non-function tools dropped"
    );
    assert_eq!(
        v["tools"][0]["function"]["parameters"]["additionalProperties"],
        false
    );
    assert!(v["tools"][0]["function"].get("strict").is_none());
    let v = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": "none"}),
    );
    assert!(v.get("tools").is_none());
    let v = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "functions": [{"name": "f", "parameters": {"type": "object"}}]}),
    );
    assert_eq!(v["tools"][0]["function"]["name"], "f");
}

#[test]
fn rejects_bad_input_naming_the_parameter() {
    let cases = [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
        (json!({"model": "m"}), "messages"),
        (json!({"model": "m", "messages": []}), "messages"),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}),
            "n",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": [1]}),
            "stop",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "lots"}),
            "reasoning_effort",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"1": 2}}),
            "logit_bias",
        ),
        (
            json!({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}),
            "messages[0].content[0].image_url",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]}),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": "x"}]}),
            "messages[1].tool_calls",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "functions": "x"}),
            "functions",
        ),
        (
            // Checked even when `tools` makes `functions` unused.
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "functions": {}}),
            "functions",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream_options": "x"}),
            "stream_options",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true,
            "stream_options": {"include_usage": "yes"}}),
            "stream_options.include_usage",
        ),
    ];
    for (body, param) in cases {
        let err = parse(body.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(err.status, 400, "{body}");
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
    }
    let err = parse(json!({"model": "m", "messages": [{"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]}))
    .err()
    .unwrap();
    assert!(err.message.contains("message 1"), "{}", err.message);
    for (body, message) in [
        (
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": "x"}]}),
            "messages[0].tool_calls must be an array, got a string",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "functions": "x"}),
            "functions must be an array, got a string",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream_options": "x"}),
            "stream_options must be an object, got a string",
        ),
    ] {
        assert_eq!(parse(body).err().unwrap().message, message);
    }
    // null is absent, as everywhere.
    assert!(parse(json!({"model": "m", "messages": [{"role": "assistant", "content": "a", "tool_calls": null}],
        "functions": null, "stream_options": null}))
    .is_ok());
    let err = parse_request(&Config::default(), b"{not json")
        .err()
        .unwrap();
    assert_eq!(err.status, 400);
}

#[test]
fn aliases_resolve_but_responses_keep_the_client_name() {
    let mut config = Config::default();
    config
        .aliases
        .insert(crate::config::model_key("gpt-4o"), "qwen3:8b".into());
    let p = parse_request(
        &config,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(p.native.model, "qwen3:8b");
    assert_eq!(p.client_model, "gpt-4o");
}

const TEXT_STREAM: &str = concat!(
    r#"{"model":"qwen3","message":{"role":"assistant","content":"","thinking":"Hmm."},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","message":{"role":"assistant","content":"Hello"},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","message":{"role":"assistant","content":" world"},"done":false}"#,
    "\n",
    r#"{"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":5}"#,
    "\n",
);

/// Runs NDJSON through a transcoder line by line; returns the SSE data payloads.
fn run_stream(t: &mut dyn Transcode, ndjson: &str) -> (Vec<String>, bool) {
    let mut out = BytesMut::new();
    for line in ndjson.lines() {
        t.line(line.as_bytes(), &mut out);
    }
    let ok = t.finish(&mut out).is_ok();
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        text.ends_with("\n\n") || text.is_empty(),
        "events end with a blank line"
    );
    let events = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data: prefix").to_string())
        .collect();
    (events, ok)
}

fn stream_encoder(include_usage: bool, forward: bool) -> Decoder<StreamEncoder> {
    Decoder::new(
        StreamEncoder::new(Head::new("chatcmpl-", "gpt-4o"), include_usage),
        forward,
    )
}

#[test]
fn streams_text_with_role_first_usage_and_done() {
    let (events, ok) = run_stream(&mut stream_encoder(true, false), TEXT_STREAM);
    assert!(ok);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id, "one id per response");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o", "the client's model name");
        assert_eq!(c["created"], chunks[0]["created"]);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"content": "Hello"})
    );
    assert_eq!(
        chunks[2]["choices"][0]["delta"],
        json!({"content": " world"})
    );
    assert_eq!(chunks[3]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"],
        json!({"prompt_tokens": 26, "completion_tokens": 5, "total_tokens": 31})
    );
    assert_eq!(chunks.len(), 5, "thinking dropped by default");
}

#[test]
fn forwards_reasoning_as_reasoning_content() {
    let (events, _) = run_stream(&mut stream_encoder(false, true), TEXT_STREAM);
    let c: Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(
        c["choices"][0]["delta"],
        json!({"reasoning_content": "Hmm."})
    );
    assert!(
        !events.iter().any(|e| e.contains("\"usage\"")),
        "no usage chunk unless asked"
    );
}

#[test]
fn streams_each_tool_call_in_two_chunks_with_our_own_indices() {
    let ndjson = concat!(
        r#"{"message":{"role":"assistant","content":"Let me check."},"done":false}"#,
        "\n",
        r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_aaaa1111","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}},{"function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}"#,
        "\n",
        r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_bbbb2222","function":{"index":0,"name":"get_time","arguments":{}}}]},"done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":2}"#,
        "\n",
    );
    let (events, ok) = run_stream(&mut stream_encoder(false, false), ndjson);
    assert!(ok);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 6, "two chunks per call");
    for (i, pair) in calls.chunks(2).enumerate() {
        let (a, b) = (&pair[0][0], &pair[1][0]);
        assert_eq!(pair[0].as_array().unwrap().len(), 1, "one call per chunk");
        assert_eq!(a["index"], i);
        assert_eq!(b["index"], i);
        assert_eq!(a["type"], "function");
        assert_eq!(a["function"]["arguments"], "");
        assert!(a["id"].as_str().unwrap().starts_with("call_"));
        assert!(b.get("id").is_none() && b["function"].get("name").is_none());
        let args: Value =
            serde_json::from_str(b["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args.is_object());
    }
    assert_eq!(calls[0][0]["id"], "call_aaaa1111", "Ollama's id kept");
    assert_ne!(calls[2][0]["id"], calls[0][0]["id"], "missing id generated");
    assert_eq!(calls[4][0]["function"]["name"], "get_time");
    assert_eq!(calls[3][0]["function"]["arguments"], r#"{"city":"Paris"}"#);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[test]
fn length_and_errors() {
    let ndjson = concat!(
        r#"{"message":{"role":"assistant","content":"Ray"},"done":false}"#,
        "\n",
        r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","eval_count":1}"#,
        "\n",
    );
    let (events, _) = run_stream(&mut stream_encoder(false, false), ndjson);
    let finish: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");

    let ndjson = concat!(
        r#"{"message":{"role":"assistant","content":"Partial"},"done":false}"#,
        "\n",
        r#"{"error":"model runner has unexpectedly stopped"}"#,
        "\n",
    );
    let (events, ok) = run_stream(&mut stream_encoder(true, false), ndjson);
    assert!(ok, "an upstream error line is reported in-band");
    assert_ne!(events.last().unwrap(), "[DONE]", "no [DONE] after an error");
    let err: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(
        err["error"]["message"],
        "model runner has unexpectedly stopped"
    );
    assert_eq!(err["error"]["type"], "api_error");

    let (events, ok) = run_stream(
        &mut stream_encoder(false, false),
        r#"{"message":{"role":"assistant","content":"cut"},"done":false}"#,
    );
    assert!(!ok, "a stream without its final line is an abnormal end");
    assert!(events
        .last()
        .unwrap()
        .contains("closed the stream before it finished"));
}

#[test]
fn collects_a_completion() {
    let mut t = Decoder::new(Collector::new(Head::new("chatcmpl-", "m")), true);
    let mut out = BytesMut::new();
    t.line(
        br#"{"model":"m","message":{"role":"assistant","content":"Hi","thinking":"t","tool_calls":[{"id":"call_1","function":{"index":0,"name":"f","arguments":{"x":1}}}]},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":4}"#,
        &mut out,
    );
    assert!(t.finish(&mut out).is_ok());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hi");
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "t");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"x":1}"#
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["total_tokens"], 7);
}

#[test]
fn recorder_is_usable_from_dialect_tests() {
    // Keeps the shared test encoder exercised from this module too.
    let mut d = Decoder::new(Recorder::default(), false);
    let mut out = BytesMut::new();
    d.line(br#"{"message":{"content":"x"},"done":false}"#, &mut out);
    assert_eq!(d.encoder().0, vec!["text:x"]);
}

/// A final line whose prompt count is `u64::MAX` (Ollama's numbers are
/// trusted as far as their sum goes, no further).
const HUGE_COUNTS: &str = r#"{"message":{"role":"assistant","content":"x"},"done":true,"done_reason":"stop","prompt_eval_count":18446744073709551615,"eval_count":5}"#;

#[test]
fn usage_totals_saturate_streamed_and_collected() {
    let (events, ok) = run_stream(&mut stream_encoder(true, false), HUGE_COUNTS);
    assert!(ok);
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": u64::MAX, "completion_tokens": 5, "total_tokens": u64::MAX})
    );

    let mut t = Decoder::new(Collector::new(Head::new("chatcmpl-", "m")), false);
    let mut out = BytesMut::new();
    t.line(HUGE_COUNTS.as_bytes(), &mut out);
    assert!(t.finish(&mut out).is_ok());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["usage"]["total_tokens"], u64::MAX);
}

/// Tool-call arguments some models send as a JSON string.
const STRING_ARGUMENTS: &str = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}]},"done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":2}"#;

#[test]
fn string_arguments_are_not_encoded_twice() {
    let (events, ok) = run_stream(&mut stream_encoder(false, false), STRING_ARGUMENTS);
    assert!(ok);
    let calls: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls").cloned())
        .collect();
    assert_eq!(calls[1][0]["function"]["arguments"], r#"{"city":"Tokyo"}"#);

    let mut t = Decoder::new(Collector::new(Head::new("chatcmpl-", "m")), false);
    let mut out = BytesMut::new();
    t.line(STRING_ARGUMENTS.as_bytes(), &mut out);
    assert!(t.finish(&mut out).is_ok());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Tokyo"}"#
    );
}
