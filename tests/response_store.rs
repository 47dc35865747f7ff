//! Conversation state for the Responses API end to end: the proxy of
//! `examples/proxy` (its `RESPONSES_STORE_*` settings) on a real socket in
//! front of the fake Ollama. `previous_response_id` continues a kept
//! response for the key that got it; `GET`/`DELETE /v1/responses/{id}` read
//! and forget one; failed, cut and `store: false` responses are never kept.

mod common;

use common::fake_ollama::{FakeConfig, FakeOllama};
use common::proxy::{last_chat, send, Answer, Proxy};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn proxy(fake: &FakeOllama, env: &[(&str, &str)]) -> Proxy {
    common::proxy::start(&fake.base_url(), env).await
}

/// `Authorization: Bearer <key>`.
fn bearer(key: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {key}"))]
}

/// `x-api-key: <key>`.
fn x_api_key(key: &str) -> Vec<(String, String)> {
    vec![("x-api-key".into(), key.into())]
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn post(p: &Proxy, who: &[(String, String)], body: &Value) -> Answer {
    let url = format!("{}/v1/responses", p.url);
    send("POST", &url, &refs(who), Some(body)).await
}

async fn get(p: &Proxy, who: &[(String, String)], id: &str) -> Answer {
    let url = format!("{}/v1/responses/{id}", p.url);
    send("GET", &url, &refs(who), None).await
}

async fn delete(p: &Proxy, who: &[(String, String)], id: &str) -> Answer {
    let url = format!("{}/v1/responses/{id}", p.url);
    send("DELETE", &url, &refs(who), None).await
}

/// The SSE events of a Responses stream, checked (names, sequence).
fn events(a: &Answer) -> Vec<Value> {
    assert!(
        a.content_type.starts_with("text/event-stream"),
        "{}",
        a.body
    );
    let mut out: Vec<Value> = Vec::new();
    for (name, data) in a.sse() {
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(Some(data["type"].as_str().unwrap()), name.as_deref());
        assert_eq!(data["sequence_number"], out.len() as u64, "{data}");
        out.push(data);
    }
    out
}

/// The response object the client got: the whole body, or the `response`
/// of the last event of a stream.
fn answered(a: &Answer) -> Value {
    assert_eq!(a.status, 200, "{}", a.body);
    if a.content_type.starts_with("text/event-stream") {
        events(a).last().unwrap()["response"].clone()
    } else {
        a.json()
    }
}

/// One turn that must succeed: the response object.
async fn create(p: &Proxy, who: &[(String, String)], body: Value) -> Value {
    let a = post(p, who, &body).await;
    let r = answered(&a);
    assert!(
        r["status"] == "completed" || r["status"] == "incomplete",
        "{r}"
    );
    r
}

fn id(r: &Value) -> String {
    r["id"].as_str().unwrap().to_string()
}

fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

/// A 404 `previous_response_not_found` in OpenAI's shape.
fn assert_previous_not_found(a: &Answer, id: &str) {
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.content_type.starts_with("application/json"));
    let e = &a.json()["error"];
    assert_eq!(e["code"], "previous_response_not_found", "{e}");
    assert_eq!(e["param"], "previous_response_id", "{e}");
    assert_eq!(
        e["message"],
        format!("Previous response with id '{id}' not found.")
    );
}

/// A 404 for `GET`/`DELETE` of a response that is not kept.
fn assert_not_kept(a: &Answer, id: &str) {
    assert_eq!(a.status, 404, "{}", a.body);
    let e = &a.json()["error"];
    assert_eq!(e["code"], "response_not_found", "{e}");
    assert!(e["message"].as_str().unwrap().contains(id), "{e}");
}

