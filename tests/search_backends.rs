//! The web search backends over real HTTP: [`HttpSearch`] in each
//! [`SearchFormat`] against a small server on loopback (what it sends —
//! method, path, query, body, headers — and how it reads the answer and the
//! failures), the proxy's own search client (`http://`, and `https://`
//! through TLS), and the proxy's `WEB_SEARCH*` settings.

mod common;

use bytes::Bytes;
use common::child::{proxy_binary, ProxyChild};
use common::evil::{Answer, Evil};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ollama_translate::search::{
    HttpSearch, SearchError, SearchErrorCode, SearchFormat, SearchHit, SearchRequest, WebSearch,
};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The most bytes of an answer `HttpSearch` reads (`search::http::MAX_ANSWER`).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// One request as the fake backend saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    /// Path and query, as sent.
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

type Answerer = dyn Fn(&Seen) -> (u16, Bytes) + Send + Sync;

/// A search backend on 127.0.0.1 (an ephemeral port) that records each
/// request and answers what the test's closure says. [`Fake::stop`] (or
/// dropping it) stops it and its connections.
struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Fake {
    async fn start(answer: impl Fn(&Seen) -> (u16, Bytes) + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let answer: Arc<Answerer> = Arc::new(answer);
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            // Aborting the accept loop drops the set, which aborts every
            // connection.
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, answer) = (seen2.clone(), answer.clone());
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (seen, answer) = (seen.clone(), answer.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes());
                        let one = Seen {
                            method: parts.method,
                            target: parts
                                .uri
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            headers: parts.headers,
                            body: body.unwrap_or_default(),
                        };
                        let (status, body) = answer(&one);
                        seen.lock().unwrap().push(one);
                        let mut res = Response::new(Full::new(body));
                        *res.status_mut() = status.try_into().unwrap();
                        Ok::<_, Infallible>(res)
                    }
                });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake { url, seen, task }
    }

    /// The requests seen so far.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops the server and its connections, and waits until they are gone.
    async fn stop(mut self) {
        self.task.abort();
        let ended = (&mut self.task).await;
        assert!(ended.unwrap_err().is_cancelled());
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Plain = Client<HttpConnector, Full<Bytes>>;

fn plain_client() -> Plain {
    Client::builder(TokioExecutor::new()).build_http()
}

fn search_at(url: &str, format: SearchFormat) -> HttpSearch<Plain, Full<Bytes>> {
    HttpSearch::<_, Full<Bytes>>::new(plain_client(), url.parse().unwrap(), format)
}

fn request(query: &str, max_results: usize, allowed: &[&str], blocked: &[&str]) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        max_results,
        allowed_domains: allowed.iter().map(|d| d.to_string()).collect(),
        blocked_domains: blocked.iter().map(|d| d.to_string()).collect(),
    }
}

/// A search that must fail, within 10 s.
async fn failing(search: &impl WebSearch, req: SearchRequest) -> SearchError {
    tokio::time::timeout(Duration::from_secs(10), search.search(req))
        .await
        .expect("the search ends within 10 s")
        .expect_err("the search fails")
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

fn json_bytes(v: Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// `application/x-www-form-urlencoded` decoding, for checking what the
/// backend received.
fn form_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The value of `name` in a query string, decoded.
fn query_param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| form_decode(v))
}

#[tokio::test]
async fn ollama_local_posts_the_query_and_reads_the_results() {
    let fake = Fake::start(|_| {
        let answer = json!({"results": [
            {"title": "Tower", "url": "https://docs.rs/tower", "content": "Service and Layer"},
            {"url": "https://tokio.rs/", "content": "no title"},
        ]});
        (200, json_bytes(answer))
    })
    .await;
    let search = search_at(&fake.url, SearchFormat::OllamaLocal);
    assert_eq!(search.name(), "ollama");
    let hits = search
        .search(request("rust tower layer", 3, &[], &[]))
        .await
        .unwrap();
    let mut untitled = SearchHit::new("https://tokio.rs/", "", "no title");
    untitled.page_age = None;
    assert_eq!(
        hits,
        vec![
            SearchHit::new("https://docs.rs/tower", "Tower", "Service and Layer"),
            untitled,
        ]
    );

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, Method::POST);
    assert_eq!(s.target, "/api/experimental/web_search");
    assert_eq!(header(s, "content-type"), Some("application/json"));
    assert_eq!(header(s, "accept"), Some("application/json"));
    assert_eq!(header(s, "host"), Some(&fake.url["http://".len()..]));
    assert_eq!(
        header(s, "authorization"),
        None,
        "a local Ollama needs no key"
    );
    let body: Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(body, json!({"query": "rust tower layer", "max_results": 3}));
    fake.stop().await;
}

