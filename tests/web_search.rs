//! Web search for the Anthropic Messages dialect (issue 19), end to end: the
//! proxy (`examples/proxy`, a child process) on a real socket runs the
//! `web_search_*` server tool through the fake Ollama's
//! `/api/experimental/web_search` (scripted by the query: `nothing`,
//! `unavailable`, `ratelimited`, `unsupported`, `slow`) while the fake's model
//! searches (`[search:…]`, `[searches:N:…]`) and then answers from the tool
//! message (`Tool said: …`). The fake streams with its default, awkward
//! framing throughout (the proxy does not forward `x-fake-chunking`).
//!
//! The last tests run the layer in-process with a search backend of their
//! own: deadlines, bounds, and search turned off.

mod common;

use bytes::Bytes;
use common::fake_ollama::{FakeOllama, SERVER_BUSY, THINKING_TOKENS};
use common::proxy::{sample, send, Answer, Proxy};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ollama_translate::search::{SearchFuture, SearchHit, SearchRequest, WebSearchConfig};
use ollama_translate::{BoxError, OllamaTranslateLayer, RequestBody};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::{Layer, ServiceExt};

const SEARCH: &str = "/api/experimental/web_search";
const CHAT: &str = "/api/chat";

async fn proxy(fake: &FakeOllama, env: &[(&str, &str)]) -> Proxy {
    common::proxy::start(&fake.base_url(), env).await
}

/// Posts to `/v1/messages` at `base` as an Anthropic client does.
async fn post(base: &str, body: &Value) -> Answer {
    let headers = [
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-ant-anything"),
    ];
    send("POST", &format!("{base}/v1/messages"), &headers, Some(body)).await
}

/// Every SSE event, pings included: its name and its data (whose `type`
/// is the name).
fn events(a: &Answer) -> Vec<(String, Value)> {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/event-stream");
    assert!(a.body.ends_with("\n\n"), "{}", a.body);
    a.sse()
        .into_iter()
        .map(|(name, data)| {
            let name = name.expect("an event name");
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(data["type"], name.as_str(), "{data}");
            (name, data)
        })
        .collect()
}

/// The stream in short: each event's name, a block's start as its type, a
/// delta as its type (a run of the same delta once).
fn shape(evs: &[(String, Value)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, data) in evs {
        let item = match name.as_str() {
            "content_block_start" => data["content_block"]["type"].as_str().unwrap().to_string(),
            "content_block_delta" => data["delta"]["type"].as_str().unwrap().to_string(),
            "content_block_stop" => "stop".to_string(),
            other => other.to_string(),
        };
        if name == "content_block_delta" && out.last() == Some(&item) {
            continue;
        }
        out.push(item);
    }
    out
}

/// The content blocks of a streamed message, rebuilt as a message read
/// whole has them. Checks on the way that each block starts at the next
/// index, gets its deltas, and stops before the next one starts.
fn blocks(evs: &[(String, Value)]) -> Vec<Value> {
    let mut done = Vec::new();
    let mut open: Option<(Value, String)> = None;
    for (name, data) in evs {
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "a block starts inside another: {data}");
                assert_eq!(data["index"], done.len(), "indexes are consecutive: {data}");
                open = Some((data["content_block"].clone(), String::new()));
            }
            "content_block_delta" => {
                let (block, json) = open.as_mut().expect("a delta inside a block");
                assert_eq!(data["index"], done.len(), "{data}");
                let delta = &data["delta"];
                let append = |block: &mut Value, field: &str| {
                    let add = delta[field].as_str().unwrap();
                    let had = block[field].as_str().unwrap_or_default();
                    block[field] = Value::from(format!("{had}{add}"));
                };
                match delta["type"].as_str().unwrap() {
                    "text_delta" => append(block, "text"),
                    "thinking_delta" => append(block, "thinking"),
                    "signature_delta" => block["signature"] = delta["signature"].clone(),
                    "input_json_delta" => json.push_str(delta["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let (mut block, json) = open.take().expect("a stop inside a block");
                assert_eq!(data["index"], done.len(), "{data}");
                if !json.is_empty() {
                    block["input"] = serde_json::from_str(&json).unwrap();
                }
                done.push(block);
            }
            "message_delta" | "message_stop" => {
                assert!(open.is_none(), "{name} inside a block")
            }
            _ => {}
        }
    }
    done
}

/// The `message_delta` event's data.
fn message_delta(evs: &[(String, Value)]) -> &Value {
    let (_, d) = evs
        .iter()
        .find(|(n, _)| n == "message_delta")
        .expect("a message_delta");
    d
}

fn web_search_tool(kind: &str) -> Value {
    json!({"type": kind, "name": "web_search"})
}

fn weather_tool() -> Value {
    json!({"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}})
}

/// A request of `model` whose one user turn is `text`, offering `tools`.
fn request(model: &str, stream: bool, text: &str, tools: Value) -> Value {
    json!({
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
        "tools": tools,
    })
}

/// A streamed request of llama3.2 with the web search tool.
fn searching(text: &str) -> Value {
    request(
        "llama3.2",
        true,
        text,
        json!([web_search_tool("web_search_20250305")]),
    )
}

/// The fake's hits for `query`, in its order: (url, title, page text).
fn fake_hits(query: &str) -> Vec<(String, String, String)> {
    let slug: String = query
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    [
        ("site1.example", "Site one"),
        ("blocked.example", "Blocked site"),
        ("docs.rs", "Docs"),
    ]
    .into_iter()
    .map(|(host, name)| {
        (
            format!("https://{host}/{slug}"),
            format!("{name} on {query}"),
            format!("{name} says: {query} is well documented."),
        )
    })
    .collect()
}

/// Checks a `web_search_tool_result` block that answers `call` with the
/// fake's hits at `urls`; returns its items.
fn check_hits<'a>(result: &'a Value, call: &Value, urls: &[&str]) -> &'a Vec<Value> {
    assert_eq!(result["type"], "web_search_tool_result", "{result}");
    assert_eq!(result["tool_use_id"], call["id"], "{result}");
    let items = result["content"].as_array().expect("hits");
    let got: Vec<&str> = items.iter().map(|i| i["url"].as_str().unwrap()).collect();
    assert_eq!(got, urls, "{result}");
    let query = call["input"]["query"].as_str().unwrap();
    for item in items {
        assert_eq!(item["type"], "web_search_result", "{item}");
        let (_, title, _) = fake_hits(query)
            .into_iter()
            .find(|(u, _, _)| item["url"] == u.as_str())
            .unwrap();
        assert_eq!(item["title"], title.as_str());
        let sealed = item["encrypted_content"].as_str().unwrap();
        assert!(sealed.len() > 20, "{item}");
    }
    items
}

/// Checks a `server_tool_use` block of a search for `query`.
fn check_call(call: &Value, query: &str) {
    assert_eq!(call["type"], "server_tool_use", "{call}");
    assert_eq!(call["name"], "web_search");
    let id = call["id"].as_str().unwrap();
    assert!(
        id.len() > "srvtoolu_".len() + 8 && id.starts_with("srvtoolu_"),
        "{id}"
    );
    assert_eq!(call["input"], json!({ "query": query }));
}

/// The error code of a `web_search_tool_result` that failed.
fn error_code(result: &Value) -> &str {
    assert_eq!(result["type"], "web_search_tool_result", "{result}");
    assert_eq!(
        result["content"]["type"], "web_search_tool_result_error",
        "{result}"
    );
    result["content"]["error_code"].as_str().unwrap()
}

/// What the model reads for a search that found `hits` (url, title, text).
fn check_model_text(text: &str, query: &str, hits: &[(String, String, String)]) {
    assert!(
        text.starts_with(&format!("Web search results for {query:?}:\n")),
        "{text}"
    );
    let mut at = 0;
    for (i, (url, title, page)) in hits.iter().enumerate() {
        let entry = format!("\n[{}] {title}\nURL: {url}\n{page}\n", i + 1);
        let found = text[at..]
            .find(&entry)
            .unwrap_or_else(|| panic!("{entry:?} in order in {text:?}"));
        at += found + entry.len();
    }
    assert_eq!(at, text.len(), "nothing else: {text:?}");
    assert!(!text.contains(&format!("[{}]", hits.len() + 1)), "{text}");
}