fn roles_and_texts(native: &Value) -> Vec<(String, String)> {
    native["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect()
}

// ------------------------------------------------------------- continuing

#[tokio::test]
async fn three_turns_reach_ollama_as_one_conversation() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    // Every turn streamed, none streamed, and a mix.
    for modes in [
        [false, false, false],
        [true, true, true],
        [true, false, true],
    ] {
        let tag = format!("{modes:?}");
        let r1 = create(
            &p,
            &k,
            json!({"model":"llama3.2","instructions":"Be brief.","temperature":0.1,
                "input":format!("first {tag}"),"stream":modes[0]}),
        )
        .await;
        assert_eq!(output_text(&r1), format!("Hello! You said: first {tag}"));
        assert_eq!(r1["store"], true);
        assert_eq!(r1["previous_response_id"], Value::Null);
        let r2 = create(
            &p,
            &k,
            json!({"model":"llama3.2","previous_response_id":id(&r1),"stream":modes[1],
                "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":format!("second {tag}")}]}]}),
        )
        .await;
        assert_eq!(r2["previous_response_id"], id(&r1));
        assert_eq!(output_text(&r2), format!("Hello! You said: second {tag}"));
        assert_eq!(
            roles_and_texts(&last_chat(&fake)),
            pairs(&[
                ("user", &format!("first {tag}")),
                ("assistant", &format!("Hello! You said: first {tag}")),
                ("user", &format!("second {tag}")),
            ]),
            "turn 2: no instructions (turn 1's are not kept)"
        );
        let r3 = create(
            &p,
            &k,
            json!({"model":"llama3.2","instructions":"Be kind.","previous_response_id":id(&r2),
                "input":format!("third {tag}"),"stream":modes[2]}),
        )
        .await;
        assert_eq!(r3["previous_response_id"], id(&r2));
        assert_eq!(r3["instructions"], "Be kind.");
        assert_eq!(output_text(&r3), format!("Hello! You said: third {tag}"));
        let native = last_chat(&fake);
        assert_eq!(
            roles_and_texts(&native),
            pairs(&[
                ("system", "Be kind."),
                ("user", &format!("first {tag}")),
                ("assistant", &format!("Hello! You said: first {tag}")),
                ("user", &format!("second {tag}")),
                ("assistant", &format!("Hello! You said: second {tag}")),
                ("user", &format!("third {tag}")),
            ]),
            "{tag}"
        );
        assert!(
            native
                .get("options")
                .is_none_or(|o| o.get("temperature").is_none()),
            "turn 1's options are not kept: {native}"
        );
    }
}

