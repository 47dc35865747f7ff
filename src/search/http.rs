//! Search backends over HTTP: the request each one takes and the answer it
//! gives, and [`HttpSearch`], a [`WebSearch`] over any HTTP client service.

use super::{SearchError, SearchErrorCode, SearchFuture, SearchHit, SearchRequest, WebSearch};
use crate::error::{error_chain, BoxError};
use bytes::{Buf, Bytes, BytesMut};
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use serde::Deserialize;
use std::marker::PhantomData;
use tower_service::Service;

/// The most bytes of a backend's answer that are read; past it the search
/// is `unavailable`.
pub(crate) const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Which API a backend speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchFormat {
    /// A local Ollama's `POST /api/experimental/web_search` (no key: the
    /// host's own ollama.com sign-in).
    OllamaLocal,
    /// Ollama's public web search API, `POST /api/web_search` with
    /// `Authorization: Bearer <key>` (on `https://ollama.com`).
    OllamaApi,
    /// SearXNG's JSON API, `GET /search?q=…&format=json` (the instance must
    /// enable the `json` format).
    Searxng,
}

impl SearchFormat {
    /// The name used for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            SearchFormat::OllamaLocal => "ollama",
            SearchFormat::OllamaApi => "ollama_api",
            SearchFormat::Searxng => "searxng",
        }
    }

    /// The path and query of a search on this API.
    fn path_and_query(self, request: &SearchRequest) -> String {
        match self {
            SearchFormat::OllamaLocal => "/api/experimental/web_search".into(),
            SearchFormat::OllamaApi => "/api/web_search".into(),
            SearchFormat::Searxng => {
                let mut q = form_encode(&request.query);
                // SearXNG narrows by `site:` in the query itself.
                if request.allowed_domains.len() == 1 {
                    q.push_str(&form_encode(&format!(
                        " site:{}",
                        request.allowed_domains[0]
                    )));
                }
                format!("/search?q={q}&format=json")
            }
        }
    }

    /// The JSON body of a search (empty for `GET`).
    pub(crate) fn body(self, request: &SearchRequest) -> Bytes {
        match self {
            SearchFormat::Searxng => Bytes::new(),
            SearchFormat::OllamaLocal | SearchFormat::OllamaApi => {
                // Ask for more when domains filter the hits afterwards.
                let filtered =
                    !request.allowed_domains.is_empty() || !request.blocked_domains.is_empty();
                let max = if filtered {
                    super::MAX_RESULTS
                } else {
                    request.max_results
                };
                Bytes::from(
                    serde_json::json!({"query": request.query, "max_results": max}).to_string(),
                )
            }
        }
    }

    /// The hits in a backend's answer, or why there are none.
    pub(crate) fn parse(
        self,
        status: StatusCode,
        body: &[u8],
    ) -> Result<Vec<SearchHit>, SearchError> {
        if !status.is_success() {
            return Err(status_error(self, status, body));
        }
        let hits = match self {
            SearchFormat::OllamaLocal | SearchFormat::OllamaApi => {
                serde_json::from_slice::<OllamaAnswer>(body).map(|a| {
                    a.results
                        .into_iter()
                        .map(|r| SearchHit {
                            url: r.url,
                            title: r.title,
                            content: r.content,
                            page_age: None,
                        })
                        .collect()
                })
            }
            SearchFormat::Searxng => serde_json::from_slice::<SearxngAnswer>(body).map(|a| {
                a.results
                    .into_iter()
                    .map(|r| SearchHit {
                        url: r.url,
                        title: r.title,
                        content: r.content,
                        page_age: r.published_date.filter(|d| !d.is_empty()),
                    })
                    .collect()
            }),
        };
        hits.map_err(|e| {
            SearchError::new(
                SearchErrorCode::Unavailable,
                format!(
                    "the {} search answer is not what it should be: {e}",
                    self.name()
                ),
            )
        })
    }
}

#[derive(Deserialize)]
struct OllamaAnswer {
    #[serde(default)]
    results: Vec<OllamaResult>,
}