/// The text blocks' text, joined.
fn text_of(blocks: &[Value]) -> String {
    blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap())
        .collect()
}

/// The prompt tokens the fake counts for a chat request: a quarter of the
/// characters of its messages' contents, at least 1.
fn fake_prompt_tokens(chat: &Value) -> u64 {
    let chars: usize = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").chars().count())
        .sum();
    (chars as u64 / 4).max(1)
}

/// The bodies of the requests the fake got at `path`.
fn bodies(fake: &FakeOllama, path: &str) -> Vec<Value> {
    fake.requests_to(path).into_iter().map(|r| r.body).collect()
}

/// The names of the functions a chat request offered.
fn offered(chat: &Value) -> Vec<String> {
    chat["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// One search, streamed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_search_streams_its_blocks_in_order_then_the_answer() {
    // (model, tool type, a text before the call, thinking lines per round)
    let cases = [
        ("llama3.2", "web_search_20250305", true, 0),
        ("llama3.2", "web_search_20260209", false, 0),
        // Harmony: the call comes on the done line; thinking is always on
        // (and dropped: this request does not ask for it).
        (
            "gpt-oss:20b",
            "web_search_20250305",
            true,
            THINKING_TOKENS.len(),
        ),
        (
            "gpt-oss:20b",
            "web_search_20260209",
            false,
            THINKING_TOKENS.len(),
        ),
        ("qwen3", "web_search_20250305", false, THINKING_TOKENS.len()),
    ];
    for (model, kind, preamble, thinking) in cases {
        let fake = FakeOllama::start().await;
        let p = proxy(&fake, &[]).await;
        let text = if preamble {
            "[preamble] look up [search:rust tower]"
        } else {
            "look up [search:rust tower]"
        };
        let a = post(
            &p.url,
            &request(model, true, text, json!([web_search_tool(kind)])),
        )
        .await;
        let case = format!("{model} {kind} preamble={preamble}");
        let evs = events(&a);
        let mut want = vec!["message_start"];
        if preamble {
            want.extend(["text", "text_delta", "stop"]);
        }
        want.extend([
            "server_tool_use",
            "input_json_delta",
            "stop",
            "web_search_tool_result",
            "stop",
            "text",
            "text_delta",
            "stop",
            "message_delta",
            "message_stop",
        ]);
        assert_eq!(shape(&evs), want, "{case}: {}", a.body);
        assert_eq!(evs[0].1["message"]["model"], model);
        assert!(evs[0].1["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_"));

        // The server_tool_use block starts with an empty input, which the
        // delta then gives.
        let start = evs
            .iter()
            .find(|(_, d)| d["content_block"]["type"] == "server_tool_use")
            .unwrap();
        assert_eq!(start.1["content_block"]["input"], json!({}), "{case}");
        let delta = evs
            .iter()
            .find(|(_, d)| d["delta"]["type"] == "input_json_delta")
            .unwrap();
        assert_eq!(
            delta.1["delta"]["partial_json"], r#"{"query":"rust tower"}"#,
            "{case}"
        );

        let bs = blocks(&evs);
        let at = usize::from(preamble);
        if preamble {
            assert_eq!(bs[0], json!({"type": "text", "text": "Let me search."}));
        }
        check_call(&bs[at], "rust tower");
        let urls: Vec<String> = fake_hits("rust tower").into_iter().map(|h| h.0).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        check_hits(&bs[at + 1], &bs[at], &urls);

        // The answer is the follow-up's: the model read the tool message.
        let chats = bodies(&fake, CHAT);
        assert_eq!(chats.len(), 2, "{case}");
        let tool = &chats[1]["messages"][2];
        assert_eq!(tool["role"], "tool", "{case}");
        let answer = bs[at + 2]["text"].as_str().unwrap();
        assert_eq!(
            answer,
            format!("Tool said: {}", tool["content"].as_str().unwrap()),
            "{case}"
        );

        // Usage: both rounds' tokens, and the one search.
        let d = message_delta(&evs);
        assert_eq!(d["delta"]["stop_reason"], "end_turn", "{case}");
        assert_eq!(d["usage"]["server_tool_use"]["web_search_requests"], 1);
        let input: u64 = chats.iter().map(fake_prompt_tokens).sum();
        assert!(input > fake_prompt_tokens(&chats[0]));
        assert_eq!(d["usage"]["input_tokens"], input, "{case}");
        // The fake counts a token per line: thinking, text, the call.
        let text_deltas = evs
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "text_delta")
            .count();
        let output = 2 * thinking + 1 + text_deltas;
        assert_eq!(d["usage"]["output_tokens"], output, "{case}");
        assert_eq!(fake.requests_to(SEARCH).len(), 1);
    }
}

#[tokio::test]
async fn the_follow_up_gives_the_model_its_call_and_the_results() {
    for (model, thinks) in [("llama3.2", false), ("gpt-oss:20b", true)] {
        let fake = FakeOllama::start().await;
        let p = proxy(&fake, &[]).await;
        let mut body = request(
            model,
            true,
            "[preamble] what is new? [search:rust tower]",
            json!([weather_tool(), {
                "type": "web_search_20250305", "name": "web_search",
                "user_location": {"type": "approximate", "city": "Paris", "region": "Île-de-France",
                                  "country": "FR", "timezone": "Europe/Paris"}
            }]),
        );
        body["system"] = json!("Be brief.");
        let a = post(&p.url, &body).await;
        let bs = blocks(&events(&a));

        // The search Ollama was asked for.
        let searches = bodies(&fake, SEARCH);
        assert_eq!(searches, [json!({"query": "rust tower", "max_results": 5})]);

        let chats = bodies(&fake, CHAT);
        assert_eq!(chats.len(), 2);
        let (first, follow_up) = (&chats[0], &chats[1]);
        // The model is offered the search as a function, with the user's
        // location, next to the client's own tool.
        assert_eq!(offered(first), ["get_weather", "web_search"]);
        let function = &first["tools"][1]["function"];
        assert_eq!(function["parameters"]["required"], json!(["query"]));
        let description = function["description"].as_str().unwrap();
        assert!(
            description.contains("Paris, Île-de-France, FR (time zone Europe/Paris)"),
            "{description}"
        );

        // The follow-up: the conversation so far, the round's assistant
        // message with its call, the tool message with the results; the
        // same tools still offered (two of the three searches are left).
        let messages = follow_up["messages"].as_array().unwrap();
        assert_eq!(messages[..2], first["messages"].as_array().unwrap()[..]);
        assert_eq!(messages.len(), 4, "{follow_up}");
        let assistant = &messages[2];
        assert_eq!(assistant["role"], "assistant");
        assert_eq!(assistant["content"], "Let me search.");
        if thinks {
            // What the model thought before it searched goes back to it.
            assert_eq!(assistant["thinking"], THINKING_TOKENS.concat());
        } else {
            assert!(assistant.get("thinking").is_none(), "{assistant}");
        }
        let calls = assistant["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["function"]["name"], "web_search");
        assert_eq!(
            calls[0]["function"]["arguments"],
            json!({"query": "rust tower"})
        );
        let tool = &messages[3];
        assert_eq!(tool["role"], "tool");
        assert_eq!(tool["tool_name"], "web_search");
        assert_eq!(tool["tool_call_id"], calls[0]["id"]);
        assert!(!calls[0]["id"].as_str().unwrap().is_empty());
        // The call's id is the client's block's, without its prefix.
        let client_id = bs[1]["id"].as_str().unwrap();
        assert_eq!(
            client_id.strip_prefix("srvtoolu_"),
            calls[0]["id"].as_str(),
            "{client_id}"
        );
        check_model_text(
            tool["content"].as_str().unwrap(),
            "rust tower",
            &fake_hits("rust tower"),
        );
        assert_eq!(follow_up["tools"], first["tools"]);
        assert_eq!(follow_up["model"], first["model"]);
        assert_eq!(follow_up["stream"], true);
        assert_eq!(follow_up["options"], first["options"]);
    }
}

#[tokio::test]
async fn a_message_read_whole_has_the_same_blocks() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let text = "[preamble] [search:rust tower]";
    let streamed = blocks(&events(&post(&p.url, &searching(text)).await));
    let mut body = searching(text);
    body["stream"] = json!(false);
    let a = post(&p.url, &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json");
    let m = a.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["server_tool_use"]["web_search_requests"], 1);
    let whole = m["content"].as_array().unwrap();
    let kinds: Vec<&str> = whole.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["text", "server_tool_use", "web_search_tool_result", "text"]
    );
    check_call(&whole[1], "rust tower");
    // The same blocks as streamed but for the (random) call id; the sealed
    // hits are the same too (the same key sealed the same hits).
    let unid = |blocks: &[Value]| -> Vec<Value> {
        blocks
            .iter()
            .map(|b| {
                let mut b = b.clone();
                b.as_object_mut().unwrap().remove("id");
                b.as_object_mut().unwrap().remove("tool_use_id");
                b
            })
            .collect()
    };
    assert_eq!(unid(whole), unid(&streamed));
    assert_eq!(whole[2]["tool_use_id"], whole[1]["id"]);
    // Tokens of both rounds.
    let chats = bodies(&fake, CHAT);
    assert_eq!(chats.len(), 4);
    let input: u64 = chats[2..].iter().map(fake_prompt_tokens).sum();
    assert_eq!(m["usage"]["input_tokens"], input);
}

