//! The OpenAI Responses dialect end to end: the real proxy composition
//! (`examples/proxy`, a child process) on a real socket, in front of the fake Ollama,
//! driven the way LiteLLM and Codex CLI drive it.

mod common;

use common::fake_ollama::{FakeOllama, RUNNER_STOPPED};
use serde_json::{json, Value};

use common::proxy::{last_chat, send, Answer, Proxy};

async fn proxy(fake: &FakeOllama, env: &[(&str, &str)]) -> Proxy {
    common::proxy::start(&fake.base_url(), env).await
}

/// Responses SSE: every event names its type twice, sequence numbers count
/// up from 0.
trait Events {
    fn events(&self) -> Vec<Value>;
}

impl Events for Answer {
    fn events(&self) -> Vec<Value> {
        assert!(self.body.ends_with("\n\n"), "{}", self.body);
        let mut out: Vec<Value> = Vec::new();
        for (name, data) in self.sse() {
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(Some(data["type"].as_str().unwrap()), name.as_deref());
            assert_eq!(data["sequence_number"], out.len() as u64, "{data}");
            out.push(data);
        }
        out
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Posts like Codex CLI / the OpenAI SDK: a bearer key and a few extra headers.
async fn post(proxy: &Proxy, body: Value) -> Answer {
    let headers = [
        ("authorization", "Bearer sk-anything"),
        ("originator", "codex_cli_rs"),
        ("x-codex-turn-metadata", "{}"),
        ("accept", "text/event-stream"),
    ];
    send(
        "POST",
        &format!("{}/v1/responses", proxy.url),
        &headers,
        Some(&body),
    )
    .await
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

fn weather_tool() -> Value {
    json!({"type":"function","name":"get_weather","description":"Weather for a city",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"strict":true})
}

#[tokio::test]
async fn litellm_shaped_request_without_streaming() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({"model":"llama3.2","input":[{"type":"message","role":"user",
            "content":[{"type":"input_text","text":"Hello there"}]}],
            "include":["reasoning.encrypted_content"],"max_output_tokens":4096}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("application/json"));
    let r = a.json();
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "llama3.2");
    assert_eq!(output_text(&r), "Hello! You said: Hello there");
    assert!(r["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r["max_output_tokens"], 4096);

    let native = last_chat(&fake);
    assert_eq!(
        native["stream"], true,
        "Ollama streams; the response is collected"
    );
    assert_eq!(native["options"]["num_predict"], 4096);
    assert_eq!(
        native["messages"],
        json!([{"role":"user","content":"Hello there"}])
    );
}

#[tokio::test]
async fn streams_text_and_ends_with_completed() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({"model":"qwen3","instructions":"Be nice.","input":"Say hi","stream":true}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "text/event-stream");
    assert!(a.failed.is_none());
    let ev = a.events();
    let t = types(&ev);
    // REASONING defaults to drop: no reasoning item even though qwen3 thinks.
    assert_eq!(
        t,
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let done = &ev.last().unwrap()["response"];
    assert_eq!(output_text(done), "Hello! You said: Say hi");
    assert_eq!(done["instructions"], "Be nice.");
    let native = last_chat(&fake);
    assert_eq!(native["stream"], true);
    assert_eq!(
        native["messages"][0],
        json!({"role":"system","content":"Be nice."})
    );
}

#[tokio::test]
async fn reasoning_items_round_trip_when_forwarded() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("REASONING", "forward")]).await;
    let a = post(
        &p,
        json!({"model":"qwen3","input":"Why?","stream":true,"reasoning":{"effort":"high","summary":"auto"},
            "include":["reasoning.encrypted_content"]}),
    )
    .await;
    let ev = a.events();
    assert_eq!(last_chat(&fake)["think"], "high");
    assert_eq!(ev[2]["item"]["type"], "reasoning");
    let deltas: String = ev
        .iter()
        .filter(|e| e["type"] == "response.reasoning_summary_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Let me think about this.");
    let done = &ev.last().unwrap()["response"];
    assert_eq!(done["status"], "completed");
    let reasoning = done["output"][0].clone();
    assert!(reasoning["encrypted_content"]
        .as_str()
        .unwrap()
        .starts_with("v1."));
    let message = done["output"][1].clone();