#[tokio::test]
async fn ollama_api_sends_the_key_under_the_base_path() {
    let fake = Fake::start(|_| {
        (
            200,
            json_bytes(
                json!({"results": [{"title": "T", "url": "https://a.org/", "content": "C"}]}),
            ),
        )
    })
    .await;
    // A base with a path prefix (an API mounted below one) and a slash.
    let search = HttpSearch::<_, Full<Bytes>>::new(
        plain_client(),
        format!("{}/ollama/", fake.url).parse().unwrap(),
        SearchFormat::OllamaApi,
    )
    .api_key("k-123");
    assert_eq!(search.name(), "ollama_api");
    // Domains filter the hits afterwards, so the API is asked for the most.
    let hits = search
        .search(request("weather \"Paris\"", 2, &["a.org"], &[]))
        .await
        .unwrap();
    assert_eq!(hits, vec![SearchHit::new("https://a.org/", "T", "C")]);
    let seen = fake.seen();
    let s = &seen[0];
    assert_eq!(s.method, Method::POST);
    assert_eq!(s.target, "/ollama/api/web_search");
    assert_eq!(header(s, "authorization"), Some("Bearer k-123"));
    let body: Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(
        body,
        json!({"query": "weather \"Paris\"", "max_results": 10})
    );
    fake.stop().await;
}

#[tokio::test]
async fn searxng_gets_the_query_form_encoded() {
    let fake = Fake::start(|_| {
        let answer = json!({
            "query": "ignored",
            "number_of_results": 2,
            "results": [
                {"url": "https://docs.rs/a", "title": "A", "content": "a", "publishedDate": "2026-11-30T00:00:00", "engine": "ddg"},
                {"url": "https://docs.rs/b", "publishedDate": null},
                {"url": "https://docs.rs/c", "title": "C", "publishedDate": ""},
            ],
            "answers": [], "infoboxes": [], "suggestions": [],
        });
        (200, json_bytes(answer))
    })
    .await;
    let search = search_at(&fake.url, SearchFormat::Searxng);
    assert_eq!(search.name(), "searxng");
    let query = "C++ & Rust: 100% ünïcode?/#=+";
    let hits = search
        .search(request(query, 5, &["docs.rs"], &[]))
        .await
        .unwrap();
    let urls: Vec<&str> = hits.iter().map(|h| h.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://docs.rs/a",
            "https://docs.rs/b",
            "https://docs.rs/c"
        ]
    );
    assert_eq!(hits[0].page_age.as_deref(), Some("2026-11-30T00:00:00"));
    assert_eq!(hits[1].page_age, None);
    assert_eq!(hits[2].page_age, None, "an empty date is no date");
    assert_eq!((hits[1].title.as_str(), hits[1].content.as_str()), ("", ""));

    let seen = fake.seen();
    let s = &seen[0];
    assert_eq!(s.method, Method::GET);
    assert!(s.target.starts_with("/search?q="), "{}", s.target);
    // Every byte that means something in a URL is escaped…
    let raw_q = s.target["/search?q=".len()..].split('&').next().unwrap();
    assert!(
        raw_q
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%+-_.~".contains(&b)),
        "{raw_q}"
    );
    // …and the query arrives as it was asked, narrowed to the one domain.
    assert_eq!(
        query_param(&s.target, "q").as_deref(),
        Some(&*format!("{query} site:docs.rs"))
    );
    assert_eq!(query_param(&s.target, "format").as_deref(), Some("json"));
    assert!(s.body.is_empty());
    assert_eq!(header(s, "content-type"), None);
    assert_eq!(header(s, "accept"), Some("application/json"));
    assert_eq!(header(s, "authorization"), None);

    // Several allowed domains are not put in the query (the layer filters).
    search
        .search(request("q", 5, &["a.org", "b.org"], &["c.org"]))
        .await
        .unwrap();
    assert_eq!(
        query_param(&fake.seen()[1].target, "q").as_deref(),
        Some("q")
    );
    fake.stop().await;
}