#[tokio::test]
async fn thinking_before_and_after_a_search_is_signed_and_goes_back() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let mut body = request(
        "qwen3",
        true,
        "[search:rust tower]",
        json!([web_search_tool("web_search_20250305")]),
    );
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    let evs = events(&post(&p.url, &body).await);
    assert_eq!(
        shape(&evs),
        [
            "message_start",
            "thinking",
            "thinking_delta",
            "signature_delta",
            "stop",
            "server_tool_use",
            "input_json_delta",
            "stop",
            "web_search_tool_result",
            "stop",
            "thinking",
            "thinking_delta",
            "signature_delta",
            "stop",
            "text",
            "text_delta",
            "stop",
            "message_delta",
            "message_stop"
        ]
    );
    let bs = blocks(&evs);
    assert_eq!(bs[0]["thinking"], THINKING_TOKENS.concat());
    assert_eq!(bs[3]["thinking"], THINKING_TOKENS.concat());

    // The whole turn sent back: both thinking blocks verify.
    let mut body = body.clone();
    body["messages"] = json!([
        body["messages"][0],
        {"role": "assistant", "content": bs},
        {"role": "user", "content": "thanks"},
    ]);
    body["stream"] = json!(false);
    let a = post(&p.url, &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = bodies(&fake, CHAT).pop().unwrap();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
    assert_eq!(sent["messages"][1]["thinking"], THINKING_TOKENS.concat());
    assert_eq!(sent["messages"][3]["thinking"], THINKING_TOKENS.concat());
}

// ---------------------------------------------------------------------------------------------
// Several searches, max_uses
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_model_searches_until_its_searches_are_spent_then_answers() {
    // No max_uses: the layer's default, 3. The model would search 5 times.
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let evs = events(&post(&p.url, &searching("[searches:5:tokio news]")).await);
    let bs = blocks(&evs);
    let kinds: Vec<&str> = bs.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "server_tool_use",
            "web_search_tool_result",
            "server_tool_use",
            "web_search_tool_result",
            "server_tool_use",
            "web_search_tool_result",
            "text"
        ]
    );
    for k in 0..3 {
        let query = format!("tokio news {}", k + 1);
        check_call(&bs[2 * k], &query);
        assert_eq!(bs[2 * k + 1]["tool_use_id"], bs[2 * k]["id"]);
        assert_eq!(bs[2 * k + 1]["content"].as_array().unwrap().len(), 3);
    }
    let ids: std::collections::HashSet<&str> =
        (0..3).map(|k| bs[2 * k]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "ids are unique in the answer");
    let d = message_delta(&evs);
    assert_eq!(d["delta"]["stop_reason"], "end_turn");
    assert_eq!(d["usage"]["server_tool_use"]["web_search_requests"], 3);
    assert_eq!(fake.requests_to(SEARCH).len(), 3);
    let chats = bodies(&fake, CHAT);
    assert_eq!(chats.len(), 4);
    // Searches left after the 1st and 2nd: offered; after the 3rd: not.
    for chat in &chats[..3] {
        assert_eq!(offered(chat), ["web_search"]);
    }
    assert!(chats[3].get("tools").is_none(), "{}", chats[3]);
    // Each follow-up is the previous request plus a call and its results.
    for k in 1..4 {
        let before = chats[k - 1]["messages"].as_array().unwrap();
        let now = chats[k]["messages"].as_array().unwrap();
        assert_eq!(now.len(), before.len() + 2);
        assert_eq!(now[..before.len()], before[..]);
    }
    let input: u64 = chats.iter().map(fake_prompt_tokens).sum();
    assert_eq!(d["usage"]["input_tokens"], input);
}

