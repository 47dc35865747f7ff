use super::*;
use crate::dialect::Dialect;
use crate::dialect::Transcode;
use crate::ollama::Decoder;
use serde_json::json;

fn config() -> Config {
    Config {
        thinking_key: signing::derive_key(b"test key"),
        ..Config::default()
    }
}

fn parse_with(config: &Config, body: Value) -> Result<Parsed, ApiError> {
    parse_request(config, body.to_string().as_bytes(), false)
}

fn native_with(config: &Config, body: Value) -> Value {
    let p = parse_with(config, body).unwrap();
    crate::dialect::native::finished(config, p.native)
}

fn native(body: Value) -> Value {
    native_with(&config(), body)
}

fn err(body: Value) -> ApiError {
    match parse_with(&config(), body) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn sig(text: &str) -> String {
    signing::sign(&config().thinking_key, THINKING_PURPOSE, text)
}

#[test]
fn maps_every_block_type() {
    let v = native(json!({
        "model": "qwen3",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief."}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I need the weather.", "signature": sig("I need the weather.")},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Tokyo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "clock broken"},
                             {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "YWJj"}}]},
                {"type": "text", "text": "thanks"}
            ]},
            {"role": "assistant", "content": "You're welcome."},
            {"role": "user", "content": "bye"}
        ]
    }));
    let m = &v["messages"];
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "You are Claude Code.\n\nBe brief."})
    );
    assert_eq!(
        m[1],
        json!({"role": "user", "content": "<system-reminder>x</system-reminder>\n\nWhat is this?\n\nnotes",
               "images": ["iVBORw0KGgo="]})
    );
    assert_eq!(
        m[2],
        json!({"role": "assistant", "content": "Let me check.", "thinking": "I need the weather.",
        "tool_calls": [
            {"id": "toolu_1", "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
            {"id": "toolu_2", "function": {"name": "get_time", "arguments": {}}}
        ]})
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "toolu_1"})
    );
    assert_eq!(
        m[4],
        json!({"role": "tool", "content": "Error: clock broken", "images": ["YWJj"],
               "tool_name": "get_time", "tool_call_id": "toolu_2"})
    );
    assert_eq!(m[5], json!({"role": "user", "content": "thanks"}));
    assert_eq!(
        m[6],
        json!({"role": "assistant", "content": "You're welcome."})
    );
    assert_eq!(m[7], json!({"role": "user", "content": "bye"}));
    assert_eq!(m.as_array().unwrap().len(), 8);
    assert_eq!(v["options"], json!({"num_predict": 32000}));
    assert_eq!(v["stream"], false);
    assert!(v.get("think").is_none());
}

#[test]
fn thinking_blocks_need_our_signature() {
    let text = "The user wants Tokyo.";
    let turn = |signature: Value| {
        let mut block = json!({"type": "thinking", "thinking": text});
        if !signature.is_null() {
            block["signature"] = signature;
        }
        native(json!({
            "model": "qwen3", "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [block, {"type": "text", "text": "Hello"}]},
                {"role": "user", "content": "again"}
            ]
        }))["messages"][1]
            .clone()
    };
    assert_eq!(turn(json!(sig(text)))["thinking"], text);
    let mut tampered = sig(text);
    tampered.replace_range(0..1, if tampered.starts_with('0') { "1" } else { "0" });
    assert!(turn(json!(tampered)).get("thinking").is_none());
    assert!(turn(json!("")).get("thinking").is_none());
    assert!(turn(Value::Null).get("thinking").is_none());
    // A signature made under another key, or for another text, is not ours.
    let other = signing::sign(&signing::derive_key(b"other"), THINKING_PURPOSE, text);
    assert!(turn(json!(other)).get("thinking").is_none());
    let mut block = json!({"type": "thinking", "thinking": "edited", "signature": sig(text)});
    let v = native(json!({"model": "m", "max_tokens": 1, "messages": [
        {"role": "assistant", "content": [block.take()]}]}));
    assert!(v["messages"][0].get("thinking").is_none());
    // Every message still arrives.
    assert_eq!(turn(json!(tampered))["content"], "Hello");
}