#[tokio::test]
async fn kept_function_calls_are_answered_by_function_call_output() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    let tools = json!([{"type":"function","name":"get_weather","parameters":{"type":"object",
        "properties":{"city":{"type":"string"}}}}]);
    for stream in [false, true] {
        let ask = format!(r#"Weather? [call:get_weather:{{"city":"Oslo"}}] stream {stream}"#);
        let r1 = create(
            &p,
            &k,
            json!({"model":"llama3.2","input":ask,"tools":tools,"stream":stream}),
        )
        .await;
        let call = r1["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("a call: {r1}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        let call_id = call["call_id"].as_str().unwrap();

        // Only the call's output goes back.
        let r2 = create(
            &p,
            &k,
            json!({"model":"llama3.2","previous_response_id":id(&r1),"tools":tools,"stream":stream,
                "input":[{"type":"function_call_output","call_id":call_id,"output":"Rainy, 8°C"}]}),
        )
        .await;
        assert_eq!(output_text(&r2), "Tool said: Rainy, 8°C");
        let native = last_chat(&fake);
        assert_eq!(
            native["messages"],
            json!([
                {"role":"user","content":ask},
                {"role":"assistant","content":"","tool_calls":[
                    {"id":call_id,"function":{"name":"get_weather","arguments":{"city":"Oslo"}}}]},
                {"role":"tool","content":"Rainy, 8°C","tool_name":"get_weather","tool_call_id":call_id}
            ]),
            "stream: {stream}"
        );

        // And the conversation goes on after the tool's answer.
        let r3 = create(
            &p,
            &k,
            json!({"model":"llama3.2","previous_response_id":id(&r2),"input":"Thanks!","stream":stream}),
        )
        .await;
        assert_eq!(output_text(&r3), "Hello! You said: Thanks!");
        let native = last_chat(&fake);
        let msgs = native["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 5, "{native}");
        assert_eq!(
            msgs[3],
            json!({"role":"assistant","content":"Tool said: Rainy, 8°C"})
        );
        assert_eq!(msgs[4], json!({"role":"user","content":"Thanks!"}));
    }
}

#[tokio::test]
async fn a_kept_custom_tool_call_from_additional_tools_streams_and_continues() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    let extra = json!({"type":"additional_tools","role":"developer","tools":[
        {"type":"custom","name":"apply_patch","description":"Patch files."}]});
    let ask = r#"patch [call:apply_patch:{"input":"*** Begin Patch"}]"#;
    let a = post(
        &p,
        &k,
        &json!({"model":"llama3.2","stream":true,"input":[extra,{"role":"user","content":ask}]}),
    )
    .await;
    let ev = events(&a);
    assert!(
        ev.iter()
            .any(|e| e["type"] == "response.custom_tool_call_input.done"),
        "{}",
        a.body
    );
    let r1 = answered(&a);
    let call = r1["output"][0].clone();
    assert_eq!(call["type"], "custom_tool_call", "{r1}");
    assert_eq!(call["input"], "*** Begin Patch");
    assert_eq!(get(&p, &k, &id(&r1)).await.json(), r1);

    let a = post(
        &p,
        &k,
        &json!({"model":"llama3.2","stream":true,"previous_response_id":id(&r1),"input":[
            {"type":"custom_tool_call_output","call_id":call["call_id"],"output":"Done"}]}),
    )
    .await;
    assert_eq!(output_text(&answered(&a)), "Tool said: Done");
    let native = last_chat(&fake);
    let names: Vec<&str> = native["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["apply_patch"], "the kept additional_tools item");
    let msgs = native["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{native}");
    assert_eq!(
        msgs[1]["tool_calls"][0]["function"],
        json!({"name":"apply_patch","arguments":{"input":"*** Begin Patch"}})
    );
    assert_eq!(
        msgs[2],
        json!({"role":"tool","content":"Done","tool_name":"apply_patch","tool_call_id":call["call_id"]})
    );
}

#[tokio::test]
async fn continuations_branch_and_never_reach_ollama_when_refused() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    let root = create(&p, &k, json!({"model":"llama3.2","input":"root"})).await;
    let left = create(
        &p,
        &k,
        json!({"model":"llama3.2","previous_response_id":id(&root),"input":"left"}),
    )
    .await;
    let right = create(
        &p,
        &k,
        json!({"model":"llama3.2","previous_response_id":id(&root),"input":"right"}),
    )
    .await;
    for (branch, word) in [(&left, "left"), (&right, "right")] {
        create(
            &p,
            &k,
            json!({"model":"llama3.2","previous_response_id":id(branch),"input":"end"}),
        )
        .await;
        let texts: Vec<String> = roles_and_texts(&last_chat(&fake))
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(
            texts,
            [
                "root",
                "Hello! You said: root",
                word,
                &format!("Hello! You said: {word}"),
                "end"
            ]
        );
    }

    let before = fake.requests_to("/api/chat").len();
    let a = post(
        &p,
        &k,
        &json!({"model":"llama3.2","previous_response_id":"resp_nosuch","input":"x","stream":true}),
    )
    .await;
    assert_previous_not_found(&a, "resp_nosuch");
    // The wrong type: a 400 naming the field.
    let a = post(
        &p,
        &k,
        &json!({"model":"llama3.2","previous_response_id":42,"input":"x"}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["param"], "previous_response_id");
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    assert_eq!(
        fake.requests_to("/api/chat").len(),
        before,
        "none reached Ollama"
    );
}

#[tokio::test]
async fn a_kept_web_search_comes_back_as_the_call_and_its_sources() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    let tools = json!([{"type":"web_search"}]);
    let ask = "what is tower? [search:tower rs]";
    let r1 = create(
        &p,
        &k,
        json!({"model":"llama3.2","input":ask,"tools":tools,
            "include":["web_search_call.action.sources"]}),
    )
    .await;
    let kinds: Vec<&str> = r1["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["web_search_call", "message"], "{r1}");
    let urls: Vec<&str> = r1["output"][0]["action"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap())
        .collect();
    assert!(!urls.is_empty(), "{r1}");
    let searches = fake.requests_to("/api/experimental/web_search").len();

    create(
        &p,
        &k,
        json!({"model":"llama3.2","previous_response_id":id(&r1),"input":"thanks","tools":tools}),
    )
    .await;
    assert_eq!(
        fake.requests_to("/api/experimental/web_search").len(),
        searches,
        "no new search"
    );
    let native = last_chat(&fake);
    let msgs = native["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "assistant", "user"],
        "{native}"
    );
    assert_eq!(msgs[0]["content"], ask);
    assert_eq!(
        msgs[1]["tool_calls"][0]["function"],
        json!({"name":"web_search","arguments":{"query":"tower rs"}})
    );
    assert_eq!(msgs[2]["tool_name"], "web_search");
    for url in &urls {
        assert!(msgs[2]["content"].as_str().unwrap().contains(url), "{url}");
    }
    assert_eq!(msgs[3]["content"], output_text(&r1).as_str());
    assert_eq!(msgs[4]["content"], "thanks");
}

// ------------------------------------------------------------------ owners

/// Another key can neither continue, read nor delete a response.
async fn another_key_is_refused(p: &Proxy, owner: &[(String, String)], other: &[(String, String)]) {
    let r = create(p, owner, json!({"model":"llama3.2","input":"secret plan"})).await;
    let rid = id(&r);
    let a = post(
        p,
        other,
        &json!({"model":"llama3.2","previous_response_id":rid,"input":"what did I say?"}),
    )
    .await;
    assert_previous_not_found(&a, &rid);
    assert_not_kept(&get(p, other, &rid).await, &rid);
    assert_not_kept(&delete(p, other, &rid).await, &rid);
    // Still there for its owner.
    let a = get(p, owner, &rid).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), r);
    let again = create(
        p,
        owner,
        json!({"model":"llama3.2","previous_response_id":rid,"input":"go on"}),
    )
    .await;
    assert_eq!(again["previous_response_id"], rid);
}

