//! Several Ollama hosts behind one proxy: the proxy of `examples/proxy`
//! with `OLLAMA_BASE_URL` naming several fake Ollamas, each with its own
//! models, loaded models and faults, driven over real sockets the way
//! clients drive it.

mod common;

use common::fake_ollama::{FakeConfig, FakeOllama, SERVER_BUSY};
use common::proxy::{self, sample, send, Proxy};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::time::Duration;

/// A fake with these models, these of them loaded.
async fn host(models: &[&str], loaded: &[&str]) -> FakeOllama {
    FakeOllama::start_with(FakeConfig {
        models: Some(models.iter().map(|m| m.to_string()).collect()),
        loaded: loaded.iter().map(|m| m.to_string()).collect(),
    })
    .await
}

/// The proxy in front of `hosts`, once it has learnt every host's models.
async fn pool(hosts: &[&FakeOllama], env: &[(&str, &str)]) -> Proxy {
    let urls: Vec<String> = hosts.iter().map(|h| h.base_url()).collect();
    let mut env = env.to_vec();
    env.push(("POOL_REFRESH_SECS", "1"));
    let p = proxy::start(&urls.join(","), &env).await;
    let expected = |path: &'static str| async move {
        let mut all = std::collections::BTreeSet::new();
        for h in hosts {
            let list = send("GET", &format!("{}{path}", h.base_url()), &[], None).await;
            for m in list.json()["models"].as_array().unwrap() {
                all.insert(m["name"].as_str().unwrap().to_string());
            }
        }
        all
    };
    let (tags, loaded) = (expected("/api/tags").await, expected("/api/ps").await);
    assert!(
        wait_for(|| async { tag_names(&p).await == tags }).await,
        "the pool learns every host's models"
    );
    // And which are loaded where (the proxy is another process: its first
    // round of questions may still be under way).
    assert!(
        wait_for(|| async { names(&p, "/api/ps").await == loaded }).await,
        "the pool learns every host's loaded models"
    );
    p
}