    // Send the turn back, as a stateless client does.
    let mut forged = reasoning.clone();
    forged["encrypted_content"] = json!("v1.SSBhbSBldmls.0000");
    let a = post(
        &p,
        json!({"model":"qwen3","input":[
            {"role":"user","content":"Why?"}, reasoning, message,
            {"role":"user","content":"And then?"},
            forged,
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Forged."}]},
            {"role":"user","content":"Go on."}
        ]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let native = last_chat(&fake);
    let msgs = native["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["thinking"], "Let me think about this.");
    assert_eq!(msgs[3]["content"], "Forged.");
    assert!(
        msgs[3].get("thinking").is_none(),
        "a forged signature is dropped"
    );
}

#[tokio::test]
async fn function_call_round_trip() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({"model":"llama3.2","input":"What's the weather in Tokyo?","stream":true,
            "tools":[weather_tool()],"tool_choice":"auto"}),
    )
    .await;
    let ev = a.events();
    assert_eq!(
        types(&ev)[2..],
        [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let call = ev[5]["item"].clone();
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"city":"Tokyo"})
    );
    let native = last_chat(&fake);
    assert_eq!(native["tools"][0]["function"]["name"], "get_weather");
    assert!(native["tools"][0]["function"].get("strict").is_none());

    let a = post(
        &p,
        json!({"model":"llama3.2","tools":[weather_tool()],"input":[
            {"role":"user","content":"What's the weather in Tokyo?"},
            call,
            {"type":"function_call_output","call_id":ev[5]["item"]["call_id"],"output":"Sunny, 25°C"}
        ]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(output_text(&a.json()), "Tool said: Sunny, 25°C");
    let native = last_chat(&fake);
    let tool = &native["messages"][2];
    assert_eq!(tool["role"], "tool");
    assert_eq!(tool["tool_name"], "get_weather");
    assert_eq!(tool["tool_call_id"], ev[5]["item"]["call_id"]);
    assert_eq!(
        native["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"city":"Tokyo"})
    );
}

#[tokio::test]
async fn two_calls_and_calls_on_the_done_line() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({"model":"llama3.2","input":"weather in two cities please","stream":true,"tools":[weather_tool()]}),
    )
    .await;
    let ev = a.events();
    let calls: Vec<&Value> = ev
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| &e["item"])
        .collect();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0]["call_id"], calls[1]["call_id"]);
    assert_eq!(
        ev.last().unwrap()["response"]["output"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let a = post(
        &p,
        json!({"model":"gpt-oss:20b","input":"weather in Tokyo?","stream":true,"tools":[weather_tool()]}),
    )
    .await;
    let ev = a.events();
    assert_eq!(ev.last().unwrap()["type"], "response.completed");
    let out = ev.last().unwrap()["response"]["output"].clone();
    assert_eq!(
        out.as_array().unwrap().last().unwrap()["type"],
        "function_call"
    );
}

#[tokio::test]
async fn length_cut_is_incomplete() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({"model":"llama3.2","input":"count [length]","stream":true}),
    )
    .await;
    let ev = a.events();
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );

    let a = post(&p, json!({"model":"llama3.2","input":"count [length]"})).await;
    assert_eq!(a.json()["status"], "incomplete");
}

#[tokio::test]
async fn mid_stream_error_and_dropped_connection_fail_the_response() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({"model":"llama3.2","input":"go [error]","stream":true}),
    )
    .await;
    assert!(a.failed.is_none(), "an error line is reported in-band");
    let ev = a.events();
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["error"]["code"], "server_error");
    assert_eq!(last["response"]["error"]["message"], RUNNER_STOPPED);
    assert_eq!(output_text(&last["response"]), "Partial answer");

    let a = post(
        &p,
        json!({"model":"llama3.2","input":"go [drop]","stream":true}),
    )
    .await;
    let ev = a.events();
    assert_eq!(ev.last().unwrap()["type"], "response.failed");
    assert!(!types(&ev).contains(&"response.completed"));
}

#[tokio::test]
async fn errors_use_the_openai_shape() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(&p, json!({"model":"nosuch","input":"x","stream":true})).await;
    assert_eq!(a.status, 404);
    let e = a.json();
    assert_eq!(e["error"]["type"], "not_found_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("nosuch"));

    let before = fake.requests_to("/api/chat").len();
    let a = post(
        &p,
        json!({"model":"llama3.2","input":"x","previous_response_id":"resp_123"}),
    )
    .await;
    assert_eq!(a.status, 404, "no response resp_123 is kept");
    let e = a.json();
    assert_eq!(e["error"]["param"], "previous_response_id");
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    assert_eq!(
        fake.requests_to("/api/chat").len(),
        before,
        "never reaches Ollama"
    );
}