#[tokio::test]
async fn a_second_key_cannot_continue_the_first_key_s_conversation() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    // Without PROXY_API_KEY, whatever the client sends is its key.
    another_key_is_refused(&p, &bearer("k1"), &bearer("k2")).await;
    another_key_is_refused(&p, &x_api_key("k1"), &x_api_key("k2")).await;
    another_key_is_refused(&p, &bearer("k1"), &x_api_key("k2")).await;
    another_key_is_refused(&p, &bearer("k1"), &[]).await;
    another_key_is_refused(&p, &[], &bearer("k1")).await;
    another_key_is_refused(&p, &bearer("k1"), &bearer("k1-")).await;

    // The same key in the other header, or with `bearer`, is the same key.
    let r = create(&p, &bearer("k1"), json!({"model":"llama3.2","input":"a"})).await;
    for same in [
        x_api_key("k1"),
        vec![("authorization".into(), "bearer k1".into())],
    ] {
        let a = post(
            &p,
            &same,
            &json!({"model":"llama3.2","previous_response_id":id(&r),"input":"b"}),
        )
        .await;
        assert_eq!(a.status, 200, "{same:?}: {}", a.body);
    }
}

#[tokio::test]
async fn with_proxy_api_key_the_key_guards_and_owners_stay_apart() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("PROXY_API_KEY", "pk")]).await;
    let r = create(&p, &bearer("pk"), json!({"model":"llama3.2","input":"a"})).await;
    let rid = id(&r);
    // The proxy's key in x-api-key is the same key: it continues.
    let a = post(
        &p,
        &x_api_key("pk"),
        &json!({"model":"llama3.2","previous_response_id":rid,"input":"b"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A wrong key is turned away before anything is looked up.
    for wrong in [bearer("k2"), x_api_key("k2"), vec![]] {
        let a = post(
            &p,
            &wrong,
            &json!({"model":"llama3.2","previous_response_id":rid,"input":"b"}),
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(get(&p, &wrong, &rid).await.status, 401);
        assert_eq!(delete(&p, &wrong, &rid).await.status, 401);
    }
    assert_eq!(get(&p, &bearer("pk"), &rid).await.status, 200);
    // The key in x-api-key and another credential in Authorization (kept
    // for the inner service): that credential tells the owners apart.
    let user = |name: &str| {
        vec![
            ("x-api-key".to_string(), "pk".to_string()),
            ("authorization".to_string(), format!("Bearer {name}")),
        ]
    };
    another_key_is_refused(&p, &user("alice"), &user("bob")).await;
}

// ---------------------------------------------------------------- lifetime

#[tokio::test]
async fn responses_expire_after_the_ttl() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("RESPONSES_STORE_TTL_SECS", "1")]).await;
    let k = bearer("k1");
    let r = create(&p, &k, json!({"model":"llama3.2","input":"a"})).await;
    let rid = id(&r);
    assert_eq!(get(&p, &k, &rid).await.status, 200, "kept at first");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_not_kept(&get(&p, &k, &rid).await, &rid);
    let a = post(
        &p,
        &k,
        &json!({"model":"llama3.2","previous_response_id":rid,"input":"b"}),
    )
    .await;
    assert_previous_not_found(&a, &rid);
    assert_not_kept(&delete(&p, &k, &rid).await, &rid);
}