#[test]
fn maps_sampling_tools_and_ignores_extras() {
    let v = native(json!({
        "model": "qwen3", "max_tokens": 1024, "stream": true,
        "temperature": 0.5, "top_p": 0.9, "top_k": 20, "stop_sequences": ["END", "STOP"],
        "metadata": {"user_id": "u"}, "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"}, "service_tier": "auto", "container": null,
        "tools": [
            {"name": "Read", "description": "Read a file", "cache_control": {"type": "ephemeral"},
             "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                              "required": ["file_path"], "additionalProperties": false,
                              "$schema": "http://json-schema.org/draft-07/schema#"}},
            {"type": "custom", "name": "NoSchema"},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "messages": [{"role": "user", "content": "hi"}]
    }));
    assert_eq!(
        v["options"],
        json!({"num_predict": 1024, "temperature": 0.5, "top_p": 0.9, "top_k": 20, "stop": ["END", "STOP"]})
    );
    assert_eq!(v["stream"], true);
    assert_eq!(
        v["tools"],
        json!([
            {"type": "function", "function": {"name": "Read", "description": "Read a file",
             "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}},
                            "required": ["file_path"], "additionalProperties": false,
                            "$schema": "http://json-schema.org/draft-07/schema#"}}},
            {"type": "function", "function": {"name": "NoSchema", "parameters": {"type": "object", "properties": {}}}},
            crate::search::function(None)
        ])
    );
    assert!(
        v.get("think").is_none(),
        "adaptive effort only for think-models"
    );

    for choice in [
        json!({"type": "any"}),
        json!({"type": "tool", "name": "Read"}),
    ] {
        let v = native(json!({"model": "m", "max_tokens": 1, "tool_choice": choice,
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            v["tools"].as_array().unwrap().len(),
            1,
            "Ollama cannot force; tools kept"
        );
    }
    let v = native(
        json!({"model": "m", "max_tokens": 1, "tool_choice": {"type": "none"},
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert!(v.get("tools").is_none(), "tool_choice none drops the tools");
}

/// Claude Code 2.1.332's tools with tool search on: loaded deferred tools
/// come with `defer_loading`, and so does a placeholder.
fn tool_search_tools() -> Value {
    json!([
        {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}},
        {"name": "ToolSearch", "description": "Fetches full schema definitions for deferred tools so they can be called.\n\nQuery forms: …",
         "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
        {"name": "CronList", "description": "List all cron jobs scheduled via CronCreate.", "defer_loading": true,
         "input_schema": {"type": "object", "properties": {}}},
        {"name": "WebFetch", "description": "\nFetch a URL.\nMore details", "defer_loading": true,
         "input_schema": {"type": "object", "properties": {"url": {"type": "string"}}}},
        {"name": "DeferredToolPlaceholder", "description": "Reserved placeholder that keeps deferred tool loading active; never call this tool.",
         "defer_loading": true, "input_schema": {"type": "object", "properties": {}}}
    ])
}

fn tool_names(v: &Value) -> Vec<&str> {
    v["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn deferred_tools_wait_for_a_tool_reference() {
    let first = native(json!({
        "model": "m", "max_tokens": 1, "tools": tool_search_tools(),
        "messages": [{"role": "user", "content": "hi"}]
    }));
    assert_eq!(tool_names(&first), ["Bash", "ToolSearch"]);

    let v = native(json!({
        "model": "m", "max_tokens": 1, "tools": tool_search_tools(),
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "select:CronList,Nope,WebFetch"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "tool_reference", "tool_name": "CronList"},
                    {"type": "tool_reference", "tool_name": "Nope", "cache_control": {"type": "ephemeral"}},
                    {"type": "tool_reference", "tool_name": "WebFetch"}
                ]},
                {"type": "text", "text": "Tool loaded."}
            ]}
        ]
    }));
    assert_eq!(
        tool_names(&v),
        ["Bash", "ToolSearch", "CronList", "WebFetch"]
    );
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(
        msgs[2],
        json!({"role": "tool", "tool_name": "ToolSearch", "tool_call_id": "toolu_1", "content":
            "Tool \"CronList\" is now available: List all cron jobs scheduled via CronCreate.\n\n\
             Tool \"Nope\" was found by the search but is not available in this request.\n\n\
             Tool \"WebFetch\" is now available: Fetch a URL."})
    );
    assert_eq!(msgs[3], json!({"role": "user", "content": "Tool loaded."}));

    // A reference in an earlier turn keeps its tool loaded; count_tokens
    // reads the same way.
    let counted = parse_request(
        &config(),
        json!({"model": "m", "tools": tool_search_tools(), "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
              "content": [{"type": "tool_reference", "tool_name": "WebFetch"}]}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "go on"}
        ]})
        .to_string()
        .as_bytes(),
        true,
    )
    .unwrap();
    let names: Vec<&str> = counted
        .native
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect();
    assert_eq!(names, ["Bash", "ToolSearch", "WebFetch"]);
}