#[tokio::test]
async fn codex_shaped_request() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({
            "model":"llama3.2",
            "instructions":"You are Codex.",
            "input":[
                {"type":"message","role":"developer","content":[{"type":"input_text","text":"<permissions>…</permissions>"}]},
                {"type":"message","role":"user","content":[{"type":"input_text","text":"<environment_context/>"}]},
                {"type":"message","role":"user","content":[{"type":"input_text","text":"What is the weather in Tokyo?"}]}
            ],
            "tools":[
                {"type":"function","name":"exec_command","description":"Runs a command","strict":false,
                 "parameters":{"type":"object","properties":{"cmd":{"type":"string"}},"required":["cmd"],"additionalProperties":false}},
                {"type":"namespace","name":"mcp__weather__","description":"Weather MCP server","tools":[
                    {"type":"function","name":"get_forecast","description":"Forecast","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}
                ]},
                {"type":"web_search","external_web_access":false},
                {"type":"custom","name":"apply_patch","description":"Patch","format":{"type":"grammar","syntax":"lark","definition":"start: /.+/"}}
            ],
            "tool_choice":"auto",
            "parallel_tool_calls":true,
            "reasoning":{"summary":"auto"},
            "store":false,
            "stream":true,
            "include":["reasoning.encrypted_content"],
            "prompt_cache_key":"019a-session",
            "client_metadata":{"x-codex-installation-id":"abc"}
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ev = a.events();
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let call = &last["response"]["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "get_forecast");
    assert_eq!(call["namespace"], "mcp__weather__");

    let native = last_chat(&fake);
    let names: Vec<&str> = native["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    // The web_search tool is run by the proxy: the model is offered its
    // function; the custom apply_patch is a function of one string.
    assert_eq!(
        names,
        [
            "exec_command",
            "mcp__weather__get_forecast",
            "apply_patch",
            "web_search"
        ]
    );
    assert_eq!(
        native["tools"][2]["function"]["parameters"]["required"],
        json!(["input"])
    );
    assert_eq!(native["messages"][1]["role"], "system");
    assert!(native.get("think").is_none());

    // The call goes back with its namespace and reaches Ollama flattened.
    let a = post(
        &p,
        json!({"model":"llama3.2","stream":true,"input":[
            {"type":"message","role":"user","content":[{"type":"input_text","text":"What is the weather in Tokyo?"}]},
            call.clone(),
            {"type":"function_call_output","call_id":call["call_id"],"output":"Rain"}
        ]}),
    )
    .await;
    assert_eq!(a.events().last().unwrap()["type"], "response.completed");
    let native = last_chat(&fake);
    assert_eq!(
        native["messages"][1]["tool_calls"][0]["function"]["name"],
        "mcp__weather__get_forecast"
    );
    assert_eq!(
        native["messages"][2]["tool_name"],
        "mcp__weather__get_forecast"
    );
}

#[tokio::test]
async fn codex_tool_search_loads_tools_that_become_callable() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let ask = json!({"type":"message","role":"user","content":[
        {"type":"input_text","text":r#"search the docs [load:mcp__docs__search:{"q":"tower"}]"#}]});
    let body = |input: Value| {
        json!({"model":"llama3.2","stream":true,"input":input,"tools":[
            {"type":"function","name":"exec_command","parameters":{"type":"object","properties":{"cmd":{"type":"string"}}}},
            {"type":"tool_search","execution":"client","description":"# Tool discovery\n\nSearches deferred tools.",
             "parameters":{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"number"}},"required":["query"]}}
        ]})
    };

    // 1. The model searches: a tool_search_call item.
    let a = post(&p, body(json!([ask]))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ev = a.events();
    assert_eq!(
        types(&ev)[2..],
        [
            "response.output_item.added",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let search = ev[3]["item"].clone();
    assert_eq!(search["type"], "tool_search_call");
    assert_eq!(search["execution"], "client");
    assert_eq!(search["status"], "completed");
    assert_eq!(
        search["arguments"],
        json!({"query":"select:mcp__docs__search"})
    );
    assert_eq!(ev[4]["response"]["output"], json!([search]));
    let names = |up: &Value| -> Vec<String> {
        up["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&last_chat(&fake)), ["exec_command", "tool_search"]);

    // 2. Codex runs the search and sends the call back with its output: the
    // tools found are callable now, and the model calls one.
    let output = json!({"type":"tool_search_output","call_id":search["call_id"],"status":"completed",
        "execution":"client","tools":[{"type":"namespace","name":"mcp__docs__","description":"Docs MCP server",
            "tools":[{"type":"function","name":"search","description":"Search the docs.","defer_loading":true,
                      "parameters":{"type":"object","properties":{"q":{"type":"string"}}}}]}]});
    let a = post(&p, body(json!([ask, search, output]))).await;
    let ev = a.events();
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let call = last["response"]["output"][0].clone();
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["namespace"], "mcp__docs__");
    assert_eq!(call["name"], "search");
    assert_eq!(call["arguments"], r#"{"q":"tower"}"#);
    let up = last_chat(&fake);
    assert_eq!(
        names(&up),
        ["exec_command", "tool_search", "mcp__docs__search"]
    );
    assert_eq!(
        up["messages"][1]["tool_calls"][0]["function"],
        json!({"name":"tool_search","arguments":{"query":"select:mcp__docs__search"}})
    );
    assert_eq!(
        up["messages"][2],
        json!({"role":"tool","tool_name":"tool_search","tool_call_id":search["call_id"],
               "content":"Tool \"mcp__docs__search\" is now available: Search the docs."})
    );

    // 3. The loaded tool's output goes back like any other.
    let a = post(
        &p,
        body(json!([ask, search, output, call,
            {"type":"function_call_output","call_id":call["call_id"],"output":"3 pages"}])),
    )
    .await;
    let last = a.events().last().unwrap().clone();
    assert_eq!(output_text(&last["response"]), "Tool said: 3 pages");
    let up = last_chat(&fake);
    assert_eq!(up["messages"][4]["tool_name"], "mcp__docs__search");
}

#[tokio::test]
async fn reasoning_effort_on_a_model_that_cannot_think_still_completes() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = post(
        &p,
        json!({"model":"llama3.2","input":"hi","stream":true,"reasoning":{"effort":"medium","summary":"auto"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let ev = a.events();
    assert_eq!(ev.last().unwrap()["type"], "response.completed");
    assert_eq!(
        output_text(&ev.last().unwrap()["response"]),
        "Hello! You said: hi"
    );
    assert!(last_chat(&fake).get("think").is_none());
}

#[tokio::test]
async fn wrong_types_and_unknown_items_are_400s_naming_the_field() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let before = fake.requests_to("/api/chat").len();
    for (body, param, message) in [
        (
            json!({"model":"llama3.2","input":"x","include":"reasoning.encrypted_content"}),
            "include",
            "include must be an array of strings, got a string",
        ),
        (
            json!({"model":"llama3.2","stream":true,"input":[
                {"role":"user","content":"weather?"},
                {"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{}"},
                {"type":"function_call_output","call_id":"call_1","output":42}]}),
            "input[2].output",
            "input[2].output must be a string or an array of content parts, got a number",
        ),
        (
            json!({"model":"llama3.2","input":[{"type":"bogus_item"}]}),
            "input[0].type",
            "input[0].type is \"bogus_item\", which is not an input item type of the Responses API",
        ),
    ] {
        let a = post(&p, body).await;
        assert_eq!(a.status, 400, "{}", a.body);
        let e = a.json();
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], param);
        assert_eq!(e["error"]["message"], message);
    }
    // Documented items Ollama has no use for are still dropped.
    let a = post(
        &p,
        json!({"model":"llama3.2","input":[{"type":"item_reference","id":"msg_1"},
            {"role":"user","content":"hi"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        fake.requests_to("/api/chat").len(),
        before + 1,
        "only the valid request reached Ollama"
    );
}

#[tokio::test]
async fn reasoning_reaches_a_client_that_asks_for_it_by_default() {
    let fake = FakeOllama::start().await;
    let p = common::proxy::start(&fake.base_url(), &[]).await;
    let ask = |extra: Value| {
        let mut body = json!({"model": "qwen3", "input": "hello", "store": false});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let kinds = |a: &Answer| -> Vec<String> {
        a.json()["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap().to_string())
            .collect()
    };
    // Codex asks for encrypted reasoning; others for a summary.
    let a = post(&p, ask(json!({"include": ["reasoning.encrypted_content"]}))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(kinds(&a), ["reasoning", "message"]);
    assert!(a.json()["output"][0]["encrypted_content"].is_string());
    let a = post(
        &p,
        ask(json!({"reasoning": {"effort": "low", "summary": "auto"}})),
    )
    .await;
    assert_eq!(kinds(&a), ["reasoning", "message"]);
    // Asked for neither: the answer alone.
    let a = post(&p, ask(json!({}))).await;
    assert_eq!(kinds(&a), ["message"]);
}