#[tokio::test]
async fn max_uses_bounds_the_searches_of_a_request() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let tools = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]);

    // A model that would search in three rounds: the first search runs,
    // and the follow-up no longer offers the search, so it answers.
    let a = post(
        &p.url,
        &request("llama3.2", true, "[searches:3:axum]", tools.clone()),
    )
    .await;
    let evs = events(&a);
    let bs = blocks(&evs);
    check_call(&bs[0], "axum 1");
    assert_eq!(bs[1]["content"].as_array().unwrap().len(), 3);
    assert_eq!(bs[2]["type"], "text");
    assert_eq!(bs.len(), 3);
    let d = message_delta(&evs);
    assert_eq!(d["delta"]["stop_reason"], "end_turn");
    assert_eq!(d["usage"]["server_tool_use"]["web_search_requests"], 1);
    assert_eq!(evs.last().unwrap().0, "message_stop");
    assert_eq!(fake.requests_to(SEARCH).len(), 1);
    let chats = bodies(&fake, CHAT);
    assert_eq!(chats.len(), 2);
    assert!(chats[1].get("tools").is_none(), "{}", chats[1]);

    // A model that searches twice in one round: the second call is refused
    // with max_uses_exceeded, the model is told, and it answers.
    fake.clear_requests();
    let a = post(
        &p.url,
        &request(
            "llama3.2",
            true,
            "[search:first thing] and [search:second thing]",
            tools.clone(),
        ),
    )
    .await;
    let evs = events(&a);
    assert_eq!(
        shape(&evs),
        [
            "message_start",
            "server_tool_use",
            "input_json_delta",
            "stop",
            "web_search_tool_result",
            "stop",
            "server_tool_use",
            "input_json_delta",
            "stop",
            "web_search_tool_result",
            "stop",
            "text",
            "text_delta",
            "stop",
            "message_delta",
            "message_stop"
        ]
    );
    let bs = blocks(&evs);
    check_call(&bs[0], "first thing");
    assert_eq!(bs[1]["content"].as_array().unwrap().len(), 3);
    check_call(&bs[2], "second thing");
    assert_ne!(bs[2]["id"], bs[0]["id"]);
    assert_eq!(bs[3]["tool_use_id"], bs[2]["id"]);
    assert_eq!(error_code(&bs[3]), "max_uses_exceeded");
    let d = message_delta(&evs);
    assert_eq!(d["delta"]["stop_reason"], "end_turn");
    assert_eq!(d["usage"]["server_tool_use"]["web_search_requests"], 1);
    assert_eq!(
        bodies(&fake, SEARCH),
        [json!({"query": "first thing", "max_results": 5})]
    );
    let chats = bodies(&fake, CHAT);
    assert_eq!(chats.len(), 2);
    let follow_up = &chats[1];
    assert!(follow_up.get("tools").is_none(), "{follow_up}");
    let messages = follow_up["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    let calls = messages[1]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(messages[2]["tool_call_id"], calls[0]["id"]);
    assert_eq!(messages[3]["tool_call_id"], calls[1]["id"]);
    let spent = messages[3]["content"].as_str().unwrap();
    assert!(
        spent.contains("\"second thing\"") && spent.contains("searches are spent"),
        "{spent}"
    );
    assert_eq!(
        text_of(&bs),
        format!("Tool said: {spent}"),
        "the model read the last tool message"
    );

    // max_uses must be a positive integer.
    for bad in [json!(0), json!(-1), json!("2"), json!(1.5)] {
        let tools = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": bad}]);
        let a = post(&p.url, &request("llama3.2", true, "[search:x]", tools)).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert_eq!(a.json()["error"]["type"], "invalid_request_error");
        assert!(a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_uses"));
    }
    assert_eq!(
        fake.requests_to(CHAT).len(),
        2,
        "bad requests never reach Ollama"
    );
}

// ---------------------------------------------------------------------------------------------
// Domain filters
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn domain_filters_keep_and_drop_hits() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let hits = fake_hits("rust tower");
    for (filter, kept) in [
        (json!({"allowed_domains": ["docs.rs"]}), vec![2]),
        // Subdomains are on their domain; the scheme and a path are ignored.
        (
            json!({"allowed_domains": ["https://DOCS.rs/", "www.site1.example"]}),
            vec![2],
        ),
        // Whole labels only: docs.rs is not on ocs.rs.
        (json!({"allowed_domains": ["ocs.rs"]}), vec![]),
        (json!({"blocked_domains": ["blocked.example"]}), vec![0, 2]),
        (json!({"blocked_domains": ["example"]}), vec![2]),
    ] {
        fake.clear_requests();
        let mut tool = web_search_tool("web_search_20250305");
        tool.as_object_mut()
            .unwrap()
            .extend(filter.as_object().unwrap().clone());
        let a = post(
            &p.url,
            &request("llama3.2", true, "[search:rust tower]", json!([tool])),
        )
        .await;
        let bs = blocks(&events(&a));
        let urls: Vec<&str> = kept.iter().map(|&i| hits[i].0.as_str()).collect();
        check_hits(&bs[1], &bs[0], &urls);
        // The backend is asked for more hits, as they are filtered after.
        assert_eq!(
            bodies(&fake, SEARCH),
            [json!({"query": "rust tower", "max_results": 10})],
            "{filter}"
        );
        let follow_up = bodies(&fake, CHAT).pop().unwrap();
        let text = follow_up["messages"][2]["content"].as_str().unwrap();
        if kept.is_empty() {
            assert_eq!(text, "The web search for \"rust tower\" found nothing.");
        } else {
            let seen: Vec<_> = kept.iter().map(|&i| hits[i].clone()).collect();
            check_model_text(text, "rust tower", &seen);
        }
    }

    // Both lists: Anthropic's 400, and nothing reaches Ollama.
    fake.clear_requests();
    let tools = json!([{"type": "web_search_20250305", "name": "web_search",
                        "allowed_domains": ["docs.rs"], "blocked_domains": ["blocked.example"]}]);
    let a = post(&p.url, &request("llama3.2", true, "[search:x]", tools)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let e = a.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("allowed_domains") && message.contains("blocked_domains"),
        "{message}"
    );
    // Not lists of strings: 400 too.
    for bad in [
        json!({"allowed_domains": "docs.rs"}),
        json!({"blocked_domains": [1]}),
    ] {
        let mut tool = web_search_tool("web_search_20250305");
        tool.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let a = post(
            &p.url,
            &request("llama3.2", true, "[search:x]", json!([tool])),
        )
        .await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    }
    // A client tool may not take the function's name.
    let tools = json!([web_search_tool("web_search_20250305"),
                       {"name": "web_search", "input_schema": {"type": "object"}}]);
    let a = post(&p.url, &request("llama3.2", true, "[search:x]", tools)).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("web_search"));
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

// ---------------------------------------------------------------------------------------------
// Failed searches
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_failed_search_is_an_error_block_and_the_answer_goes_on() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let scrape = || async {
        let a = send("GET", &format!("{}/metrics", p.url), &[], None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    };
    let before = scrape().await;
    let long = "q".repeat(401);
    // (what the user asks, the query the client sees, the error code,
    // whether the backend was asked)
    let cases = [
        ("[search:unavailable]", "unavailable", "unavailable", true),
        (
            "[search:ratelimited]",
            "ratelimited",
            "too_many_requests",
            true,
        ),
        // An Ollama without /api/experimental/web_search (gin's 404).
        ("[search:unsupported]", "unsupported", "unavailable", true),
        (
            &*format!("[search:{long}]"),
            &*long,
            "query_too_long",
            false,
        ),
    ];
    for (text, query, code, asked) in cases {
        fake.clear_requests();
        let a = post(&p.url, &searching(text)).await;
        let evs = events(&a);
        assert_eq!(
            shape(&evs),
            [
                "message_start",
                "server_tool_use",
                "input_json_delta",
                "stop",
                "web_search_tool_result",
                "stop",
                "text",
                "text_delta",
                "stop",
                "message_delta",
                "message_stop"
            ],
            "{code}"
        );
        let bs = blocks(&evs);
        assert_eq!(bs[1]["tool_use_id"], bs[0]["id"]);
        assert_eq!(error_code(&bs[1]), code);
        // Never a failed message: the model is told and answers.
        let d = message_delta(&evs);
        assert_eq!(d["delta"]["stop_reason"], "end_turn", "{code}");
        let requests = d["usage"]
            .pointer("/server_tool_use/web_search_requests")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        assert_eq!(requests, 0, "a failed search is not a search made: {d}");
        assert_eq!(fake.requests_to(SEARCH).len(), usize::from(asked), "{code}");
        let follow_up = bodies(&fake, CHAT).pop().unwrap();
        let told = follow_up["messages"][2]["content"].as_str().unwrap();
        assert!(told.contains(&format!("failed ({code})")), "{told}");
        assert_eq!(text_of(&bs), format!("Tool said: {told}"));
        // The web search is still offered (the failed one spent a use, or
        // none): the model may try again.
        assert_eq!(offered(&follow_up), ["web_search"], "{code}");
        // The client sees the model's query, refused or not.
        assert_eq!(bs[0]["input"], json!({ "query": query }), "{code}");
    }

    // A search that finds nothing is no error.
    fake.clear_requests();
    let evs = events(&post(&p.url, &searching("[search:nothing at all]")).await);
    let bs = blocks(&evs);
    assert_eq!(bs[1]["content"], json!([]));
    assert_eq!(
        message_delta(&evs)["usage"]["server_tool_use"]["web_search_requests"],
        1
    );
    let follow_up = bodies(&fake, CHAT).pop().unwrap();
    assert_eq!(
        follow_up["messages"][2]["content"],
        "The web search for \"nothing at all\" found nothing."
    );

    // A call without a query: invalid_input, and the backend is not asked.
    fake.clear_requests();
    let evs = events(&post(&p.url, &searching("go [call:web_search:{}]")).await);
    let bs = blocks(&evs);
    assert_eq!(bs[0]["type"], "server_tool_use");
    assert_eq!(error_code(&bs[1]), "invalid_input");
    assert_eq!(bs[1]["tool_use_id"], bs[0]["id"]);
    assert_eq!(message_delta(&evs)["delta"]["stop_reason"], "end_turn");
    assert!(fake.requests_to(SEARCH).is_empty());
    let follow_up = bodies(&fake, CHAT).pop().unwrap();
    let told = follow_up["messages"][2]["content"].as_str().unwrap();
    assert!(told.contains("failed (invalid_input)"), "{told}");

    // Each outcome counted. (Other tests of this binary make some of these
    // outcomes concurrently: at least these; exact counts in the SearXNG
    // test, the only one with that backend.)
    let after = scrape().await;
    let grew = |outcome: &str| {
        let labels = ["backend=\"ollama\"", &*format!("outcome=\"{outcome}\"")];
        let name = "ollama_translate_web_searches_total";
        sample(&after, name, &labels) - sample(&before, name, &labels)
    };
    assert!(grew("unavailable") >= 2.0, "{after}");
    for outcome in ["too_many_requests", "query_too_long", "invalid_input"] {
        assert!(grew(outcome) >= 1.0, "{outcome}: {after}");
    }
}