#[tokio::test]
async fn a_local_ollama_without_web_search_is_unavailable_and_says_why() {
    // What an Ollama without the endpoint answers (gin's default 404).
    let fake = Fake::start(|_| (404, Bytes::from_static(b"404 page not found"))).await;
    let e = failing(
        &search_at(&fake.url, SearchFormat::OllamaLocal),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(e.message.contains("404"), "{}", e.message);
    assert!(
        e.message.contains("does not serve web search") && e.message.contains("another backend"),
        "{}",
        e.message
    );
    // An Ollama that is not signed in to ollama.com.
    let fake2 = Fake::start(|_| (401, json_bytes(json!({"error": "unauthorized"})))).await;
    let e = failing(
        &search_at(&fake2.url, SearchFormat::OllamaLocal),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(e.message.contains("ollama signin"), "{}", e.message);
    fake.stop().await;
    fake2.stop().await;
}

#[tokio::test]
async fn rate_limits_are_too_many_requests_in_every_format() {
    let fake = Fake::start(|_| (429, json_bytes(json!({"error": "rate limit exceeded"})))).await;
    for format in [
        SearchFormat::OllamaLocal,
        SearchFormat::OllamaApi,
        SearchFormat::Searxng,
    ] {
        let e = failing(&search_at(&fake.url, format), request("q", 5, &[], &[])).await;
        assert_eq!(e.code, SearchErrorCode::TooManyRequests, "{format:?}");
        assert!(
            e.message.contains("429") && e.message.contains("rate limit exceeded"),
            "{format:?}: {}",
            e.message
        );
    }
    assert_eq!(fake.seen().len(), 3);
    fake.stop().await;
}

#[tokio::test]
async fn refusals_name_the_likely_cause_and_never_the_key() {
    let fake = Fake::start(|s| match s.method {
        // SearXNG without the json format enabled.
        Method::GET => (403, Bytes::from_static(b"<html>Forbidden</html>")),
        _ => (401, json_bytes(json!({"error": "invalid API key"}))),
    })
    .await;
    let api = search_at(&fake.url, SearchFormat::OllamaApi).api_key("very-secret-key");
    let e = failing(&api, request("q", 5, &[], &[])).await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(
        e.message.contains("check the web search API key"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("very-secret-key"), "{}", e.message);
    assert!(!format!("{e}").contains("very-secret-key"));

    let e = failing(
        &search_at(&fake.url, SearchFormat::Searxng),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(e.message.contains("json format"), "{}", e.message);

    // A 400 is the query's fault, not the backend's.
    let fake2 = Fake::start(|_| (400, json_bytes(json!({"error": "query is empty"})))).await;
    let e = failing(
        &search_at(&fake2.url, SearchFormat::OllamaApi),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::InvalidInput);
    fake.stop().await;
    fake2.stop().await;
}

#[tokio::test]
async fn error_pages_are_cut_and_empty_ones_blame_no_one() {
    let fake = Fake::start(|s| match s.method {
        // A SearXNG (or the proxy in front of it) refusing with no body.
        Method::GET => (403, Bytes::new()),
        // A gateway's HTML error page, 200 KB of it.
        _ => (
            502,
            Bytes::from(format!("<html>{}</html>", "é".repeat(100_000))),
        ),
    })
    .await;
    let e = failing(
        &search_at(&fake.url, SearchFormat::OllamaApi),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(e.message.contains("502: <html>"), "{}", e.message);
    assert!(e.message.len() < 1024, "{} bytes", e.message.len());
    assert!(e.message.ends_with('…'), "{}", e.message);

    let e = failing(
        &search_at(&fake.url, SearchFormat::Searxng),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(
        e.message.contains("403: no message") && e.message.contains("json format"),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains("Host"),
        "not Ollama's Host check: {}",
        e.message
    );
    fake.stop().await;
}

/// The key's header is marked sensitive: HTTP/2 keeps it out of its
/// compression tables, and `Debug` does not print it.
#[tokio::test]
async fn the_key_header_is_sensitive() {
    let seen: Arc<Mutex<Option<http::HeaderValue>>> = Arc::default();
    let seen2 = seen.clone();
    let backend = tower::service_fn(move |req: Request<Full<Bytes>>| {
        *seen2.lock().unwrap() = req.headers().get("authorization").cloned();
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}")))) }
    });
    let search = HttpSearch::<_, Full<Bytes>>::new(
        backend,
        "https://ollama.com".parse().unwrap(),
        SearchFormat::OllamaApi,
    )
    .api_key("sk-sensitive");
    assert!(search
        .search(request("q", 5, &[], &[]))
        .await
        .unwrap()
        .is_empty());
    let value = seen
        .lock()
        .unwrap()
        .clone()
        .expect("an Authorization header");
    assert_eq!(value, "Bearer sk-sensitive");
    assert!(value.is_sensitive());
    assert!(!format!("{value:?}").contains("sk-sensitive"));
}

#[tokio::test]
async fn an_answer_over_the_bound_is_unavailable() {
    // Declared with a Content-Length: one byte too many.
    let big = {
        let mut v = br#"{"results":[{"url":"https://x.org/","content":""#.to_vec();
        v.resize(MAX_ANSWER - 3, b'a');
        v.extend_from_slice(b"\"}]}");
        assert_eq!(v.len(), MAX_ANSWER + 1);
        Bytes::from(v)
    };
    let fake = Fake::start(move |_| (200, big.clone())).await;
    let e = failing(
        &search_at(&fake.url, SearchFormat::OllamaApi),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(
        e.message
            .contains(&format!("larger than {MAX_ANSWER} bytes")),
        "{}",
        e.message
    );
    fake.stop().await;

    // Chunked and endless: the read stops at the bound, not at the end.
    let evil = Evil::start(|_| Answer::Endless {
        prefix: br#"{"results":[{"url":"https://x.org/","content":""#.to_vec(),
        repeat: vec![b'a'; 64 * 1024],
        max_bytes: 64 * 1024 * 1024,
    })
    .await;
    let e = failing(
        &search_at(&evil.url, SearchFormat::Searxng),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(e.message.contains("larger than"), "{}", e.message);
    let sent = evil.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < 16 * 1024 * 1024,
        "stopped reading early: {sent} bytes sent"
    );
}

#[tokio::test]
async fn answers_that_are_not_search_results_are_unavailable() {
    for (format, body) in [
        (
            SearchFormat::Searxng,
            &b"<html><body>SearXNG</body></html>"[..],
        ),
        (SearchFormat::OllamaLocal, b"{\"results\":"),
        (
            SearchFormat::OllamaApi,
            br#"{"results":[{"title":"no url"}]}"#,
        ),
        (
            SearchFormat::OllamaApi,
            br#"{"results":{"url":"https://x/"}}"#,
        ),
        (SearchFormat::Searxng, b"\xff\xfe\x00garbage"),
    ] {
        let body = Bytes::from_static(body);
        let fake = Fake::start(move |_| (200, body.clone())).await;
        let e = failing(&search_at(&fake.url, format), request("q", 5, &[], &[])).await;
        assert_eq!(e.code, SearchErrorCode::Unavailable, "{format:?}");
        assert!(
            e.message.contains("not what it should be"),
            "{format:?}: {}",
            e.message
        );
        fake.stop().await;
    }
    // An answer with no results at all is no error: nothing was found.
    let fake = Fake::start(|_| (200, Bytes::from_static(b"{}"))).await;
    let hits = search_at(&fake.url, SearchFormat::OllamaApi)
        .search(request("q", 5, &[], &[]))
        .await
        .unwrap();
    assert!(hits.is_empty());
    fake.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_not_there_or_not_http_is_unavailable() {
    // Nobody listens.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let e = failing(
        &search_at(&closed, SearchFormat::Searxng),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(
        e.message
            .contains("could not reach the searxng search backend"),
        "{}",
        e.message
    );

    // Something that is not HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 not http at all")
            .await
            .unwrap();
    });
    let e = failing(
        &search_at(&url, SearchFormat::OllamaLocal),
        request("q", 5, &[], &[]),
    )
    .await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(e.message.contains("could not reach"), "{}", e.message);
    server.await.unwrap();
}

/// The proxy's own search client speaks plain HTTP to an `http://` backend.
#[tokio::test]
async fn the_proxys_client_reaches_http_backends() {
    let fake = Fake::start(|_| {
        (
            200,
            json_bytes(
                json!({"results": [{"url": "https://a.org/", "title": "A", "content": "a"}]}),
            ),
        )
    })
    .await;
    let search = HttpSearch::<_, Full<Bytes>>::new(
        ollama_translate::client::https_client(),
        fake.url.parse().unwrap(),
        SearchFormat::Searxng,
    )
    .api_key("behind-a-proxy");
    let hits = search.search(request("q", 5, &[], &[])).await.unwrap();
    assert_eq!(hits, vec![SearchHit::new("https://a.org/", "A", "a")]);
    let seen = fake.seen();
    assert_eq!(
        header(&seen[0], "authorization"),
        Some("Bearer behind-a-proxy")
    );
    fake.stop().await;
}

/// …and TLS to an `https://` one: what reaches the server first is a TLS
/// ClientHello, never the request (nor the key) in clear.
#[tokio::test]
async fn the_proxys_client_speaks_tls_to_https_backends() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut first = vec![0u8; 5];
        s.read_exact(&mut first).await.unwrap();
        first // then closed: the handshake fails
    });
    let search = HttpSearch::<_, Full<Bytes>>::new(
        ollama_translate::client::https_client(),
        format!("https://localhost:{}", addr.port())
            .parse()
            .unwrap(),
        SearchFormat::OllamaApi,
    )
    .api_key("tls-only-key");
    let e = failing(&search, request("q", 5, &[], &[])).await;
    assert_eq!(e.code, SearchErrorCode::Unavailable);
    assert!(!e.message.contains("tls-only-key"), "{}", e.message);
    let first = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the client connected")
        .unwrap();
    assert_eq!(first[0], 0x16, "a TLS handshake record: {first:?}");
    assert_eq!(first[1], 0x03, "TLS: {first:?}");
}

// ---- the proxy's settings ----

#[test]
fn web_search_settings_choose_the_backend_and_its_bounds() {
    let s = common::child::check(&[]).unwrap();
    assert!(s.contains("web_search: \"ollama\""), "the default: {s}");
    let err = common::child::check(&[
        ("WEB_SEARCH", "searxng"),
        ("WEB_SEARCH_URL", "http://admin:hunter2@searx"),
    ])
    .unwrap_err();
    assert!(err.contains("WEB_SEARCH_URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// Runs the proxy binary with `env` to its end (within 10 s); `None` when
/// it is not built next to this test.
async fn run(env: &[(&str, &str)]) -> std::process::Output {
    let bin = proxy_binary();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("OLLAMA_BASE_URL", "http://127.0.0.1:9")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{env:?}: the proxy ends within 10 s"))
        .unwrap();
    out
}

#[tokio::test]
async fn invalid_web_search_settings_stop_the_binary() {
    for (env, named) in [
        (&[("WEB_SEARCH", "searxng")][..], "WEB_SEARCH_URL"),
        (&[("WEB_SEARCH", "ollama-api")], "WEB_SEARCH_API_KEY"),
        (&[("WEB_SEARCH", "duckduckgo")], "WEB_SEARCH"),
        (&[("WEB_SEARCH_RESULTS", "11")], "WEB_SEARCH_RESULTS"),
    ] {
        let out = run(env).await;
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(
            err.contains("configuration error") && err.contains(named),
            "{env:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{env:?}: it never listened");
    }
}

#[tokio::test]
async fn the_binary_names_its_search_backend_at_start_and_never_the_key() {
    let fake = Fake::start(|_| (200, Bytes::from_static(b"{}"))).await;
    let mut proxy = ProxyChild::start(
        "http://127.0.0.1:9",
        &[
            ("RUST_LOG", "info"),
            ("WEB_SEARCH", "ollama-api"),
            ("WEB_SEARCH_URL", &fake.url),
            ("WEB_SEARCH_API_KEY", "sk-never-logged"),
            ("WEB_SEARCH_RESULTS", "4"),
        ],
    )
    .await;
    let line = format!("web search: Ollama's web search API at {}", fake.url);
    assert!(
        proxy.wait_for_log(&line, Duration::from_secs(5)).await,
        "{:?}",
        proxy.log.lock().unwrap()
    );
    assert!(
        proxy
            .wait_for_log("4 results a search", Duration::ZERO)
            .await
    );
    let status = proxy.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    let log = proxy.log.lock().unwrap().join("\n");
    assert!(!log.contains("sk-never-logged"), "{log}");
    assert!(fake.seen().is_empty(), "nothing is searched at start");
    fake.stop().await;
}