async fn names(p: &Proxy, path: &str) -> std::collections::BTreeSet<String> {
    let list = send("GET", &format!("{}{path}", p.url), &[], None).await;
    if list.status != 200 {
        return Default::default();
    }
    list.json()["models"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn tag_names(p: &Proxy) -> std::collections::BTreeSet<String> {
    names(p, "/api/tags").await
}

/// Polls `cond` every 20 ms for up to 10 s.
async fn wait_for<F, Fut>(cond: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn chat(model: &str, user: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": user}]})
}

async fn openai_chat(p: &Proxy, model: &str, user: &str) -> proxy::Answer {
    let body = chat(model, user);
    send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&body),
    )
    .await
}

/// Which hosts got a generation for `model`, as counts.
fn spread(hosts: &[&FakeOllama], model: &str) -> Vec<usize> {
    hosts.iter().map(|h| h.requests_for_model(model)).collect()
}

#[tokio::test]
async fn requests_go_to_the_hosts_that_have_the_model() {
    let a = host(&["qwen3"], &[]).await;
    let b = host(&["llama3.2"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;

    for i in 0..3 {
        let res = openai_chat(&p, "llama3.2", &format!("hello {i}")).await;
        assert_eq!(res.status, 200, "{}", res.body);
        let res = openai_chat(&p, "qwen3", &format!("hello {i}")).await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    assert_eq!(spread(&[&a, &b], "llama3.2"), [0, 3]);
    assert_eq!(spread(&[&a, &b], "qwen3"), [3, 0]);

    // Native requests passed through are routed the same way.
    let native = json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let res = send("POST", &format!("{}/api/chat", p.url), &[], Some(&native)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(spread(&[&a, &b], "llama3.2"), [0, 4]);
    let show = json!({"model": "qwen3"});
    let res = send("POST", &format!("{}/api/show", p.url), &[], Some(&show)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(a.requests_to("/api/show").len(), 1);
    assert_eq!(b.requests_to("/api/show").len(), 0);
}

#[tokio::test]
async fn a_model_no_host_has_is_a_404_in_the_client_s_dialect() {
    let a = host(&["qwen3"], &[]).await;
    let b = host(&["llama3.2"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;

    let res = openai_chat(&p, "nosuch-model", "hi").await;
    assert_eq!(res.status, 404, "{}", res.body);
    let err = res.json();
    assert_eq!(err["error"]["type"], "not_found_error", "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nosuch-model"));

    let messages = json!({"model": "nosuch-model", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]});
    let res = send(
        "POST",
        &format!("{}/v1/messages", p.url),
        &[],
        Some(&messages),
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.body);
    let err = res.json();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "not_found_error");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nosuch-model"));

    // No host was asked.
    assert_eq!(
        a.requests_to("/api/chat").len() + b.requests_to("/api/chat").len(),
        0
    );
}

#[tokio::test]
async fn tags_and_models_list_every_model_of_every_reachable_host_once() {
    let a = host(&["qwen3", "llama3.2"], &["qwen3"]).await;
    let mut b = host(&["llama3.2", "nomic-embed-text"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;

    let names = tag_names(&p).await;
    let want: std::collections::BTreeSet<String> =
        ["qwen3:latest", "llama3.2:latest", "nomic-embed-text:latest"]
            .map(String::from)
            .into();
    assert_eq!(names, want);
    let models = send("GET", &format!("{}/v1/models", p.url), &[], None).await;
    assert_eq!(models.status, 200, "{}", models.body);
    let mut ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["llama3.2:latest", "nomic-embed-text:latest", "qwen3:latest"]
    );
    let ps = send("GET", &format!("{}/api/ps", p.url), &[], None).await;
    assert_eq!(ps.json()["models"][0]["name"], "qwen3:latest");
    assert_eq!(ps.json()["models"].as_array().unwrap().len(), 1);

    // A host that stops answering leaves the list at the next refresh.
    b.stop().await;
    assert!(
        wait_for(|| async { tag_names(&p).await.len() == 2 }).await,
        "nomic-embed-text leaves with its host"
    );
}

#[tokio::test]
async fn a_host_with_the_model_loaded_comes_first() {
    let a = host(&["qwen3"], &[]).await;
    let b = host(&["qwen3"], &["qwen3"]).await;
    let c = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b, &c], &[]).await;
    // New conversations, one after another: the warm host takes them all.
    for i in 0..5 {
        let res = openai_chat(&p, "qwen3", &format!("conversation {i}")).await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    assert_eq!(spread(&[&a, &b, &c], "qwen3"), [0, 5, 0]);
}

/// Opens a streamed chat and returns once its head is in; the stream stays
/// open while the response is held.
async fn open_stream(p: &Proxy, user: &str) -> hyper::Response<Incoming> {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = json!({"model": "qwen3", "stream": true,
        "messages": [{"role": "user", "content": user}]});
    let req = hyper::Request::post(format!("{}/v1/chat/completions", p.url))
        .header("content-type", "application/json")
        .body(Full::new(body.to_string().into()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("a head within 10 s")
        .expect("an answer");
    assert_eq!(res.status(), 200);
    res
}

#[tokio::test]
async fn concurrent_streams_spread_over_equal_hosts_and_count_until_they_end() {
    let hosts = [
        host(&["qwen3"], &[]).await,
        host(&["qwen3"], &[]).await,
        host(&["qwen3"], &[]).await,
    ];
    let refs: Vec<&FakeOllama> = hosts.iter().collect();
    let p = pool(&refs, &[]).await;
    // Six streams that stall after their first token: each stays in flight.
    let mut open = Vec::new();
    for i in 0..6 {
        open.push(open_stream(&p, &format!("[stall] number {i}")).await);
    }
    assert!(
        wait_for(|| async { hosts.iter().all(|h| h.in_flight() == 2) }).await,
        "two streams on each host: {:?}",
        hosts.iter().map(FakeOllama::in_flight).collect::<Vec<_>>()
    );
    // The clients go away: every generation is cancelled upstream.
    open.clear();
    assert!(
        wait_for(|| async { hosts.iter().all(|h| h.in_flight() == 0) }).await,
        "the streams end on every host"
    );
    assert_eq!(hosts.iter().map(FakeOllama::cancelled).sum::<usize>(), 6);
    // Nothing counts as in flight any more: the next six spread again.
    for i in 0..6 {
        open.push(open_stream(&p, &format!("[stall] again {i}")).await);
    }
    assert!(
        wait_for(|| async { hosts.iter().all(|h| h.in_flight() == 2) }).await,
        "two streams on each host again: {:?}",
        hosts.iter().map(FakeOllama::in_flight).collect::<Vec<_>>()
    );
}

/// The turns of a conversation as Claude Code or an SDK sends them: the
/// whole history every time.
fn turn(system: &str, users: &[&str]) -> Value {
    let mut messages = vec![json!({"role": "system", "content": system})];
    for (i, u) in users.iter().enumerate() {
        messages.push(json!({"role": "user", "content": u}));
        if i + 1 < users.len() {
            messages.push(json!({"role": "assistant", "content": format!("answer {i}")}));
        }
    }
    json!({"model": "qwen3", "messages": messages})
}

/// Which host (index) got the last generation.
fn last_host(hosts: &[&FakeOllama], before: &[usize]) -> usize {
    let now = spread(hosts, "qwen3");
    let moved: Vec<usize> = (0..hosts.len()).filter(|&i| now[i] != before[i]).collect();
    assert_eq!(
        moved.len(),
        1,
        "one host got the turn: {before:?} -> {now:?}"
    );
    moved[0]
}

#[tokio::test]
async fn a_conversation_stays_on_its_host_and_moves_when_that_host_dies() {
    let mut hosts = [
        host(&["qwen3"], &["qwen3"]).await,
        host(&["qwen3"], &["qwen3"]).await,
        host(&["qwen3"], &["qwen3"]).await,
    ];
    let p = {
        let refs: Vec<&FakeOllama> = hosts.iter().collect();
        pool(&refs, &[]).await
    };
    let url = format!("{}/v1/chat/completions", p.url);
    let mut users = vec!["Plan a trip"];
    let mut pinned = None;
    let later = ["And Paris?", "What about trains?", "Thanks"];
    for (n, next) in later.iter().enumerate() {
        let refs: Vec<&FakeOllama> = hosts.iter().collect();
        let before = spread(&refs, "qwen3");
        let res = send("POST", &url, &[], Some(&turn("Be brief.", &users))).await;
        assert_eq!(res.status, 200, "{}", res.body);
        let now = last_host(&refs, &before);
        assert_eq!(
            *pinned.get_or_insert(now),
            now,
            "turn {n} stays on its host"
        );
        // Other conversations come and go in between: they spread.
        let before = spread(&refs, "qwen3");
        for i in 0..3 {
            let other = turn("Be brief.", &[&format!("other {n} {i}")]);
            assert_eq!(send("POST", &url, &[], Some(&other)).await.status, 200);
        }
        let after = spread(&refs, "qwen3");
        let touched = (0..3).filter(|&i| after[i] > before[i]).count();
        assert_eq!(
            touched, 3,
            "new conversations go round: {before:?} -> {after:?}"
        );
        users.push(next);
    }
    // Its host dies: the next turn moves, and stays where it moved.
    let first = pinned.unwrap();
    hosts[first].stop().await;
    let refs: Vec<&FakeOllama> = hosts.iter().collect();
    let before = spread(&refs, "qwen3");
    let res = send("POST", &url, &[], Some(&turn("Be brief.", &users))).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let moved = last_host(&refs, &before);
    assert_ne!(moved, first);
    users.push("One more");
    for _ in 0..2 {
        let before = spread(&refs, "qwen3");
        let res = send("POST", &url, &[], Some(&turn("Be brief.", &users))).await;
        assert_eq!(res.status, 200, "{}", res.body);
        assert_eq!(last_host(&refs, &before), moved, "re-pinned");
    }
}

#[tokio::test]
async fn claude_code_s_session_header_keeps_its_requests_together() {
    let hosts = [
        host(&["qwen3"], &["qwen3"]).await,
        host(&["qwen3"], &["qwen3"]).await,
    ];
    let refs: Vec<&FakeOllama> = hosts.iter().collect();
    let p = pool(&refs, &[]).await;
    let url = format!("{}/v1/messages", p.url);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..6 {
        // Different first messages: only the header ties them together.
        let body = json!({"model": "qwen3", "max_tokens": 64,
            "messages": [{"role": "user", "content": format!("task {i}")}]});
        let headers = [("x-claude-code-session-id", "5f8c-session")];
        let before = spread(&refs, "qwen3");
        let res = send("POST", &url, &headers, Some(&body)).await;
        assert_eq!(res.status, 200, "{}", res.body);
        seen.insert(last_host(&refs, &before));
    }
    assert_eq!(seen.len(), 1, "one host for the session");
}

#[tokio::test]
async fn a_host_that_refuses_connections_is_skipped_before_the_first_byte() {
    let mut a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;
    // The warm host goes away between two refreshes: the request it would
    // have had goes to the other host, invisibly.
    a.stop().await;
    let res = openai_chat(&p, "qwen3", "hello").await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(b.requests_for_model("qwen3"), 1);
    // A stream too.
    let res = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&json!({"model": "qwen3", "stream": true, "messages": [{"role": "user", "content": "again"}]})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.failed.is_none());
    assert_eq!(b.requests_for_model("qwen3"), 2);
    // It comes back: once a probe sees it, it is used again (and warm).
    a.restart().await;
    let n = std::sync::atomic::AtomicUsize::new(0);
    assert!(
        wait_for(|| async {
            // New conversations each time (one would stick to its host).
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            openai_chat(&p, "qwen3", &format!("are you back {i}"))
                .await
                .status
                == 200
                && a.requests_for_model("qwen3") > 0
        })
        .await,
        "the host is used again after it answers a probe"
    );
}

#[tokio::test]
async fn a_busy_host_is_skipped_and_rested() {
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;
    a.set_busy(true);
    let res = openai_chat(&p, "qwen3", "first").await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(a.requests_to("/api/chat").len(), 1, "tried the warm host");
    assert_eq!(b.requests_for_model("qwen3"), 1, "then the other");
    // While it cools down it is not asked.
    let res = openai_chat(&p, "qwen3", "second").await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(a.requests_to("/api/chat").len(), 1);
    assert_eq!(b.requests_for_model("qwen3"), 2);

    // Every host busy: the client gets Ollama's 503 in its own dialect.
    b.set_busy(true);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = openai_chat(&p, "qwen3", "third").await;
    assert_eq!(res.status, 503, "{}", res.body);
    assert!(res.body.contains("server busy"), "{}", res.body);
    assert!(SERVER_BUSY.starts_with("server busy"));
}

#[tokio::test]
async fn a_model_removed_from_a_host_is_found_on_another() {
    let a = host(&["qwen3", "llama3.2"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;
    // `ollama rm qwen3` on the warm host, between two refreshes: its 404
    // sends the request on, and the pool asks it again what it has.
    a.set_models(Some(&["llama3.2"]));
    let res = openai_chat(&p, "qwen3", "where are you").await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        a.requests_for_model("qwen3"),
        1,
        "asked the host that listed it"
    );
    assert_eq!(b.requests_for_model("qwen3"), 1, "then the other");
    // It is not asked for that model again.
    for i in 0..3 {
        let res = openai_chat(&p, "qwen3", &format!("again {i}")).await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    assert_eq!(spread(&[&a, &b], "qwen3"), [1, 4]);
    // Gone from every host: Ollama's own 404 reaches the client.
    b.set_models(Some(&[]));
    let res = openai_chat(&p, "qwen3", "anyone").await;
    assert_eq!(res.status, 404, "{}", res.body);
    assert!(res.body.contains("qwen3"), "{}", res.body);
    assert!(
        wait_for(|| async { tag_names(&p).await.len() == 1 }).await,
        "only llama3.2 is left in the list"
    );
}

#[tokio::test]
async fn a_stream_that_dies_after_its_first_bytes_is_not_retried() {
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;
    a.set_die_mid_stream(true);
    let res = send(
        "POST",
        &format!("{}/v1/chat/completions", p.url),
        &[],
        Some(&json!({"model": "qwen3", "stream": true, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(res.status, 200);
    // What reached the client stays: an in-band error ends it.
    assert!(res.body.contains("Hello!"), "{}", res.body);
    assert!(res.body.contains("\"error\""), "{}", res.body);
    assert_eq!(
        b.requests_for_model("qwen3"),
        0,
        "no second host after bytes went out"
    );
}

#[tokio::test]
async fn a_slow_host_s_waiting_requests_count_against_it() {
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &["qwen3"]).await;
    let p = pool(&[&a, &b], &[]).await;
    a.set_header_delay(Duration::from_secs(3));
    b.set_header_delay(Duration::from_secs(3));
    // Four requests at once on two equal hosts: two each, whatever the
    // order they arrive in, because a request counts from its call.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..4 {
        let url = format!("{}/v1/chat/completions", p.url);
        let body = chat("qwen3", &format!("slow {i}"));
        calls.spawn(async move { send("POST", &url, &[], Some(&body)).await.status });
    }
    let statuses = calls.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(spread(&[&a, &b], "qwen3"), [2, 2]);
}

#[tokio::test]
async fn anthropic_and_responses_clients_stream_through_the_pool() {
    let a = host(&["qwen3"], &[]).await;
    let b = host(&["llama3.2"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;

    let messages = json!({"model": "llama3.2", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "Hello there"}]});
    let res = send(
        "POST",
        &format!("{}/v1/messages", p.url),
        &[],
        Some(&messages),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let events = res.sse();
    assert_eq!(events.first().unwrap().0.as_deref(), Some("message_start"));
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    let text: String = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "Hello! You said: Hello there");
    assert_eq!(spread(&[&a, &b], "llama3.2"), [0, 1]);

    let responses = json!({"model": "qwen3", "stream": true, "input": "Hi pool"});
    let res = send(
        "POST",
        &format!("{}/v1/responses", p.url),
        &[],
        Some(&responses),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let events = res.sse();
    let done = events
        .iter()
        .find(|(n, _)| n.as_deref() == Some("response.completed"))
        .expect("response.completed");
    let done: Value = serde_json::from_str(&done.1).unwrap();
    assert_eq!(done["response"]["status"], "completed");
    assert_eq!(spread(&[&a, &b], "qwen3"), [1, 0]);
}

#[tokio::test]
async fn readiness_and_metrics_follow_the_hosts() {
    let mut a = host(&["qwen3"], &["qwen3"]).await;
    let mut b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[("READINESS_PROBE_SECS", "1")]).await;
    let ready = || async { send("GET", &format!("{}/readyz", p.url), &[], None).await };
    assert!(wait_for(|| async { ready().await.status == 200 }).await);
    let a_label = format!("server_address=\"{}\"", a.base_url());
    let b_label = format!("server_address=\"{}\"", b.base_url());
    let scrape = || async {
        send("GET", &format!("{}/metrics", p.url), &[], None)
            .await
            .body
    };

    let before = scrape().await;
    let session = [("x-session-id", "metrics-session")];
    let url = format!("{}/v1/chat/completions", p.url);
    for i in 0..2 {
        let body = chat("qwen3", &format!("count me {i}"));
        assert_eq!(send("POST", &url, &session, Some(&body)).await.status, 200);
    }
    let after = scrape().await;
    let routed = |text: &str, affinity: &str| {
        let label = format!("affinity=\"{affinity}\"");
        sample(
            text,
            "ollama_translate_pool_requests_total",
            &[&a_label, &label],
        )
    };
    assert_eq!(
        routed(&after, "new") - routed(&before, "new"),
        1.0,
        "{after}"
    );
    assert_eq!(routed(&after, "kept") - routed(&before, "kept"), 1.0);
    assert_eq!(
        sample(&after, "ollama_translate_pool_host_up", &[&a_label]),
        1.0
    );

    // One host down: still ready, and the gauge says which.
    a.stop().await;
    let body = chat("qwen3", "after the fall");
    assert_eq!(send("POST", &url, &[], Some(&body)).await.status, 200);
    assert!(
        wait_for(|| async {
            sample(
                &scrape().await,
                "ollama_translate_pool_host_up",
                &[&a_label],
            ) == 0.0
        })
        .await
    );
    let text = scrape().await;
    assert_eq!(
        sample(&text, "ollama_translate_pool_host_up", &[&b_label]),
        1.0
    );
    assert!(
        sample(
            &text,
            "ollama_translate_pool_failovers_total",
            &["reason=\"unreachable\""]
        ) >= 1.0
    );
    assert_eq!(ready().await.status, 200);

    // Both down: not ready, naming the hosts.
    b.stop().await;
    assert!(wait_for(|| async { ready().await.status == 503 }).await);
    let why = ready().await.json();
    let reason = why["reason"].as_str().unwrap();
    assert!(
        reason.contains(&a.base_url()) && reason.contains(&b.base_url()),
        "{reason}"
    );
    let res = openai_chat(&p, "qwen3", "nobody home").await;
    assert_eq!(res.status, 502, "{}", res.body);
}

#[tokio::test]
async fn other_requests_pass_through_and_native_bodies_are_bounded() {
    let a = host(&["qwen3"], &[]).await;
    let b = host(&["llama3.2"], &[]).await;
    let p = pool(&[&a, &b], &[("MAX_BODY_BYTES", "4096")]).await;
    let version = send("GET", &format!("{}/api/version", p.url), &[], None).await;
    assert_eq!(version.status, 200, "{}", version.body);
    assert!(version.json()["version"].is_string());
    let root = send("GET", &format!("{}/", p.url), &[], None).await;
    assert_eq!(root.body, "Ollama is running");

    let big = json!({"model": "qwen3", "stream": false,
        "messages": [{"role": "user", "content": "x".repeat(8192)}]});
    let res = send("POST", &format!("{}/api/chat", p.url), &[], Some(&big)).await;
    assert_eq!(res.status, 413, "{}", res.body);
    assert!(res.json()["error"].as_str().unwrap().contains("4096"));
    assert_eq!(a.requests_to("/api/chat").len(), 0, "never sent");
    // And the proxy keeps serving.
    let small = json!({"model": "qwen3", "stream": false,
        "messages": [{"role": "user", "content": "small"}]});
    let res = send("POST", &format!("{}/api/chat", p.url), &[], Some(&small)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(a.requests_for_model("qwen3"), 1);
}

/// Sends a request head and `sent` bytes of a body that claims `declared`,
/// then holds the connection open; returns the socket.
async fn partial_post(p: &Proxy, declared: usize, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(&p.addr).await.unwrap();
    let head = format!(
        "POST /api/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let body = format!("{{\"model\":\"qwen3\",\"x\":\"{}", "y".repeat(sent));
    s.write_all(&body.as_bytes()[..sent]).await.unwrap();
    s
}

/// The status line and body of what the proxy answers on `s`.
async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn native_bodies_the_pool_reads_share_a_budget_and_a_deadline() {
    let a = host(&["qwen3"], &[]).await;
    let b = host(&["qwen3"], &[]).await;
    let env = [
        ("REQUEST_MEMORY_BYTES", "10000"),
        ("CLIENT_TIMEOUT_SECS", "2"),
    ];
    let p = pool(&[&a, &b], &env).await;
    // One slow body holds 6 000 bytes of the budget; a second one that
    // needs 6 000 more gets a 503 to retry later.
    let mut first = partial_post(&p, 20_000, 6_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = partial_post(&p, 20_000, 6_000).await;
    let answer = read_answer(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // The first never finishes: a 408 at the deadline.
    let answer = read_answer(&mut first).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 2 s"), "{answer}");
    // The budget is given back: a whole request goes through.
    let body =
        json!({"model": "qwen3", "stream": false, "messages": [{"role": "user", "content": "ok"}]});
    let res = send("POST", &format!("{}/api/chat", p.url), &[], Some(&body)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        a.requests_to("/api/chat").len() + b.requests_to("/api/chat").len(),
        1
    );
}

/// A loopback port that takes no connections: a listener whose accept queue
/// is full, so the kernel drops new connections' SYNs and `connect` waits.
/// Keep what it returns alive for as long as the port should stay silent.
async fn silent_port() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            _ => return (listener, held, format!("http://{addr}")),
        }
    }
    panic!("the accept queue never filled");
}

#[tokio::test]
async fn a_host_that_takes_no_connection_is_given_up_after_the_connect_timeout() {
    let (_listener, _held, silent) = silent_port().await;
    let good = host(&["qwen3"], &[]).await;
    let urls = format!("{silent},{}", good.base_url());
    let p = proxy::start(&urls, &[("POOL_REFRESH_SECS", "1")]).await;
    // Requests that name no model may go to either host; the silent one
    // costs the connect timeout, then the request moves on.
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let version = send("GET", &format!("{}/api/version", p.url), &[], None).await;
        assert_eq!(version.status, 200, "{}", version.body);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "{took:?}");
    // Once known to be down, it is not tried again.
    let started = std::time::Instant::now();
    for _ in 0..4 {
        let version = send("GET", &format!("{}/api/version", p.url), &[], None).await;
        assert_eq!(version.status, 200, "{}", version.body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(good.requests_to("/api/version").len(), 6);

    // Alone, such a host is a 502 naming it, after the connect timeout
    // rather than the upstream idle timeout.
    let alone = proxy::start(&silent, &[]).await;
    let started = std::time::Instant::now();
    let res = openai_chat(&alone, "qwen3", "anyone there").await;
    assert_eq!(res.status, 502, "{}", res.body);
    assert!(
        res.body.contains(silent.trim_start_matches("http://")),
        "{}",
        res.body
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_web_search_goes_to_a_host_that_can_search() {
    // Host `a` is an Ollama without /api/experimental/web_search (too old, or cloud
    // features off): whichever host the pool tries first, the search is run by `b`.
    let a = host(&["llama3.2"], &[]).await;
    let b = host(&["llama3.2"], &[]).await;
    a.set_no_search(true);
    let p = pool(&[&a, &b], &[]).await;
    for round in 0..2 {
        let body = json!({"model": "llama3.2", "max_tokens": 64,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": format!("[search:pool round {round}]")}]});
        let res = send("POST", &format!("{}/v1/messages", p.url), &[], Some(&body)).await;
        assert_eq!(res.status, 200, "{}", res.body);
        let m: Value = serde_json::from_str(&res.body).unwrap();
        let result = m["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "web_search_tool_result")
            .expect("a result block")
            .clone();
        assert!(
            result["content"].is_array(),
            "the search ran on a host that can search: {result}"
        );
        assert_eq!(m["usage"]["server_tool_use"]["web_search_requests"], 1);
    }
    assert_eq!(b.requests_to("/api/experimental/web_search").len(), 2);
    assert!(
        !a.requests_to("/api/experimental/web_search").is_empty(),
        "searches are spread like other requests, so `a` was tried"
    );
    let metrics = send("GET", &format!("{}/metrics", p.url), &[], None).await;
    let failovers = sample(
        &metrics.body,
        "ollama_translate_pool_failovers_total",
        &["reason=\"search_unavailable\""],
    );
    assert_eq!(
        failovers as usize,
        a.requests_to("/api/experimental/web_search").len(),
        "each search `a` could not run went on to `b`"
    );
}

/// The proxy's `/metrics`.
async fn scrape(p: &Proxy) -> String {
    send("GET", &format!("{}/metrics", p.url), &[], None)
        .await
        .body
}

/// `ollama_translate_pool_host_up` for `h`.
async fn host_up(p: &Proxy, h: &FakeOllama) -> f64 {
    let label = format!("server_address=\"{}\"", h.base_url());
    sample(&scrape(p).await, "ollama_translate_pool_host_up", &[&label])
}

fn failovers(text: &str, reason: &str) -> f64 {
    let label = format!("reason=\"{reason}\"");
    sample(text, "ollama_translate_pool_failovers_total", &[&label])
}

#[tokio::test]
async fn a_host_that_answers_500s_is_skipped_then_ejected_and_comes_back() {
    // The warm host's runner died while loading: every generation is a 500,
    // while it still lists its models. Stickiness off.
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(
        &[&a, &b],
        &[("POOL_SESSIONS", "0"), ("READINESS_PROBE_SECS", "1")],
    )
    .await;
    a.set_fail(Some(500));
    let before = scrape(&p).await;
    for i in 0..8 {
        let res = openai_chat(&p, "qwen3", &format!("request {i}")).await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    // Tried until its third failure in a row, then left alone.
    assert_eq!(a.requests_to("/api/chat").len(), 3);
    assert_eq!(b.requests_for_model("qwen3"), 8);
    let after = scrape(&p).await;
    assert_eq!(
        failovers(&after, "server_error") - failovers(&before, "server_error"),
        3.0,
        "{after}"
    );
    assert_eq!(host_up(&p, &a).await, 0.0);
    assert_eq!(host_up(&p, &b).await, 1.0);
    // A refresh does not bring it back: it lists its models all the same.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let res = openai_chat(&p, "qwen3", "after a refresh").await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(a.requests_to("/api/chat").len(), 3, "still ejected");
    let ready = send("GET", &format!("{}/readyz", p.url), &[], None).await;
    assert_eq!(ready.status, 200, "b serves: {}", ready.body);

    // It recovers: once its cool-down is over it is tried again, and one
    // answer read to its end makes it a host like any other.
    a.set_fail(None);
    let n = std::sync::atomic::AtomicUsize::new(0);
    assert!(
        wait_for(|| async {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let res = openai_chat(&p, "qwen3", &format!("back {i}")).await;
            res.status == 200 && a.requests_for_model("qwen3") > 3
        })
        .await,
        "tried again after its cool-down"
    );
    assert!(wait_for(|| async { host_up(&p, &a).await == 1.0 }).await);
}

#[tokio::test]
async fn a_request_every_host_fails_blames_no_host() {
    // Ollama answers an option of the wrong type with a 500: the request's
    // fault, not the host's.
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[("READINESS_PROBE_SECS", "1")]).await;
    let before = scrape(&p).await;
    let bad = json!({"model": "qwen3", "stream": false, "options": {"temperature": "hot"},
        "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..4 {
        let res = send("POST", &format!("{}/api/chat", p.url), &[], Some(&bad)).await;
        assert_eq!(res.status, 500, "{}", res.body);
        assert!(res.body.contains("temperature"), "{}", res.body);
    }
    // Each was tried on the other host once.
    assert_eq!(
        a.requests_to("/api/chat").len() + b.requests_to("/api/chat").len(),
        8
    );
    let after = scrape(&p).await;
    assert_eq!(
        failovers(&after, "server_error") - failovers(&before, "server_error"),
        4.0
    );
    // Both hosts are still healthy (the gauge is the pool's last round:
    // the proxy is another process), and the warm one still comes first.
    assert!(wait_for(|| async { host_up(&p, &a).await == 1.0 }).await);
    assert!(wait_for(|| async { host_up(&p, &b).await == 1.0 }).await);
    let res = openai_chat(&p, "qwen3", "a good one").await;
    assert_eq!(res.status, 200, "{}", res.body);
    let good = |h: &FakeOllama| {
        h.requests_to("/api/chat")
            .iter()
            .filter(|r| r.body["options"]["temperature"] != "hot")
            .count()
    };
    assert_eq!((good(&a), good(&b)), (1, 0));
}

#[tokio::test]
async fn answers_that_are_not_ollama_s_eject_at_once_and_readiness_follows() {
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[("READINESS_PROBE_SECS", "1")]).await;
    let ready = || async { send("GET", &format!("{}/readyz", p.url), &[], None).await };
    assert!(wait_for(|| async { ready().await.status == 200 }).await);
    // Another server took a's port: a page, not Ollama's NDJSON.
    a.set_garbage(true);
    for i in 0..5 {
        let res = openai_chat(&p, "qwen3", &format!("page {i}")).await;
        assert_eq!(res.status, 200, "{}", res.body);
        assert!(!res.body.contains("It works"), "{}", res.body);
    }
    assert_eq!(a.requests_to("/api/chat").len(), 3);
    assert_eq!(b.requests_for_model("qwen3"), 5);
    assert_eq!(host_up(&p, &a).await, 0.0);
    assert_eq!(ready().await.status, 200);
    // A 5xx that is not Ollama's (a proxy's HTML 502) is no better.
    b.set_fail(Some(502));
    b.set_garbage(true);
    for i in 0..3 {
        let res = openai_chat(&p, "qwen3", &format!("nobody {i}")).await;
        assert_eq!(res.status, 502, "{}", res.body);
    }
    assert_eq!(b.requests_for_model("qwen3"), 8);
    assert_eq!(host_up(&p, &b).await, 0.0);
    // Every host ejected: not ready, naming them.
    assert!(wait_for(|| async { ready().await.status == 503 }).await);
    let reason = ready().await.json()["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains(&a.base_url()) && reason.contains(&b.base_url()),
        "{reason}"
    );
}

#[tokio::test]
async fn a_host_silent_after_its_head_is_given_up_and_its_conversation_moves() {
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[("UPSTREAM_IDLE_TIMEOUT", "1")]).await;
    a.set_silent_after_headers(true);
    let url = format!("{}/v1/chat/completions", p.url);
    let session = [("x-session-id", "silent-conversation")];
    let started = std::time::Instant::now();
    for i in 0..3 {
        let body = json!({"model": "qwen3", "stream": true,
            "messages": [{"role": "user", "content": format!("turn {i}")}]});
        let res = send("POST", &url, &session, Some(&body)).await;
        assert!(
            res.body.contains("error") || res.failed.is_some() || res.status != 200,
            "turn {i} fails: {} {}",
            res.status,
            res.body
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(9),
        "{took:?}"
    );
    assert_eq!(a.requests_for_model("qwen3"), 3, "the conversation's host");
    // Ejected: the conversation moves, at once.
    let started = std::time::Instant::now();
    let body = chat("qwen3", "turn 3");
    let res = send("POST", &url, &session, Some(&body)).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(spread(&[&a, &b], "qwen3"), [3, 1]);
    assert_eq!(host_up(&p, &a).await, 0.0);
    // What a left hanging was dropped.
    assert!(a.wait_idle(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_host_silent_before_its_head_is_given_up_at_the_first_byte_timeout() {
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[("UPSTREAM_IDLE_TIMEOUT", "1")]).await;
    a.set_header_delay(Duration::from_secs(30));
    // Equal hosts once b has answered: requests go to either, until a has
    // been tried three times.
    for i in 0..12 {
        if a.requests_for_model("qwen3") == 3 {
            break;
        }
        let started = std::time::Instant::now();
        let res = openai_chat(&p, "qwen3", &format!("hello {i}")).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{took:?}");
        // The layer's own deadline is as long: the client gets its 504, or
        // b's answer when b is quick enough.
        assert!(matches!(res.status.as_u16(), 200 | 504), "{}", res.status);
    }
    assert_eq!(a.requests_for_model("qwen3"), 3);
    let metrics = scrape(&p).await;
    assert!(failovers(&metrics, "timeout") >= 3.0, "{metrics}");
    // Ejected: the next ones go to b at once.
    for i in 0..3 {
        let started = std::time::Instant::now();
        let res = openai_chat(&p, "qwen3", &format!("quick {i}")).await;
        assert_eq!(res.status, 200, "{}", res.body);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(a.requests_for_model("qwen3"), 3);
    assert!(
        a.wait_idle(Duration::from_secs(5)).await,
        "a's calls were dropped"
    );
}

#[tokio::test]
async fn streams_that_break_off_eject_their_host() {
    let a = host(&["qwen3"], &["qwen3"]).await;
    let b = host(&["qwen3"], &[]).await;
    let p = pool(&[&a, &b], &[]).await;
    a.set_die_mid_stream(true);
    let url = format!("{}/v1/chat/completions", p.url);
    for i in 0..3 {
        let body = json!({"model": "qwen3", "stream": true,
            "messages": [{"role": "user", "content": format!("stream {i}")}]});
        let res = send("POST", &url, &[], Some(&body)).await;
        assert!(res.body.contains("\"error\""), "{}", res.body);
        // Marked at once: the third in a row ejects it, before any probe.
        if i == 2 {
            assert_eq!(host_up(&p, &a).await, 0.0);
        }
    }
    assert_eq!(spread(&[&a, &b], "qwen3"), [3, 0]);
    let body = json!({"model": "qwen3", "stream": true,
        "messages": [{"role": "user", "content": "whole"}]});
    let res = send("POST", &url, &[], Some(&body)).await;
    assert!(res.body.contains("[DONE]"), "{}", res.body);
    assert_eq!(spread(&[&a, &b], "qwen3"), [3, 1]);
}

#[tokio::test]
async fn a_model_no_reachable_host_has_is_a_404_while_another_host_is_down() {
    let a = host(&["qwen3"], &[]).await;
    // b was down before the proxy started: its models were never listed.
    let mut b = host(&["llama3.2"], &[]).await;
    b.stop().await;
    let urls = format!("{},{}", a.base_url(), b.base_url());
    let p = proxy::start(&urls, &[("POOL_REFRESH_SECS", "1")]).await;
    assert!(wait_for(|| async { tag_names(&p).await.len() == 1 }).await);
    let b_label = format!("server_address=\"{}\"", b.base_url());
    assert!(
        wait_for(|| async {
            scrape(&p)
                .await
                .contains(&format!("ollama_translate_pool_host_up{{{b_label}}} 0"))
        })
        .await,
        "b is known to be down"
    );
    let res = openai_chat(&p, "llama3.2", "hi").await;
    assert_eq!(res.status, 404, "{}", res.body);
    let err = res.json();
    assert_eq!(err["error"]["type"], "not_found_error", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("llama3.2"), "{message}");
    assert!(message.contains(&b.base_url()), "names b: {message}");
    // The models a has are served as ever.
    let res = openai_chat(&p, "qwen3", "hi").await;
    assert_eq!(res.status, 200, "{}", res.body);
}

/// The layer sends its native requests with a `Routing` extension: the
/// model (after aliases) and the conversation's key, shared by the turns of
/// one conversation, by the session header when the client sent one (one
/// of the layer's `session_headers`).
#[tokio::test]
async fn the_layer_tells_the_pool_the_model_and_the_conversation() {
    use bytes::Bytes;
    use http::Request;
    use ollama_translate::{OllamaTranslateLayer, RequestBody, Routing};
    use std::sync::{Arc, Mutex};
    use tower::{Layer, ServiceExt};

    let seen: Arc<Mutex<Vec<Option<Routing>>>> = Arc::default();
    let ollama = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| {
            seen.lock()
                .unwrap()
                .push(req.extensions().get::<Routing>().cloned());
            async move {
                let done = r#"{"message":{"role":"assistant","content":"ok"},"done":true,"done_reason":"stop","prompt_eval_count":1,"eval_count":1}"#;
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    format!("{done}\n"),
                ))))
            }
        })
    };
    let layer = OllamaTranslateLayer::new()
        .model_alias("gpt-4o", "qwen3:8b")
        .session_headers(["x-conversation"]);
    let svc = layer.layer(ollama);
    let ask = |users: &[&str], header: Option<&str>| {
        let messages: Vec<Value> = users
            .iter()
            .map(|u| json!({"role": "user", "content": u}))
            .collect();
        let body = json!({"model": "gpt-4o", "messages": messages}).to_string();
        let mut req = Request::post("/v1/chat/completions");
        if let Some(h) = header {
            req = req.header("x-conversation", h);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let svc = svc.clone();
        let seen = seen.clone();
        async move {
            let res = svc.oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            seen.lock()
                .unwrap()
                .pop()
                .flatten()
                .expect("a Routing extension")
        }
    };
    let first = ask(&["Hi"], None).await;
    let later = ask(&["Hi", "More"], None).await;
    let other = ask(&["Bye"], None).await;
    assert_eq!(first.model, "qwen3:8b");
    assert!(first.conversation.is_some());
    assert_eq!(first.conversation, later.conversation);
    assert_ne!(first.conversation, other.conversation);
    // The session header names the conversation, whatever the messages.
    let a = ask(&["Hi"], Some("abc")).await;
    let b = ask(&["Bye"], Some("abc")).await;
    let c = ask(&["Hi"], Some("xyz")).await;
    assert_eq!(a.conversation, b.conversation);
    assert_ne!(a.conversation, c.conversation);
    assert_ne!(a.conversation, first.conversation);
}

/// A request with the layer's `Routing` goes where it says, its body not
/// read for the model.
#[tokio::test]
async fn the_pool_routes_by_the_layer_s_routing_without_reading_the_body() {
    use bytes::Bytes;
    use http::Request;
    use http_body_util::BodyExt;
    use ollama_translate::{Pool, RequestBody, Routing, Sleep};
    use tower::ServiceExt;

    let host = |model: &'static str| {
        tower::service_fn(move |req: Request<RequestBody<Full<Bytes>>>| async move {
            let body = match req.uri().path() {
                "/api/tags" => format!(r#"{{"models":[{{"name":"{model}"}}]}}"#),
                "/api/ps" => r#"{"models":[]}"#.to_string(),
                _ => format!("{model} host"),
            };
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
        })
    };
    let timer = |d: Duration| -> Sleep { Box::pin(tokio::time::sleep(d)) };
    let pool = Pool::builder(timer)
        .build([("a", host("qwen3:latest")), ("b", host("llama3:latest"))])
        .unwrap();
    let maintain = tokio::spawn(pool.maintain::<Full<Bytes>, _>());
    while pool.hosts().iter().any(|h| !h.healthy) {
        tokio::task::yield_now().await;
    }
    for (model, host) in [
        ("llama3", "llama3:latest host"),
        ("Qwen3:Latest", "qwen3:latest host"),
    ] {
        // Not a body that names the model: only the extension does.
        let mut req = Request::post("/api/chat")
            .body(RequestBody::rewritten(Bytes::from_static(b"not json")))
            .unwrap();
        req.extensions_mut().insert(Routing::new(model, Some(1)));
        let res = pool.clone().oneshot(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, host);
    }
    maintain.abort();
}