/// A call the layer refuses is shown as the model made it: its query, if
/// it gave a string (else an empty one), to the client and back to the model.
#[tokio::test]
async fn a_refused_call_shows_what_the_model_sent() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let long = "q".repeat(401);
    for (text, sent) in [
        (format!("[search:{long}]"), json!({ "query": long })),
        ("go [call:web_search:{}]".to_string(), json!({"query": ""})),
        (
            r#"go [call:web_search:{"query":7}]"#.to_string(),
            json!({"query": ""}),
        ),
    ] {
        fake.clear_requests();
        let bs = blocks(&events(&post(&p.url, &searching(&text)).await));
        let follow_up = bodies(&fake, CHAT).pop().unwrap();
        let call = &follow_up["messages"][1]["tool_calls"][0]["function"];
        assert_eq!(call["arguments"], sent, "what the model is told it sent");
        assert_eq!(bs[0]["input"], sent, "what the client is shown");
    }
}

// ---------------------------------------------------------------------------------------------
// Keep-alive, follow-ups that fail
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_slow_search_gets_pings() {
    let fake = FakeOllama::start().await;
    // The search (3 s) outlasts the upstream idle timeout: Ollama owes
    // nothing while it runs, and the search has its own deadline.
    let p = proxy(
        &fake,
        &[("KEEPALIVE_SECS", "1"), ("UPSTREAM_IDLE_TIMEOUT", "2")],
    )
    .await;
    let started = Instant::now();
    let evs = events(&post(&p.url, &searching("[search:slow crates]")).await);
    assert!(started.elapsed() >= Duration::from_secs(3));
    let names: Vec<String> = shape(&evs);
    let call = names.iter().position(|n| n == "server_tool_use").unwrap();
    let result = names
        .iter()
        .position(|n| n == "web_search_tool_result")
        .unwrap();
    // The call's block ends before the search, the result's starts after.
    assert_eq!(names[call + 2], "stop");
    let pings = names[call + 3..result]
        .iter()
        .filter(|n| *n == "ping")
        .count();
    assert!(pings >= 1, "{names:?}");
    assert!(
        names[call + 3..result].iter().all(|n| n == "ping"),
        "{names:?}"
    );
    let bs = blocks(&evs);
    assert_eq!(bs[1]["content"].as_array().unwrap().len(), 3);
    assert_eq!(evs.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn a_client_that_goes_away_during_a_search_gets_no_follow_up() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(format!("{}/v1/messages", p.url))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            searching("[search:slow crates]").to_string(),
        )))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let mut seen = String::new();
    while !seen.contains("\"server_tool_use\"") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the call's block within 10 s")
            .expect("more body")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert_eq!(fake.requests_to(SEARCH).len(), 1);
    drop(body);
    drop(client);
    // Past the search's 3 s: no follow-up was asked for.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(fake.requests_to(CHAT).len(), 1);
    assert!(fake.wait_idle(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn tool_choice_none_drops_the_search_too() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let mut body = searching("[search:rust tower]");
    body["tool_choice"] = json!({"type": "none"});
    let bs = blocks(&events(&post(&p.url, &body).await));
    assert_eq!(
        bs,
        [json!({"type": "text", "text": "Hello! You said: [search:rust tower]"})]
    );
    assert!(bodies(&fake, CHAT)[0].get("tools").is_none());
    assert!(fake.requests_to(SEARCH).is_empty());
}

/// Starts a streamed search for a `slow` query, and once the search runs,
/// `meanwhile`; the answer.
async fn during_a_slow_search(
    fake: &FakeOllama,
    p: &Proxy,
    stream: bool,
    meanwhile: impl FnOnce(&FakeOllama),
) -> Answer {
    let mut body = searching("[search:slow crates]");
    body["stream"] = json!(stream);
    let url = p.url.clone();
    let task = tokio::spawn(async move { post(&url, &body).await });
    let searching = fake
        .wait_until(Duration::from_secs(10), |f| {
            f.requests_to(SEARCH).len() == 1
        })
        .await;
    assert!(searching, "the search started");
    meanwhile(fake);
    task.await.unwrap()
}

/// The last event is an in-band error (no message_stop); its message.
fn in_band_error(a: &Answer) -> String {
    let evs = events(a);
    let names = shape(&evs);
    assert!(!names.iter().any(|n| n == "message_stop"), "{names:?}");
    assert!(!names.iter().any(|n| n == "message_delta"), "{names:?}");
    let (name, data) = evs.last().unwrap();
    assert_eq!(name, "error", "{names:?}");
    assert_eq!(data["error"]["type"], "api_error", "{data}");
    data["error"]["message"].as_str().unwrap().to_string()
}

/// BUG (src/agent.rs + src/ollama/mod.rs, issue 19): when the follow-up
/// after a search fails before its stream starts (Ollama refuses it: 503
/// busy here; or cannot be reached), `Step::Fail` reaches
/// `Decoder::abort` → `Decoder::fail`, which does nothing because the first
/// round's done line already set `finished` (only `next_round`, on
/// `Step::Continue`, clears it). So no `event: error` is written, no failure
/// is recorded (`Transcode::failure` is `None`: metered as a success), and
/// the stream just stops after the `web_search_tool_result` block and is
/// cut. The same follow-up read whole is a proper 503 (next test).
#[tokio::test]
async fn a_follow_up_ollama_refuses_is_an_in_band_error() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = during_a_slow_search(&fake, &p, true, |f| f.set_busy(true)).await;
    assert_eq!(fake.requests_to(CHAT).len(), 2, "the follow-up was asked");
    // The search's blocks reached the client before.
    let bs = blocks(&events(&a));
    assert_eq!(bs.len(), 2);
    assert_eq!(bs[1]["content"].as_array().unwrap().len(), 3);
    let message = in_band_error(&a);
    assert!(message.contains(SERVER_BUSY), "{message}");
}

#[tokio::test]
async fn a_follow_up_ollama_refuses_is_an_error_for_a_message_read_whole() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = during_a_slow_search(&fake, &p, false, |f| f.set_busy(true)).await;
    assert_eq!(fake.requests_to(CHAT).len(), 2, "the follow-up was asked");
    // An error with Ollama's words, never a message. (Today a 502
    // `api_error`; Ollama's own 503 to a first call is a 503
    // `overloaded_error`.)
    assert!(a.status.is_server_error(), "{} {}", a.status, a.body);
    let e = a.json();
    assert_eq!(e["type"], "error", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains(SERVER_BUSY), "{e}");
}

#[tokio::test]
async fn a_follow_up_cut_mid_stream_is_an_in_band_error() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let a = during_a_slow_search(&fake, &p, true, |f| f.set_die_mid_stream(true)).await;
    in_band_error(&a);
    let bs = blocks(&events(&a));
    // The search's blocks, then what the follow-up sent before it broke.
    let kinds: Vec<&str> = bs.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["server_tool_use", "web_search_tool_result"],
        "an open text block is not closed by the error: {}",
        a.body
    );
    let text: String = events(&a)
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "Tool said:");
}