#[test]
fn server_tool_search_offers_every_deferred_tool() {
    let mut tools = tool_search_tools();
    tools
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"}));
    let v = native(json!({
        "model": "m", "max_tokens": 1, "tools": tools,
        "messages": [{"role": "user", "content": "hi"}]
    }));
    assert_eq!(
        tool_names(&v),
        [
            "Bash",
            "ToolSearch",
            "CronList",
            "WebFetch",
            "DeferredToolPlaceholder"
        ]
    );
}

#[test]
fn a_tool_reference_needs_a_name() {
    let e = err(
        json!({"model": "m", "max_tokens": 1, "tools": tool_search_tools(), "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
              "content": [{"type": "text", "text": "x"}, {"type": "tool_reference"}]}]}
        ]}),
    );
    assert_eq!(
        e.param.as_deref(),
        Some("messages.0.content.0.content.1.tool_name")
    );
    assert_eq!(e.message, "Field required");
    // Without tools it is still text, never an error.
    let v = native(json!({"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
          "content": [{"type": "tool_reference", "tool_name": "X"}]}]}
    ]}));
    assert!(v.get("tools").is_none());
    assert!(v["messages"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("Tool \"X\" was found"));
}

#[test]
fn thinking_config_maps_to_think() {
    let mut c = config();
    c.think_models.insert(crate::config::model_key("qwen3"));
    let think = |c: &Config, model: &str, extra: Value| {
        let mut body = json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        native_with(c, body).get("think").cloned()
    };
    let plain = config();
    assert_eq!(
        think(
            &plain,
            "m",
            json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})
        ),
        Some(json!("low"))
    );
    assert_eq!(
        think(
            &plain,
            "m",
            json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})
        ),
        Some(json!("medium"))
    );
    assert_eq!(
        think(
            &plain,
            "m",
            json!({"thinking": {"type": "enabled", "budget_tokens": 31999}})
        ),
        Some(json!("high"))
    );
    assert_eq!(
        think(&plain, "m", json!({"thinking": {"type": "enabled"}})),
        Some(json!(true))
    );
    assert_eq!(
        think(&plain, "m", json!({"thinking": {"type": "disabled"}})),
        Some(json!(false))
    );
    assert_eq!(
        think(&c, "qwen3", json!({"thinking": {"type": "disabled"}})),
        Some(json!(false)),
        "client wins over think-models"
    );
    // Adaptive: a level for think-models only; otherwise Ollama decides.
    let adaptive = json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}});
    assert_eq!(think(&plain, "m", adaptive.clone()), None);
    assert_eq!(think(&c, "qwen3", adaptive), Some(json!("high")));
    assert_eq!(
        think(
            &c,
            "qwen3",
            json!({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}})
        ),
        Some(json!("max"))
    );
    assert_eq!(
        think(&c, "qwen3", json!({"thinking": {"type": "adaptive"}})),
        Some(json!(true)),
        "think-models rule"
    );
    assert_eq!(
        think(&plain, "m", json!({"thinking": {"type": "adaptive"}})),
        None
    );
    assert_eq!(think(&plain, "m", json!({})), None);
    assert_eq!(think(&c, "qwen3", json!({})), Some(json!(true)));
}