#[tokio::test]
async fn using_a_response_does_not_extend_its_ttl() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("RESPONSES_STORE_TTL_SECS", "2")]).await;
    let k = bearer("k1");
    let r1 = create(&p, &k, json!({"model":"llama3.2","input":"a"})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(&p, &k, &id(&r1)).await.status, 200);
    let r2 = create(
        &p,
        &k,
        json!({"model":"llama3.2","previous_response_id":id(&r1),"input":"b"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_not_kept(&get(&p, &k, &id(&r1)).await, &id(&r1));
    // The younger one still holds the whole conversation.
    create(
        &p,
        &k,
        json!({"model":"llama3.2","previous_response_id":id(&r2),"input":"c"}),
    )
    .await;
    assert_eq!(last_chat(&fake)["messages"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn store_false_is_not_kept() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    for stream in [false, true] {
        let r = create(
            &p,
            &k,
            json!({"model":"llama3.2","input":"a","store":false,"stream":stream}),
        )
        .await;
        assert_eq!(r["store"], false);
        let rid = id(&r);
        assert_not_kept(&get(&p, &k, &rid).await, &rid);
        let a = post(
            &p,
            &k,
            &json!({"model":"llama3.2","previous_response_id":rid,"input":"b"}),
        )
        .await;
        assert_previous_not_found(&a, &rid);
        assert_not_kept(&delete(&p, &k, &rid).await, &rid);
    }
    // A continuation sent with store: false is answered, not kept, and what
    // it continued stays.
    let r1 = create(&p, &k, json!({"model":"llama3.2","input":"a"})).await;
    let r2 = create(
        &p,
        &k,
        json!({"model":"llama3.2","previous_response_id":id(&r1),"input":"b","store":false}),
    )
    .await;
    assert_eq!(r2["store"], false);
    assert_eq!(r2["previous_response_id"], id(&r1));
    assert_not_kept(&get(&p, &k, &id(&r2)).await, &id(&r2));
    assert_eq!(get(&p, &k, &id(&r1)).await.status, 200);
}

#[tokio::test]
async fn failed_responses_are_not_kept() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    for word in ["[error]", "[drop]", "[garbage]"] {
        let a = post(
            &p,
            &k,
            &json!({"model":"llama3.2","input":format!("go {word}"),"stream":true}),
        )
        .await;
        assert_eq!(a.status, 200);
        let ev = events(&a);
        let last = ev.last().unwrap();
        assert_eq!(last["type"], "response.failed", "{word}");
        let rid = last["response"]["id"].as_str().unwrap().to_string();
        assert_eq!(ev[0]["response"]["id"], rid.as_str());
        assert_not_kept(&get(&p, &k, &rid).await, &rid);
        let a = post(
            &p,
            &k,
            &json!({"model":"llama3.2","previous_response_id":rid,"input":"b"}),
        )
        .await;
        assert_previous_not_found(&a, &rid);
    }
    // Not streamed: an error, never a kept response.
    let a = post(&p, &k, &json!({"model":"llama3.2","input":"go [error]"})).await;
    assert_ne!(a.status, 200, "{}", a.body);
    if let Some(rid) = a.json()["id"].as_str() {
        assert_not_kept(&get(&p, &k, rid).await, rid);
    }
}

#[tokio::test]
async fn an_incomplete_response_is_kept() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    for stream in [false, true] {
        let r = create(
            &p,
            &k,
            json!({"model":"llama3.2","input":"count [length]","stream":stream}),
        )
        .await;
        assert_eq!(r["status"], "incomplete");
        let a = get(&p, &k, &id(&r)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.json(), r);
        create(
            &p,
            &k,
            json!({"model":"llama3.2","previous_response_id":id(&r),"input":"go on"}),
        )
        .await;
        let msgs = roles_and_texts(&last_chat(&fake));
        assert_eq!(msgs[1], ("assistant".into(), output_text(&r)));
    }
}

/// The `id` in the first `"id":"resp_…"` of `text`.
fn first_response_id(text: &str) -> Option<String> {
    let start = text.find("\"id\":\"resp_")? + "\"id\":\"".len();
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_string())
}

#[tokio::test]
async fn a_stream_the_client_cuts_off_is_not_kept() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let body =
        json!({"model":"llama3.2","input":"take your time [slow]","stream":true}).to_string();
    let mut s = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    let req = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer k1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        p.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("tok3 ") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("tokens within 10 s")
            .unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.contains("response.created"), "{text}");
    let rid = first_response_id(&text).expect("the id in response.created");
    drop(s);
    assert!(
        fake.wait_until(Duration::from_secs(5), |f| f.cancelled() == 1
            && f.in_flight() == 0)
            .await,
        "the generation is cancelled"
    );
    // Give a late keep every chance to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let k = bearer("k1");
    assert_not_kept(&get(&p, &k, &rid).await, &rid);
    let a = post(
        &p,
        &k,
        &json!({"model":"llama3.2","previous_response_id":rid,"input":"b"}),
    )
    .await;
    assert_previous_not_found(&a, &rid);
}

// ------------------------------------------------------- GET and DELETE