#[derive(Deserialize)]
struct OllamaResult {
    #[serde(default)]
    title: String,
    url: String,
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct SearxngAnswer {
    #[serde(default)]
    results: Vec<SearxngResult>,
}

#[derive(Deserialize)]
struct SearxngResult {
    url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    content: String,
    #[serde(default, rename = "publishedDate")]
    published_date: Option<String>,
}

/// The most bytes of a backend's error message that go into the log.
const MAX_SAID: usize = 512;

/// A non-2xx answer as a search error.
fn status_error(format: SearchFormat, status: StatusCode, body: &[u8]) -> SearchError {
    // An empty body says nothing (and no Ollama refused a Host); a long one
    // (an HTML error page) is cut.
    let mut said = crate::error::said(body);
    if said.is_empty() {
        said = String::from("no message");
    }
    if said.len() > MAX_SAID {
        let mut end = MAX_SAID;
        while !said.is_char_boundary(end) {
            end -= 1;
        }
        said.truncate(end);
        said.push('…');
    }
    let code = match status.as_u16() {
        429 => SearchErrorCode::TooManyRequests,
        400 | 422 => SearchErrorCode::InvalidInput,
        _ => SearchErrorCode::Unavailable,
    };
    let hint = match (format, status.as_u16()) {
        (SearchFormat::OllamaLocal, 404) => {
            " (this Ollama does not serve web search: it needs a version with /api/experimental/web_search and cloud features on; or set another backend)"
        }
        (SearchFormat::OllamaLocal, 401 | 403) => {
            " (the Ollama host must be signed in to ollama.com: run `ollama signin` there)"
        }
        (SearchFormat::OllamaApi, 401 | 403) => " (check the web search API key)",
        (SearchFormat::Searxng, 403) => {
            " (the SearXNG instance must enable the json format: search.formats in its settings.yml)"
        }
        _ => "",
    };
    SearchError::new(
        code,
        format!(
            "{} search answered {}: {said}{hint}",
            format.name(),
            status.as_u16()
        ),
    )
}

/// `application/x-www-form-urlencoded` encoding of `s`.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Reads `body` whole, at most `limit` bytes.
pub(crate) async fn read_bounded<B>(body: B, limit: usize) -> Result<Bytes, String>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| error_chain(&*e.into()))?;
        if let Ok(mut data) = frame.into_data() {
            if buf.len() + data.remaining() > limit {
                return Err(format!("the answer is larger than {limit} bytes"));
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                buf.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
    }
    Ok(buf.freeze())
}

/// A [`WebSearch`] over an HTTP client service: SearXNG, Ollama's public
/// API, or another Ollama's local endpoint, at a base URL.
///
/// `S` is any tower service that sends HTTP requests (a hyper-util client,
/// a test double) whose request body can be made from [`Bytes`] (`B`, e.g.
/// `http_body_util::Full<Bytes>`). The library opens no socket itself.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use ollama_translate::search::{HttpSearch, SearchFormat, SearchRequest, WebSearch};
/// use tower::service_fn;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A stand-in for a SearXNG instance.
/// let searxng = service_fn(|req: Request<Full<Bytes>>| async move {
///     assert_eq!(req.uri().path(), "/search");
///     let json = r#"{"results":[{"url":"https://tokio.rs/","title":"Tokio","content":"An async runtime"}]}"#;
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(json))))
/// });
/// let search = HttpSearch::<_, Full<Bytes>>::new(searxng, "http://searx.internal:8080".parse().unwrap(), SearchFormat::Searxng);
/// let hits = search.search(SearchRequest {
///     query: "rust async runtime".into(),
///     max_results: 5,
///     allowed_domains: vec![],
///     blocked_domains: vec![],
/// }).await.unwrap();
/// assert_eq!(hits[0].title, "Tokio");
/// # }
/// ```
pub struct HttpSearch<S, B> {
    service: S,
    base: Uri,
    format: SearchFormat,
    api_key: Option<String>,
    _body: PhantomData<fn() -> B>,
}

impl<S: Clone, B> Clone for HttpSearch<S, B> {
    fn clone(&self) -> Self {
        HttpSearch {
            service: self.service.clone(),
            base: self.base.clone(),
            format: self.format,
            api_key: self.api_key.clone(),
            _body: PhantomData,
        }
    }
}

impl<S, B> HttpSearch<S, B> {
    /// Searches `format`'s API at `base` (scheme and authority, and a path
    /// prefix if the API is mounted below one) through `service`.
    pub fn new(service: S, base: Uri, format: SearchFormat) -> Self {
        HttpSearch {
            service,
            base,
            format,
            api_key: None,
            _body: PhantomData,
        }
    }