#[test]
fn model_aliases_and_default_model() {
    let mut c = config();
    c.aliases.insert(
        crate::config::model_key("claude-sonnet-4-5"),
        "glm-5:cloud".into(),
    );
    c.default_model = Some("qwen3:8b".into());
    let model = |c: &Config, name: &str| {
        let p = parse_with(c, json!({"model": name, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})).unwrap();
        (p.native.model, p.client_model)
    };
    assert_eq!(
        model(&c, "claude-sonnet-4-5"),
        ("glm-5:cloud".into(), "claude-sonnet-4-5".into())
    );
    assert_eq!(
        model(&c, "claude-haiku-4-5-20251001"),
        ("qwen3:8b".into(), "claude-haiku-4-5-20251001".into())
    );
    assert_eq!(
        model(&c, "llama3.2"),
        ("llama3.2".into(), "llama3.2".into())
    );
    assert_eq!(
        model(&config(), "claude-opus-4-1"),
        ("claude-opus-4-1".into(), "claude-opus-4-1".into())
    );
}

#[test]
fn invalid_requests_name_the_field() {
    let cases = [
        (
            json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}),
            "messages.0.content",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "tool", "content": "x"}]}),
            "messages.0.role",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}]}),
            "messages.0.content.1.source",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@@"}}]}]}),
            "messages.0.content.0.source.data",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "t", "input": {}}]}]}),
            "messages.0.content.0.name",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]}),
            "messages.0.content.0.input",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "content": "x"}]}]}),
            "messages.0.content.0.tool_use_id",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "system": [{"type": "image"}], "messages": [{"role": "user", "content": "x"}]}),
            "system.0.type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "tools": [{"description": "d"}], "messages": [{"role": "user", "content": "x"}]}),
            "tools.0.name",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "thinking": {"type": "sometimes"}, "messages": [{"role": "user", "content": "x"}]}),
            "thinking.type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}),
            "temperature",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "tool_choice": "auto", "messages": [{"role": "user", "content": "x"}]}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "tool_choice": {"name": "f"}, "messages": [{"role": "user", "content": "x"}]}),
            "tool_choice.type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "tool_choice": {"type": 1}, "messages": [{"role": "user", "content": "x"}]}),
            "tool_choice.type",
        ),
    ];
    for (body, param) in cases {
        let e = err(body.clone());
        assert_eq!(e.status, 400, "{body}");
        assert_eq!(e.param.as_deref(), Some(param), "{body}");
        let rendered: Value = serde_json::from_slice(&error_body(&e)).unwrap();
        assert_eq!(rendered["type"], "error");
        assert_eq!(rendered["error"]["type"], "invalid_request_error");
        assert!(
            rendered["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(param),
            "{rendered}"
        );
    }
    let e = parse_request(&config(), b"{not json", false).err().unwrap();
    assert_eq!(e.status, 400);

    // A string tool_choice, with or without tools, and in count_tokens too.
    for counting in [false, true] {
        let body = json!({"model": "m", "max_tokens": 1, "tool_choice": "none",
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "x"}]});
        let e = parse_request(&config(), body.to_string().as_bytes(), counting)
            .err()
            .unwrap();
        let rendered: Value = serde_json::from_slice(&error_body(&e)).unwrap();
        assert_eq!(
            rendered["error"]["message"],
            "tool_choice: must be an object, got a string"
        );
    }
    let e = err(json!({"model": "m", "max_tokens": 1, "tool_choice": {},
        "messages": [{"role": "user", "content": "x"}]}));
    let rendered: Value = serde_json::from_slice(&error_body(&e)).unwrap();
    assert_eq!(
        rendered["error"]["message"],
        "tool_choice.type: Field required"
    );
    // null is absent.
    native(json!({"model": "m", "max_tokens": 1, "tool_choice": null,
        "messages": [{"role": "user", "content": "x"}]}));
}

#[test]
fn renders_anthropic_errors_by_status() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (529, "overloaded_error"),
    ] {
        let e = ApiError::new(StatusCode::from_u16(status).unwrap(), "boom");
        let v: Value = serde_json::from_slice(&error_body(&e)).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": kind, "message": "boom"}})
        );
    }
}