#[tokio::test]
async fn get_returns_the_response_the_client_got() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let k = bearer("k1");
    let tools = json!([{"type":"function","name":"get_weather","parameters":{"type":"object"}}]);
    let bodies = [
        json!({"model":"llama3.2","input":"plain","instructions":"x","metadata":{"a":"b"},
            "max_output_tokens":100,"temperature":0.3}),
        json!({"model":"llama3.2","input":r#"[call:get_weather:{"city":"Oslo"}]"#,"tools":tools}),
        json!({"model":"qwen3","input":"think","reasoning":{"effort":"low","summary":"auto"},
            "include":["reasoning.encrypted_content"]}),
    ];
    for body in bodies {
        for stream in [false, true] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            let a = post(&p, &k, &body).await;
            let r = answered(&a);
            assert_eq!(r["status"], "completed");
            let got = get(&p, &k, &id(&r)).await;
            assert_eq!(got.status, 200, "{}", got.body);
            assert!(got.content_type.starts_with("application/json"));
            assert_eq!(got.json(), r, "{body}");
            if stream {
                // The same id from the first event to the kept one.
                assert_eq!(events(&a)[0]["response"]["id"], r["id"]);
            }
        }
    }
    assert_not_kept(&get(&p, &k, "resp_nosuch").await, "resp_nosuch");
}

#[tokio::test]
async fn delete_forgets_a_response_of_its_own_key_only() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[]).await;
    let (k1, k2) = (bearer("k1"), bearer("k2"));
    let r = create(&p, &k1, json!({"model":"llama3.2","input":"a"})).await;
    let rid = id(&r);
    assert_not_kept(&delete(&p, &k2, &rid).await, &rid);
    assert_eq!(get(&p, &k1, &rid).await.status, 200, "another key's DELETE");
    let a = delete(&p, &k1, &rid).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json(),
        json!({"id":rid,"object":"response","deleted":true})
    );
    assert_not_kept(&get(&p, &k1, &rid).await, &rid);
    assert_not_kept(&delete(&p, &k1, &rid).await, &rid);
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.path.contains("responses")),
        "the proxy answers, not Ollama"
    );
    let a = post(
        &p,
        &k1,
        &json!({"model":"llama3.2","previous_response_id":rid,"input":"b"}),
    )
    .await;
    assert_previous_not_found(&a, &rid);
}

// ------------------------------------------------------------------ bounds

#[tokio::test]
async fn the_least_recently_used_response_goes_first() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("RESPONSES_STORE_ENTRIES", "2")]).await;
    let k = bearer("k1");
    let a = id(&create(&p, &k, json!({"model":"llama3.2","input":"a"})).await);
    let b = id(&create(&p, &k, json!({"model":"llama3.2","input":"b"})).await);
    // a used (read): b is now the least recently used.
    assert_eq!(get(&p, &k, &a).await.status, 200);
    let c = id(&create(&p, &k, json!({"model":"llama3.2","input":"c"})).await);
    assert_not_kept(&get(&p, &k, &b).await, &b);
    assert_eq!(get(&p, &k, &a).await.status, 200);
    assert_eq!(get(&p, &k, &c).await.status, 200);
    // A continuation uses what it continues: c (read last) was used before
    // a's continuation, so a and its continuation d stay.
    let d = id(&create(
        &p,
        &k,
        json!({"model":"llama3.2","previous_response_id":a,"input":"d"}),
    )
    .await);
    assert_not_kept(&get(&p, &k, &c).await, &c);
    assert_eq!(get(&p, &k, &a).await.status, 200);
    assert_eq!(get(&p, &k, &d).await.status, 200);
    // Other keys' responses count against the same bound.
    let other = id(&create(&p, &bearer("k2"), json!({"model":"llama3.2","input":"e"})).await);
    assert_not_kept(&get(&p, &k, &a).await, &a);
    assert_eq!(get(&p, &bearer("k2"), &other).await.status, 200);
}

#[tokio::test]
async fn a_response_larger_than_the_store_is_not_kept() {
    let fake = FakeOllama::start().await;
    let p = proxy(&fake, &[("RESPONSES_STORE_BYTES", "6000")]).await;
    let k = bearer("k1");
    let small = id(&create(&p, &k, json!({"model":"llama3.2","input":"small"})).await);
    let words = vec!["word"; 800].join(" ");
    let big = id(&create(&p, &k, json!({"model":"llama3.2","input":words})).await);
    assert_not_kept(&get(&p, &k, &big).await, &big);
    assert_eq!(
        get(&p, &k, &small).await.status,
        200,
        "nothing was pushed out for it"
    );
    // Several that fit one by one but not together: the oldest go.
    let mut ids = Vec::new();
    for i in 0..8 {
        let words = vec![format!("w{i}"); 100].join(" ");
        ids.push(id(&create(
            &p,
            &k,
            json!({"model":"llama3.2","input":words}),
        )
        .await));
    }
    assert_not_kept(&get(&p, &k, &small).await, &small);
    assert_not_kept(&get(&p, &k, &ids[0]).await, &ids[0]);
    assert_eq!(get(&p, &k, &ids[7]).await.status, 200);
}