    /// Sends `Authorization: Bearer <key>` (Ollama's public API needs it).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    fn request(&self, search: &SearchRequest) -> Result<Request<Bytes>, SearchError> {
        let prefix = self.base.path().trim_end_matches('/');
        let pq = format!("{prefix}{}", self.format.path_and_query(search));
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(pq.parse().map_err(|e| {
            SearchError::new(
                SearchErrorCode::InvalidInput,
                format!("bad search URI: {e}"),
            )
        })?);
        let uri = Uri::from_parts(parts).map_err(|e| {
            SearchError::new(SearchErrorCode::Unavailable, format!("bad search URI: {e}"))
        })?;
        let body = self.format.body(search);
        let mut req = Request::new(body.clone());
        *req.uri_mut() = uri;
        *req.method_mut() = if body.is_empty() {
            Method::GET
        } else {
            Method::POST
        };
        let h = req.headers_mut();
        if !body.is_empty() {
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
        }
        h.insert(
            header::ACCEPT,
            header::HeaderValue::from_static("application/json"),
        );
        if let Some(authority) = self.base.authority() {
            if let Ok(v) = header::HeaderValue::from_str(authority.as_str()) {
                h.insert(header::HOST, v);
            }
        }
        if let Some(key) = &self.api_key {
            let mut v = header::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                SearchError::new(
                    SearchErrorCode::Unavailable,
                    "the API key is not a valid header value",
                )
            })?;
            v.set_sensitive(true); // kept out of HPACK tables and Debug
            h.insert(header::AUTHORIZATION, v);
        }
        Ok(req)
    }
}

impl<S, B, R> WebSearch for HttpSearch<S, B>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: From<Bytes> + Send + 'static,
    R: Body + Send + 'static,
    R::Data: Send,
    R::Error: Into<BoxError>,
{
    fn search(&self, search: SearchRequest) -> SearchFuture {
        let format = self.format;
        let request = self.request(&search).map(|r| r.map(B::from));
        let mut service = self.service.clone();
        Box::pin(async move {
            let request = request?;
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|e| unreachable_backend(format, e.into()))?;
            let res = service
                .call(request)
                .await
                .map_err(|e| unreachable_backend(format, e.into()))?;
            let status = res.status();
            let body = read_bounded(res.into_body(), MAX_ANSWER)
                .await
                .map_err(|e| {
                    SearchError::new(
                        SearchErrorCode::Unavailable,
                        format!("reading the {} search answer failed: {e}", format.name()),
                    )
                })?;
            format.parse(status, &body)
        })
    }

    fn name(&self) -> &'static str {
        self.format.name()
    }
}

fn unreachable_backend(format: SearchFormat, e: BoxError) -> SearchError {
    SearchError::new(
        SearchErrorCode::Unavailable,
        format!(
            "could not reach the {} search backend: {}",
            format.name(),
            error_chain(&*e)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str, allowed: &[&str]) -> SearchRequest {
        SearchRequest {
            query: q.into(),
            max_results: 3,
            allowed_domains: allowed.iter().map(|s| s.to_string()).collect(),
            blocked_domains: vec![],
        }
    }

    #[test]
    fn searxng_queries_are_form_encoded_with_one_site() {
        let pq = SearchFormat::Searxng.path_and_query(&req("a&b c/é", &["docs.rs"]));
        assert_eq!(pq, "/search?q=a%26b+c%2F%C3%A9+site%3Adocs.rs&format=json");
        assert!(SearchFormat::Searxng.body(&req("x", &[])).is_empty());
    }

    #[test]
    fn ollama_bodies_ask_for_more_when_domains_filter() {
        let b = SearchFormat::OllamaLocal.body(&req("x", &[]));
        assert_eq!(b, r#"{"max_results":3,"query":"x"}"#);
        let b = SearchFormat::OllamaApi.body(&req("x", &["a.org"]));
        assert!(b.starts_with(br#"{"max_results":10"#));
    }

    #[test]
    fn answers_and_errors_parse() {
        let ok = SearchFormat::OllamaLocal
            .parse(
                StatusCode::OK,
                br#"{"results":[{"title":"T","url":"https://u/","content":"C"}]}"#,
            )
            .unwrap();
        assert_eq!(ok, vec![SearchHit::new("https://u/", "T", "C")]);
        let sx = SearchFormat::Searxng
            .parse(
                StatusCode::OK,
                br#"{"query":"q","results":[{"url":"https://u/","title":"T","content":"C","publishedDate":"2026-11-30T00:00:00"}]}"#,
            )
            .unwrap();
        assert_eq!(sx[0].page_age.as_deref(), Some("2026-11-30T00:00:00"));
        let e = SearchFormat::OllamaLocal
            .parse(StatusCode::NOT_FOUND, b"404 page not found")
            .unwrap_err();
        assert_eq!(e.code, SearchErrorCode::Unavailable);
        assert!(
            e.message.contains("does not serve web search"),
            "{}",
            e.message
        );
        let e = SearchFormat::OllamaApi
            .parse(StatusCode::TOO_MANY_REQUESTS, br#"{"error":"slow down"}"#)
            .unwrap_err();
        assert_eq!(e.code, SearchErrorCode::TooManyRequests);
        assert!(e.message.contains("slow down"));
        let e = SearchFormat::Searxng
            .parse(StatusCode::OK, b"<html>")
            .unwrap_err();
        assert_eq!(e.code, SearchErrorCode::Unavailable);
    }
}