#[test]
fn count_tokens_asks_for_one_token_without_streaming() {
    let dialect = CountTokens;
    let (parts, _) = http::Request::post("/v1/messages/count_tokens?beta=true")
        .body(())
        .unwrap()
        .into_parts();
    let body = json!({"model": "qwen3", "stream": true, "system": "s",
        "messages": [{"role": "user", "content": "hello"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}]});
    let up = dialect
        .prepare(
            &config(),
            &Shared::default(),
            &parts,
            body.to_string().as_bytes(),
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(up.endpoint.path(), "/api/chat");
    assert_eq!(up.delivery, crate::dialect::Delivery::Document);
    assert_eq!(v["stream"], false);
    assert_eq!(v["options"]["num_predict"], 1);
    assert_eq!(v["tools"].as_array().unwrap().len(), 1);
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    let mut t = up.transcoder;
    assert!(t.whole_body());
    let mut out = BytesMut::new();
    t.line(
        br#"{"model":"qwen3","message":{"role":"assistant","content":"Hi"},"done":true,"done_reason":"length","prompt_eval_count":42,"eval_count":1}"#,
        &mut out,
    );
    assert!(t.finish(&mut out).is_ok());
    assert_eq!(&out[..], br#"{"input_tokens":42}"#);

    let mut t = TokenCounter::default();
    let mut out = BytesMut::new();
    t.line(br#"{"error":"model 'x' not found"}"#, &mut out);
    assert!(t.finish(&mut out).is_err(), "never a made-up count");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["message"], "model 'x' not found");
    let mut t = TokenCounter::default();
    let mut out = BytesMut::new();
    t.line(br#"{"done":true}"#, &mut out);
    assert!(t.finish(&mut out).is_err());
}

// ---- responses -------------------------------------------------------------

/// Runs NDJSON lines through the streaming transcoder; returns the SSE text.
fn stream(lines: &[&str], forward: bool) -> (String, bool) {
    let head = Head::new("claude-sonnet-4-5", config().thinking_key);
    let mut d = Decoder::new(StreamEncoder::new(head), forward);
    let mut out = BytesMut::new();
    for l in lines {
        d.line(l.as_bytes(), &mut out);
    }
    let ok = d.finish(&mut out).is_ok();
    (String::from_utf8(out.to_vec()).unwrap(), ok)
}

/// The SSE text as `event name` + data JSON pairs, with random ids replaced.
fn events(sse: &str) -> Vec<(String, Value)> {
    assert!(
        sse.ends_with("\n\n") || sse.is_empty(),
        "events end with a blank line"
    );
    sse.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_string();
            let mut data: Value =
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name, "event name and type agree");
            if let Some(id) = data.pointer_mut("/message/id") {
                assert!(id.as_str().unwrap().starts_with("msg_"));
                assert_eq!(id.as_str().unwrap().len(), 28);
                *id = json!("msg_X");
            }
            if let Some(id) = data.pointer_mut("/content_block/id") {
                assert!(id.as_str().unwrap().starts_with("toolu_"));
                assert_eq!(id.as_str().unwrap().len(), 30);
                *id = json!("toolu_X");
            }
            (name, data)
        })
        .collect()
}

fn message_start() -> (String, Value) {
    (
        "message_start".into(),
        json!({"type": "message_start", "message": {"id": "msg_X", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}}}),
    )
}

fn ev(name: &str, data: Value) -> (String, Value) {
    (name.into(), data)
}

fn message_end(stop_reason: &str, input: u64, output: u64) -> Vec<(String, Value)> {
    vec![
        ev(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"input_tokens": input, "output_tokens": output}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

#[test]
fn golden_text_stream() {
    let (sse, ok) = stream(
        &[
            r#"{"model":"q","message":{"role":"assistant","content":"Hel"},"done":false}"#,
            r#"{"model":"q","message":{"role":"assistant","content":"lo \"you\""},"done":false}"#,
            r#"{"model":"q","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":3}"#,
        ],
        false,
    );
    assert!(ok);
    let mut want = vec![
        message_start(),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo \"you\""}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
    ];
    want.extend(message_end("end_turn", 12, 3));
    assert_eq!(events(&sse), want);
}

#[test]
fn golden_thinking_stream_is_signed() {
    let lines = [
        r#"{"message":{"role":"assistant","content":"","thinking":"The user "},"done":false}"#,
        r#"{"message":{"role":"assistant","content":"","thinking":"wants a hi."},"done":false}"#,
        r#"{"message":{"role":"assistant","content":"Hi","thinking":""},"done":false}"#,
        r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":9}"#,
    ];
    let (sse, ok) = stream(&lines, true);
    assert!(ok);
    let signature = sig("The user wants a hi.");
    let mut want = vec![
        message_start(),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The user "}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "wants a hi."}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": signature}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
    ];
    want.extend(message_end("end_turn", 5, 9));
    assert_eq!(events(&sse), want);

    // Dropped thinking: no thinking block at all.
    let (sse, _) = stream(&lines, false);
    let evs = events(&sse);
    assert!(!sse.contains("thinking"));
    assert_eq!(evs[1].1["content_block"]["type"], "text");
    assert_eq!(evs[1].1["index"], 0);
}