#[tokio::test]
async fn a_store_of_no_entries_makes_previous_response_id_a_400() {
    let fake = FakeOllama::start().await;
    for setting in [
        ("RESPONSES_STORE_ENTRIES", "0"),
        ("RESPONSES_STORE_BYTES", "0"),
        ("RESPONSES_STORE_TTL_SECS", "0"),
    ] {
        let p = proxy(&fake, &[setting]).await;
        let k = bearer("k1");
        let r = create(&p, &k, json!({"model":"llama3.2","input":"a"})).await;
        assert_not_kept(&get(&p, &k, &id(&r)).await, &id(&r));
        let before = fake.requests_to("/api/chat").len();
        let a = post(
            &p,
            &k,
            &json!({"model":"llama3.2","previous_response_id":id(&r),"input":"b"}),
        )
        .await;
        assert_eq!(a.status, 400, "{setting:?}: {}", a.body);
        let e = &a.json()["error"];
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["param"], "previous_response_id");
        assert!(
            e["message"].as_str().unwrap().contains("input"),
            "says what to do instead: {e}"
        );
        assert_eq!(fake.requests_to("/api/chat").len(), before);
    }
}

#[tokio::test]
async fn a_response_too_large_to_collect_takes_no_room() {
    let fake = FakeOllama::start().await;
    let p = proxy(
        &fake,
        &[
            ("RESPONSES_STORE_ENTRIES", "1"),
            ("MAX_ANSWER_BYTES", "4000"),
        ],
    )
    .await;
    let k = bearer("k1");
    let kept = id(&create(&p, &k, json!({"model":"llama3.2","input":"short"})).await);
    // Ollama's answer is over the limit: a 502, and nothing kept.
    let words = vec!["word"; 1000].join(" ");
    let a = post(&p, &k, &json!({"model":"llama3.2","input":words})).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(get(&p, &k, &kept).await.status, 200, "still kept");
}

#[tokio::test]
async fn a_response_object_too_large_to_collect_takes_no_room() {
    let fake = FakeOllama::start().await;
    let p = proxy(
        &fake,
        &[
            ("RESPONSES_STORE_ENTRIES", "1"),
            ("MAX_ANSWER_BYTES", "4000"),
        ],
    )
    .await;
    let k = bearer("k1");
    let kept = id(&create(&p, &k, json!({"model":"llama3.2","input":"short"})).await);
    let a = post(
        &p,
        &k,
        &json!({"model":"llama3.2","input":"hi","instructions":"x".repeat(5000)}),
    )
    .await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(get(&p, &k, &kept).await.status, 200, "still kept");
}

#[test]
fn bad_store_settings_are_refused_by_name() {
    use common::child::check;
    for (var, value) in [
        ("RESPONSES_STORE_ENTRIES", "many"),
        ("RESPONSES_STORE_ENTRIES", "-1"),
        ("RESPONSES_STORE_BYTES", "64MiB"),
        ("RESPONSES_STORE_TTL_SECS", "30m"),
        ("RESPONSES_STORE_TTL_SECS", "-5"),
    ] {
        let err = check(&[(var, value)])
            .err()
            .unwrap_or_else(|| panic!("{var}={value:?} is refused"));
        assert!(err.contains(var), "{var}: {err}");
    }
    for (var, value) in [
        ("RESPONSES_STORE_ENTRIES", " 16 "),
        ("RESPONSES_STORE_BYTES", "1048576"),
        ("RESPONSES_STORE_TTL_SECS", "0"),
    ] {
        assert!(check(&[(var, value)]).is_ok(), "{var}={value:?}");
    }
}

// -------------------------------------------------------------------- pool

/// A fake host with only `llama3.2`, loaded.
async fn host() -> FakeOllama {
    FakeOllama::start_with(FakeConfig {
        models: Some(vec!["llama3.2".into()]),
        loaded: vec!["llama3.2".into()],
    })
    .await
}