// ---------------------------------------------------------------------------------------------
// A client tool and a search in one round
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_client_tool_call_ends_the_turn_after_the_search() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let tools = json!([web_search_tool("web_search_20250305"), weather_tool()]);
    let text = r#"[search:tokyo forecast] [call:get_weather:{"city":"Tokyo"}]"#;
    let a = post(&p.url, &request("llama3.2", true, text, tools.clone())).await;
    let evs = events(&a);
    // The client's call streams as it comes; the search runs at the end of
    // the round; then the turn ends for the client to run its tool.
    assert_eq!(
        shape(&evs),
        [
            "message_start",
            "tool_use",
            "input_json_delta",
            "stop",
            "server_tool_use",
            "input_json_delta",
            "stop",
            "web_search_tool_result",
            "stop",
            "message_delta",
            "message_stop"
        ]
    );
    let bs = blocks(&evs);
    assert_eq!(bs[0]["name"], "get_weather");
    assert_eq!(bs[0]["input"], json!({"city": "Tokyo"}));
    assert!(bs[0]["id"].as_str().unwrap().starts_with("toolu_"));
    check_call(&bs[1], "tokyo forecast");
    assert_eq!(bs[2]["content"].as_array().unwrap().len(), 3);
    let d = message_delta(&evs);
    assert_eq!(d["delta"]["stop_reason"], "tool_use");
    assert_eq!(d["usage"]["server_tool_use"]["web_search_requests"], 1);
    let chats = bodies(&fake, CHAT);
    assert_eq!(chats.len(), 1, "no follow-up");
    assert_eq!(d["usage"]["input_tokens"], fake_prompt_tokens(&chats[0]));
    assert_eq!(d["usage"]["output_tokens"], 1, "one line of calls");
    assert_eq!(fake.requests_to(SEARCH).len(), 1);

    // The client runs its tool and sends the turn back: the model gets both
    // calls, the search's results and the tool's.
    let tool_id = bs[0]["id"].clone();
    let body = json!({
        "model": "llama3.2", "max_tokens": 1024, "stream": false, "tools": tools,
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": bs},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "Sunny, 21°C"}]},
        ],
    });
    let a = post(&p.url, &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let m = a.json();
    assert_eq!(m["content"][0]["text"], "Tool said: Sunny, 21°C");
    let sent = bodies(&fake, CHAT).pop().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "tool"]);
    let names: Vec<&str> = messages[1]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather", "web_search"]);
    assert_eq!(messages[2]["tool_name"], "web_search");
    check_model_text(
        messages[2]["content"].as_str().unwrap(),
        "tokyo forecast",
        &fake_hits("tokyo forecast"),
    );
    assert_eq!(messages[3]["content"], "Sunny, 21°C");
    assert_eq!(fake.requests_to(SEARCH).len(), 1, "nothing searched again");
}

// ---------------------------------------------------------------------------------------------
// The history round trip and the sealed hits
// ---------------------------------------------------------------------------------------------

/// A searching turn through `p`: the user's text and the assistant's blocks.
async fn searched_turn(p: &Proxy, text: &str) -> Vec<Value> {
    let bs = blocks(&events(&post(&p.url, &searching(text)).await));
    assert_eq!(bs.last().unwrap()["type"], "text", "{bs:?}");
    bs
}

/// The conversation `text` → `assistant` → `thanks`, as a request.
fn history(text: &str, assistant: &[Value]) -> Value {
    json!({
        "model": "llama3.2", "max_tokens": 1024, "stream": true,
        "tools": [web_search_tool("web_search_20250305")],
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": "thanks"},
        ],
    })
}

/// Sends `body` and returns the messages Ollama got for it.
async fn messages_sent(fake: &FakeOllama, p: &Proxy, body: &Value) -> Vec<Value> {
    let a = post(&p.url, body).await;
    let evs = events(&a);
    assert_eq!(message_delta(&evs)["delta"]["stop_reason"], "end_turn");
    let sent = bodies(fake, CHAT).pop().unwrap();
    sent["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_history_gives_the_model_what_it_read() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("THINKING_KEY", "the first key")]).await;
    let text = "[preamble] [search:rust tower]";
    let turn = searched_turn(&p, text).await;
    let live = bodies(&fake, CHAT)[1]["messages"][2].clone();
    assert_eq!(live["role"], "tool");

    fake.clear_requests();
    let sent = messages_sent(&fake, &p, &history(text, &turn)).await;
    let roles: Vec<&str> = sent.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
    assert_eq!(sent[1]["content"], "Let me search.");
    let calls = sent[1]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function"]["name"], "web_search");
    assert_eq!(
        calls[0]["function"]["arguments"],
        json!({"query": "rust tower"})
    );
    assert_eq!(sent[2]["tool_name"], "web_search");
    assert_eq!(sent[2]["tool_call_id"], calls[0]["id"]);
    // The same text as the first time, byte for byte.
    assert_eq!(sent[2]["content"], live["content"]);
    assert_eq!(sent[3]["content"], turn[3]["text"]);
    assert_eq!(sent[4]["content"], "thanks");
    assert_eq!(fake.requests_to(SEARCH).len(), 0, "nothing searched again");

    // The sealed hit wins over a title or address the client changed.
    let mut edited = turn.clone();
    edited[2]["content"][0]["title"] = json!("Something else");
    edited[2]["content"][0]["url"] = json!("https://elsewhere.example/");
    let sent = messages_sent(&fake, &p, &history(text, &edited)).await;
    assert_eq!(sent[2]["content"], live["content"]);

    // A proxy with the same key (a replica) trusts the hits too.
    let replica = proxy(&fake, &[("THINKING_KEY", "the first key")]).await;
    let sent = messages_sent(&fake, &replica, &history(text, &turn)).await;
    assert_eq!(sent[2]["content"], live["content"]);
}

/// BUG (src/agent.rs `finish` vs src/dialect/messages.rs
/// `assistant_messages`, issue 19, minor): the live follow-up gives the
/// search call and its tool message the raw id (`UvRk…`), while the same
/// turn sent back in the history gives them the client's block id
/// (`srvtoolu_UvRk…`). So the next request's prompt differs from what the
/// model already read in the call's id, wherever a template renders tool
/// call ids (and Ollama's prompt cache then misses from there).
#[tokio::test]
async fn the_history_repeats_the_live_follow_up_exactly() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let text = "[preamble] [search:rust tower]";
    let turn = searched_turn(&p, text).await;
    let live = bodies(&fake, CHAT)[1]["messages"].clone();
    let sent = messages_sent(&fake, &p, &history(text, &turn)).await;
    assert_eq!(live.as_array().unwrap()[..], sent[..3]);
}

/// What the model reads for the fake's hits known only by title and address.
fn untrusted_text(query: &str, hits: &[(String, String, String)]) -> String {
    let mut text = format!("Web search results for {query:?}:\n");
    for (i, (url, title, _)) in hits.iter().enumerate() {
        text.push_str(&format!("\n[{}] {title}\nURL: {url}\n", i + 1));
    }
    text
}