#[test]
fn golden_tool_calls_on_the_done_line() {
    let (sse, ok) = stream(
        &[
            r#"{"message":{"role":"assistant","content":"Checking."},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_a","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}},{"function":{"index":1,"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":true,"done_reason":"stop","prompt_eval_count":50,"eval_count":20}"#,
        ],
        false,
    );
    assert!(ok);
    let mut want = vec![
        message_start(),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
    ];
    for (i, city) in [(1, "Tokyo"), (2, "Paris")] {
        want.push(ev("content_block_start", json!({"type": "content_block_start", "index": i,
            "content_block": {"type": "tool_use", "id": "toolu_X", "name": "get_weather", "input": {}}})));
        want.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": i,
            "delta": {"type": "input_json_delta", "partial_json": format!("{{\"city\":\"{city}\"}}")}})));
        want.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    want.extend(message_end("tool_use", 50, 20));
    assert_eq!(events(&sse), want);
    // Ids are unique.
    let ids: Vec<&str> = sse
        .match_indices("toolu_")
        .map(|(i, _)| &sse[i..i + 30])
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn golden_length_and_error_streams() {
    let (sse, ok) = stream(
        &[
            r#"{"message":{"role":"assistant","content":"Once upon"},"done":false}"#,
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":4,"eval_count":2}"#,
        ],
        false,
    );
    assert!(ok);
    let evs = events(&sse);
    assert_eq!(
        evs[evs.len() - 2..].to_vec(),
        message_end("max_tokens", 4, 2)
    );

    let (sse, ok) = stream(
        &[
            r#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#,
            r#"{"error":"model runner has unexpectedly stopped"}"#,
        ],
        false,
    );
    assert!(ok, "an error line is a proper, reported end");
    let mut want = vec![
        message_start(),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        ev(
            "error",
            json!({"type": "error", "error": {"type": "api_error", "message": "model runner has unexpectedly stopped"}}),
        ),
    ];
    assert_eq!(events(&sse), want);
    assert!(!sse.contains("message_stop"));

    // A stream cut short: an error event, and the body fails.
    let (sse, ok) = stream(
        &[r#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#],
        false,
    );
    assert!(!ok);
    want.pop();
    want.push(ev("error", json!({"type": "error", "error": {"type": "api_error", "message": "Ollama closed the stream before it finished"}})));
    assert_eq!(events(&sse), want);
}

#[test]
fn pings_keep_a_silent_stream_alive() {
    let head = Head::new("m", config().thinking_key);
    let mut d = Decoder::new(StreamEncoder::new(head), false);
    let mut out = BytesMut::new();
    d.idle(&mut out);
    let evs = events(std::str::from_utf8(&out).unwrap());
    assert_eq!(evs[0].0, "message_start");
    assert_eq!(evs[1], ev("ping", json!({"type": "ping"})));
    // Dropped thinking arrives as heartbeats, which write nothing: the
    // body's keep-alive (tests/keepalive.rs) pings while the model thinks.
    out.clear();
    let beat = br#"{"message":{"role":"assistant","content":"","thinking":"hm"},"done":false}"#;
    d.line(beat, &mut out);
    assert!(out.is_empty());
    d.idle(&mut out);
    assert_eq!(&out[..], PING);
    out.clear();
    // No keep-alives after the end.
    d.line(
        br#"{"message":{"content":""},"done":true,"done_reason":"stop"}"#,
        &mut out,
    );
    out.clear();
    d.idle(&mut out);
    assert!(out.is_empty());
}

#[test]
fn collects_a_message_object() {
    let head = Head::new("claude-haiku", config().thinking_key);
    let mut d = Decoder::new(Collector::new(head), true);
    let mut out = BytesMut::new();
    d.line(
        br#"{"model":"q","message":{"role":"assistant","content":"Let me look.","thinking":"Need weather.","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":true,"done_reason":"stop","prompt_eval_count":30,"eval_count":12}"#,
        &mut out,
    );
    assert!(d.finish(&mut out).is_ok());
    let mut v: Value = serde_json::from_slice(&out).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    let tool_id = v["content"][2]["id"].take();
    assert!(tool_id.as_str().unwrap().starts_with("toolu_"));
    v["id"] = json!("msg_X");
    assert_eq!(
        v,
        json!({
            "id": "msg_X", "type": "message", "role": "assistant", "model": "claude-haiku",
            "content": [
                {"type": "thinking", "thinking": "Need weather.", "signature": sig("Need weather.")},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": null, "name": "get_weather", "input": {"city": "Tokyo"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 12}
        })
    );

    let head = Head::new("m", config().thinking_key);
    let mut d = Decoder::new(Collector::new(head), false);
    let mut out = BytesMut::new();
    d.line(br#"{"message":{"content":"abc"},"done":true,"done_reason":"length","prompt_eval_count":1,"eval_count":3}"#, &mut out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["content"], json!([{"type": "text", "text": "abc"}]));
}

#[test]
fn routes_with_and_without_query() {
    use crate::dialect::route;
    use http::Method;
    assert_eq!(
        route(&Method::POST, "/v1/messages").unwrap().name(),
        "messages"
    );
    assert_eq!(
        route(&Method::POST, "/v1/messages/").unwrap().name(),
        "messages"
    );
    assert_eq!(
        route(&Method::POST, "/v1/messages/count_tokens")
            .unwrap()
            .name(),
        "messages.count_tokens"
    );
    assert!(route(&Method::GET, "/v1/messages").is_none());
}

/// A final line whose prompt count is `u64::MAX`.
const HUGE_COUNTS: &str = r#"{"message":{"role":"assistant","content":"x"},"done":true,"done_reason":"stop","prompt_eval_count":18446744073709551615,"eval_count":5}"#;

#[test]
fn huge_counts_are_reported_as_they_are() {
    // Messages reports no total, so nothing can wrap; the counts reach the
    // client unchanged, streamed and collected.
    let (sse, ok) = stream(&[HUGE_COUNTS], false);
    assert!(ok);
    let ev = events(&sse);
    assert_eq!(
        ev[ev.len() - 2].1["usage"],
        json!({"input_tokens": u64::MAX, "output_tokens": 5})
    );

    let head = Head::new("m", config().thinking_key);
    let mut d = Decoder::new(Collector::new(head), false);
    let mut out = BytesMut::new();
    d.line(HUGE_COUNTS.as_bytes(), &mut out);
    assert!(d.finish(&mut out).is_ok());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["usage"]["input_tokens"], u64::MAX);
    assert_eq!(v["usage"]["output_tokens"], 5);
}

/// Tool-call arguments some models send as a JSON string.
const STRING_ARGUMENTS: &str = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":"{\"city\":\"Tokyo\"}"}}]},"done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":2}"#;

#[test]
fn string_arguments_become_an_input_object() {
    let (sse, ok) = stream(&[STRING_ARGUMENTS], false);
    assert!(ok);
    let ev = events(&sse);
    let partial = ev
        .iter()
        .find_map(|(_, d)| d.pointer("/delta/partial_json"))
        .and_then(Value::as_str)
        .unwrap();
    assert_eq!(partial, r#"{"city":"Tokyo"}"#);
    let input: Value = serde_json::from_str(partial).unwrap();
    assert_eq!(input, json!({"city": "Tokyo"}));

    let head = Head::new("m", config().thinking_key);
    let mut d = Decoder::new(Collector::new(head), false);
    let mut out = BytesMut::new();
    d.line(STRING_ARGUMENTS.as_bytes(), &mut out);
    assert!(d.finish(&mut out).is_ok());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["input"], json!({"city": "Tokyo"}));
}