/// The proxy in front of `hosts`, once it lists their model.
async fn pool(hosts: &[&FakeOllama]) -> Proxy {
    let urls: Vec<String> = hosts.iter().map(|h| h.base_url()).collect();
    let p = common::proxy::start(&urls.join(","), &[("POOL_REFRESH_SECS", "1")]).await;
    for _ in 0..500 {
        let tags = send("GET", &format!("{}/api/tags", p.url), &[], None).await;
        if tags.status == 200 && tags.body.contains("llama3.2") {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the pool never listed llama3.2");
}

fn chats(hosts: &[&FakeOllama]) -> Vec<usize> {
    hosts
        .iter()
        .map(|h| h.requests_to("/api/chat").len())
        .collect()
}

/// The one host whose `/api/chat` count moved since `before`.
fn moved(hosts: &[&FakeOllama], before: &[usize]) -> usize {
    let now = chats(hosts);
    let m: Vec<usize> = (0..hosts.len()).filter(|&i| now[i] != before[i]).collect();
    assert_eq!(m.len(), 1, "{before:?} -> {now:?}");
    m[0]
}

/// A conversation of three turns, `others` new conversations after each;
/// which host each turn went to. `instructions(turn)` are that turn's.
/// New conversations take the hosts in turns: with two hosts and an even
/// `others`, a turn that were not kept on its host would move.
async fn conversation_hosts(
    p: &Proxy,
    hosts: &[&FakeOllama],
    others: usize,
    instructions: impl Fn(usize) -> Option<&'static str>,
) -> Vec<usize> {
    let k = bearer("k1");
    let mut previous: Option<String> = None;
    let mut seen = Vec::new();
    for turn in 0..3 {
        let mut body = json!({"model":"llama3.2","input":format!("turn {turn}")});
        if let Some(i) = instructions(turn) {
            body["instructions"] = json!(i);
        }
        if let Some(prev) = &previous {
            body["previous_response_id"] = json!(prev);
        }
        let before = chats(hosts);
        let r = create(p, &k, body).await;
        seen.push(moved(hosts, &before));
        previous = Some(id(&r));
        // Other conversations start in between.
        for i in 0..others {
            create(
                p,
                &k,
                json!({"model":"llama3.2","input":format!("other {turn} {i}")}),
            )
            .await;
        }
    }
    seen
}

#[tokio::test]
async fn a_continuation_goes_to_the_host_of_its_first_turn() {
    let (a, b) = (host().await, host().await);
    let hosts = [&a, &b];
    let p = pool(&hosts).await;
    for others in [0, 2] {
        let before = chats(&hosts);
        let seen = conversation_hosts(&p, &hosts, others, |_| Some("Be brief.")).await;
        assert!(seen.iter().all(|&h| h == seen[0]), "{seen:?}");
        let after = chats(&hosts);
        assert!(
            others == 0 || (after[0] > before[0] && after[1] > before[1]),
            "new conversations use both hosts: {before:?} -> {after:?}"
        );
        // Without instructions too.
        let seen = conversation_hosts(&p, &hosts, others, |_| None).await;
        assert!(seen.iter().all(|&h| h == seen[0]), "{seen:?}");
    }
    // A kept response is read without asking any host.
    let k = bearer("k1");
    let r = create(&p, &k, json!({"model":"llama3.2","input":"read me"})).await;
    assert_eq!(get(&p, &k, &id(&r)).await.json(), r);
    assert_eq!(delete(&p, &k, &id(&r)).await.status, 200);
    for h in hosts {
        let asked: Vec<String> = h
            .requests()
            .into_iter()
            .map(|r| r.path)
            .filter(|path| path.contains("responses"))
            .collect();
        assert!(asked.is_empty(), "{asked:?}");
    }
    // What would happen unpinned: whole conversations sent anew, each turn
    // a new first user message, move.
    let before = chats(&hosts);
    create(&p, &k, json!({"model":"llama3.2","input":"fresh 1"})).await;
    let first = moved(&hosts, &before);
    let before = chats(&hosts);
    create(&p, &k, json!({"model":"llama3.2","input":"fresh 2"})).await;
    assert_ne!(moved(&hosts, &before), first, "the test can tell");
}

#[tokio::test]
async fn a_continuation_with_other_instructions_stays_on_its_host() {
    let (a, b) = (host().await, host().await);
    let hosts = [&a, &b];
    let p = pool(&hosts).await;
    for others in [0, 2] {
        let seen = conversation_hosts(&p, &hosts, others, |turn| {
            ["Rules one.", "Rules two.", "Rules three."]
                .get(turn)
                .copied()
        })
        .await;
        assert!(seen.iter().all(|&h| h == seen[0]), "changed: {seen:?}");
        let seen = conversation_hosts(&p, &hosts, others, |turn| {
            (turn == 0).then_some("Only first.")
        })
        .await;
        assert!(seen.iter().all(|&h| h == seen[0]), "dropped: {seen:?}");
    }
}