#[tokio::test]
async fn hits_not_sealed_by_this_key_give_only_titles_and_addresses() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("THINKING_KEY", "the first key")]).await;
    let text = "[search:rust tower]";
    let turn = searched_turn(&p, text).await;
    let hits = fake_hits("rust tower");
    let bare = untrusted_text("rust tower", &hits);

    // Tampered with: a character of the signature, or of the sealed hit.
    let sealed = |turn: &[Value], i: usize| -> String {
        turn[1]["content"][i]["encrypted_content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut tampered = turn.clone();
    let items = tampered[1]["content"].as_array_mut().unwrap();
    for (i, item) in items.iter_mut().enumerate() {
        let mut s = item["encrypted_content"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec();
        let at = if i == 0 { s.len() - 1 } else { s.len() / 2 };
        s[at] = if s[at] == b'A' { b'B' } else { b'A' };
        item["encrypted_content"] = json!(String::from_utf8(s).unwrap());
    }
    assert_eq!(items.len(), 3);
    fake.clear_requests();
    let sent = messages_sent(&fake, &p, &history(text, &tampered)).await;
    assert_eq!(sent[2]["content"], bare);

    // Foreign: what Anthropic's API would have sent, or nothing.
    let mut foreign = turn.clone();
    foreign[1]["content"][0]["encrypted_content"] = json!("EqkCCioIAhgCIiRhNjU3-opaque");
    foreign[1]["content"][1]
        .as_object_mut()
        .unwrap()
        .remove("encrypted_content");
    foreign[1]["content"][2]["encrypted_content"] = json!(sealed(&turn, 2));
    let sent = messages_sent(&fake, &p, &history(text, &foreign)).await;
    let mut mixed = bare.clone();
    mixed.push_str(&format!("{}\n", hits[2].2));
    assert_eq!(
        sent[2]["content"], mixed,
        "only the sealed third hit has text"
    );

    // Another key: the first proxy's hits are not ours.
    let other = proxy(&fake, &[("THINKING_KEY", "another key")]).await;
    let sent = messages_sent(&fake, &other, &history(text, &turn)).await;
    assert_eq!(sent[2]["content"], bare);
    let tool = sent[2]["content"].as_str().unwrap();
    assert!(!tool.contains("well documented"), "{tool}");
}

#[tokio::test]
async fn a_failed_search_in_the_history_is_told_as_failed() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let text = "[search:ratelimited]";
    let turn = blocks(&events(&post(&p.url, &searching(text)).await));
    assert_eq!(error_code(&turn[1]), "too_many_requests");
    let live = bodies(&fake, CHAT)[1]["messages"][2]["content"].clone();
    let sent = messages_sent(&fake, &p, &history(text, &turn)).await;
    assert_eq!(sent[2]["role"], "tool");
    assert_eq!(sent[2]["content"], live);

    // A result whose call is not in the turn is dropped.
    let orphan = vec![turn[1].clone(), turn[2].clone()];
    let sent = messages_sent(&fake, &p, &history(text, &orphan)).await;
    let roles: Vec<&str> = sent.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(sent[1]["content"], turn[2]["text"]);
    assert!(sent[1].get("tool_calls").is_none(), "{}", sent[1]);

    // So is a call without its result (a stream cut during the search):
    // the model never made a call it did not see answered.
    let cut = vec![
        json!({"type": "text", "text": "Let me search."}),
        turn[0].clone(),
    ];
    let sent = messages_sent(&fake, &p, &history(text, &cut)).await;
    let roles: Vec<&str> = sent.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(sent[1]["content"], "Let me search.");
    assert!(sent[1].get("tool_calls").is_none(), "{}", sent[1]);
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn searches_are_counted_and_timed() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let scrape = || async {
        let a = send("GET", &format!("{}/metrics", p.url), &[], None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    };
    let before = scrape().await;
    let evs = events(&post(&p.url, &searching("[search:metered query]")).await);
    assert_eq!(blocks(&evs).len(), 3);
    let after = scrape().await;
    let ok = ["backend=\"ollama\"", "outcome=\"ok\""];
    let grew = |name: &str| sample(&after, name, &ok) - sample(&before, name, &ok);
    // Other tests of this binary search concurrently: at least this one.
    assert!(
        grew("ollama_translate_web_searches_total") >= 1.0,
        "{after}"
    );
    // Timed too, in the duration buckets.
    assert!(grew("ollama_translate_web_search_duration_seconds_count") >= 1.0);
    assert!(
        sample(
            &after,
            "ollama_translate_web_search_duration_seconds_bucket",
            &["backend=\"ollama\"", "outcome=\"ok\"", "le=\"+Inf\""]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains("# TYPE ollama_translate_web_searches_total counter"),
        "{after}"
    );
}

// ---------------------------------------------------------------------------------------------
// The proxy's WEB_SEARCH settings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_proxys_settings_bound_the_searches() {
    let fake = FakeOllama::start().await;
    let p = proxy(
        &fake,
        &[
            ("WEB_SEARCH_RESULTS", "2"),
            ("WEB_SEARCH_MAX_USES", "1"),
            ("WEB_SEARCH_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let bs = blocks(&events(
        &post(&p.url, &searching("[search:rust tower]")).await,
    ));
    assert_eq!(bs[1]["content"].as_array().unwrap().len(), 2);
    assert_eq!(
        bodies(&fake, SEARCH),
        [json!({"query": "rust tower", "max_results": 2})]
    );

    // One search a request unless the client says.
    fake.clear_requests();
    let bs = blocks(&events(
        &post(&p.url, &searching("[searches:3:axum]")).await,
    ));
    assert_eq!(bs.len(), 3, "{bs:?}");
    assert_eq!(fake.requests_to(SEARCH).len(), 1);
    let tools = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]);
    fake.clear_requests();
    let a = post(
        &p.url,
        &request("llama3.2", true, "[searches:3:axum]", tools),
    )
    .await;
    assert_eq!(blocks(&events(&a)).len(), 5);
    assert_eq!(fake.requests_to(SEARCH).len(), 2);

    // A search past WEB_SEARCH_TIMEOUT_SECS is unavailable.
    let started = Instant::now();
    let bs = blocks(&events(
        &post(&p.url, &searching("[search:slow crates]")).await,
    ));
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error_code(&bs[1]), "unavailable");
    assert_eq!(bs[2]["type"], "text");
}

#[tokio::test]
async fn web_search_off_drops_the_tool_in_the_proxy() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("WEB_SEARCH", "off")]).await;
    let tools = json!([weather_tool(), web_search_tool("web_search_20250305")]);
    let evs = events(
        &post(
            &p.url,
            &request("llama3.2", true, "[search:rust tower]", tools),
        )
        .await,
    );
    let bs = blocks(&evs);
    assert_eq!(
        bs,
        [json!({"type": "text", "text": "Hello! You said: [search:rust tower]"})]
    );
    assert!(message_delta(&evs)["usage"]
        .get("server_tool_use")
        .is_none());
    assert_eq!(offered(&bodies(&fake, CHAT)[0]), ["get_weather"]);
    assert!(fake.requests_to(SEARCH).is_empty());
}

/// A SearXNG stand-in on loopback: `GET /search` answers two hits for the
/// query (the first with a `publishedDate`); records each request target.
async fn searxng(seen: Arc<Mutex<Vec<String>>>) -> (String, tokio::task::JoinHandle<()>) {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let target = format!("{} {}", req.method(), req.uri());
                seen.lock().unwrap().push(target.clone());
                let status = if target.contains("ratelimited") {
                    429
                } else if target.contains("broken") {
                    500
                } else {
                    200
                };
                let results = json!({"query": "q", "results": [
                    {"url": "https://searx.example/a", "title": "Searx A", "content": "A says hello.",
                     "publishedDate": "2026-11-30T00:00:00"},
                    {"url": "https://searx.example/b", "title": "Searx B", "content": "B says hello.",
                     "publishedDate": ""},
                ]});
                async move {
                    let mut res = hyper::Response::new(Full::new(Bytes::from(results.to_string())));
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(res)
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_searxng_backend_serves_the_proxys_searches() {
    let fake = FakeOllama::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (url, server) = searxng(seen.clone()).await;
    let p = proxy(
        &fake,
        &[("WEB_SEARCH", "searxng"), ("WEB_SEARCH_URL", &url)],
    )
    .await;
    let scrape = || async {
        send("GET", &format!("{}/metrics", p.url), &[], None)
            .await
            .body
    };
    let before = scrape().await;
    let mut tool = web_search_tool("web_search_20250305");
    tool["allowed_domains"] = json!(["searx.example"]);
    let a = post(
        &p.url,
        &request("llama3.2", true, "[search:rust tower]", json!([tool])),
    )
    .await;
    let evs = events(&a);
    let bs = blocks(&evs);
    let items = bs[1]["content"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["page_age"], "2026-11-30T00:00:00");
    assert!(items[1].get("page_age").is_none(), "{}", items[1]);
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /search?q=rust+tower+site%3Asearx.example&format=json"]
    );
    assert!(fake.requests_to(SEARCH).is_empty());
    let told = bodies(&fake, CHAT).pop().unwrap()["messages"][2]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        told.contains(
            "[1] Searx A\nURL: https://searx.example/a\nAge: 2026-11-30T00:00:00\nA says hello.\n"
        ),
        "{told}"
    );
    assert!(
        told.contains("[2] Searx B\nURL: https://searx.example/b\nB says hello.\n"),
        "{told}"
    );

    // Its refusals, as error blocks.
    for (query, code) in [
        ("ratelimited", "too_many_requests"),
        ("broken", "unavailable"),
    ] {
        let text = format!("[search:{query}]");
        let bs = blocks(&events(&post(&p.url, &searching(&text)).await));
        assert_eq!(error_code(&bs[1]), code);
    }

    // Counted by backend and outcome (no other test of this binary
    // searches through SearXNG: exact counts).
    let after = scrape().await;
    let grew = |outcome: &str| {
        let labels = ["backend=\"searxng\"", &*format!("outcome=\"{outcome}\"")];
        let name = "ollama_translate_web_searches_total";
        sample(&after, name, &labels) - sample(&before, name, &labels)
    };
    assert_eq!(grew("ok"), 1.0, "{after}");
    assert_eq!(grew("too_many_requests"), 1.0, "{after}");
    assert_eq!(grew("unavailable"), 1.0, "{after}");
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// In-process: the layer's own search configuration
// ---------------------------------------------------------------------------------------------

/// The layer (with a tokio timer and `search`) over a client to the fake;
/// one request to `/v1/messages`: the status and the body.
async fn through_layer(fake: &FakeOllama, search: WebSearchConfig, body: &Value) -> (u16, String) {
    // The proxies' recorder first: the layer describes its metrics (their
    // units, hence their names) once, to whichever recorder is installed.
    ollama_translate::health::prometheus();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let inner = tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
        let client = client.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let res = client
                .request(Request::from_parts(parts, Full::new(bytes)))
                .await?;
            Ok::<_, BoxError>(res)
        }
    });
    let layer = OllamaTranslateLayer::new()
        .timer(ollama_translate::TokioTimer)
        .web_search(search);
    let req = Request::post(format!("{}/v1/messages", fake.base_url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), layer.layer(inner).oneshot(req))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let status = res.status().as_u16();
    let bytes = tokio::time::timeout(Duration::from_secs(30), res.into_body().collect())
        .await
        .expect("the body within 30 s")
        .expect("a whole body")
        .to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn layer_answer(status: u16, body: String) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers: Default::default(),
        content_type: "text/event-stream".into(),
        body,
        failed: None,
    }
}

/// A backend that records its requests: a slow query sleeps 5 s; others
/// find `n` hits on custom.example with long page text.
fn custom_backend(seen: Arc<Mutex<Vec<SearchRequest>>>, n: usize) -> WebSearchConfig {
    WebSearchConfig::with_backend(move |req: SearchRequest| -> SearchFuture {
        seen.lock().unwrap().push(req.clone());
        Box::pin(async move {
            if req.query.contains("slow") {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Ok((0..n)
                .map(|i| {
                    let mut hit = SearchHit::new(
                        format!("https://custom.example/{i}"),
                        format!("Custom {i}"),
                        format!("{} {}", req.query, "é".repeat(400)),
                    );
                    hit.page_age = Some(format!("{i} days ago"));
                    hit
                })
                .collect())
        })
    })
}

#[tokio::test]
async fn a_backend_of_the_embedders_is_bounded_by_the_layer() {
    let fake = FakeOllama::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = custom_backend(seen.clone(), 5)
        .max_results(2)
        .result_bytes(300);
    let mut tool = web_search_tool("web_search_20250305");
    tool["blocked_domains"] = json!(["ads.example"]);
    let body = request("llama3.2", true, "[search:tower layers]", json!([tool]));
    let (status, text) = through_layer(&fake, config, &body).await;
    let evs = events(&layer_answer(status, text));
    let bs = blocks(&evs);
    check_call(&bs[0], "tower layers");
    let items = bs[1]["content"].as_array().unwrap();
    let urls: Vec<&str> = items.iter().map(|i| i["url"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        ["https://custom.example/0", "https://custom.example/1"]
    );
    assert_eq!(items[1]["title"], "Custom 1");
    assert_eq!(items[1]["page_age"], "1 days ago");
    assert_eq!(
        message_delta(&evs)["usage"]["server_tool_use"]["web_search_requests"],
        1
    );
    // What the backend was asked.
    assert_eq!(
        *seen.lock().unwrap(),
        [SearchRequest {
            query: "tower layers".into(),
            max_results: 2,
            allowed_domains: vec![],
            blocked_domains: vec!["ads.example".into()],
        }]
    );
    assert!(fake.requests_to(SEARCH).is_empty(), "not Ollama's search");
    // The model read the hits, each cut to its bound at a character.
    let follow_up = bodies(&fake, CHAT).pop().unwrap();
    let told = follow_up["messages"][2]["content"].as_str().unwrap();
    assert!(
        told.contains(
            "\n[1] Custom 0\nURL: https://custom.example/0\nAge: 0 days ago\ntower layers é"
        ),
        "{told}"
    );
    assert!(!told.contains("[3]"), "{told}");
    let page = told.split("Age: 1 days ago\n").nth(1).unwrap().trim_end();
    assert!(page.len() <= 300 && page.len() >= 298, "{}", page.len());
    assert_eq!(text_of(&bs), format!("Tool said: {told}"));
}

#[tokio::test]
async fn a_search_past_its_deadline_is_unavailable() {
    let fake = FakeOllama::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = custom_backend(seen.clone(), 3).timeout(Duration::from_millis(200));
    let started = Instant::now();
    let body = request(
        "llama3.2",
        true,
        "[search:slow backend]",
        json!([web_search_tool("web_search_20250305")]),
    );
    let (status, text) = through_layer(&fake, config, &body).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline, not the backend: {:?}",
        started.elapsed()
    );
    let evs = events(&layer_answer(status, text));
    let bs = blocks(&evs);
    assert_eq!(error_code(&bs[1]), "unavailable");
    assert_eq!(message_delta(&evs)["delta"]["stop_reason"], "end_turn");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let follow_up = bodies(&fake, CHAT).pop().unwrap();
    let told = follow_up["messages"][2]["content"].as_str().unwrap();
    assert!(told.contains("failed (unavailable)"), "{told}");
}

#[tokio::test]
async fn the_layers_uses_cap_wins_over_max_uses() {
    let fake = FakeOllama::start().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = custom_backend(seen.clone(), 1).max_uses_cap(1);
    let tools = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]);
    let body = request("llama3.2", true, "[search:one] [search:two]", tools);
    let (status, text) = through_layer(&fake, config, &body).await;
    let bs = blocks(&events(&layer_answer(status, text)));
    assert_eq!(bs[1]["content"].as_array().unwrap().len(), 1);
    assert_eq!(error_code(&bs[3]), "max_uses_exceeded");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // No max_uses: the layer's default.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = custom_backend(seen.clone(), 1).default_max_uses(2);
    let body = request(
        "llama3.2",
        true,
        "[searches:4:again]",
        json!([web_search_tool("web_search_20250305")]),
    );
    let (status, text) = through_layer(&fake, config, &body).await;
    let evs = events(&layer_answer(status, text));
    assert_eq!(
        message_delta(&evs)["usage"]["server_tool_use"]["web_search_requests"],
        2
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn search_off_drops_the_tool() {
    let fake = FakeOllama::start().await;
    let body = request(
        "llama3.2",
        true,
        "[search:rust tower]",
        json!([weather_tool(), web_search_tool("web_search_20250305")]),
    );
    let (status, text) = through_layer(&fake, WebSearchConfig::off(), &body).await;
    let evs = events(&layer_answer(status, text));
    let bs = blocks(&evs);
    assert_eq!(bs.len(), 1);
    assert_eq!(bs[0]["text"], "Hello! You said: [search:rust tower]");
    let chats = bodies(&fake, CHAT);
    assert_eq!(chats.len(), 1);
    assert_eq!(offered(&chats[0]), ["get_weather"]);
    assert!(fake.requests_to(SEARCH).is_empty());
    // With search off, a client tool may be called web_search.
    let body = request(
        "llama3.2",
        true,
        "hi",
        json!([{"name": "web_search", "input_schema": {"type": "object"}}]),
    );
    let (status, _) = through_layer(&fake, WebSearchConfig::off(), &body).await;
    assert_eq!(status, 200);
    assert_eq!(offered(&bodies(&fake, CHAT)[1]), ["web_search"]);
}
