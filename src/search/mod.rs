//! Web search the layer runs for a model: the server tools of the client
//! APIs (Anthropic's `web_search_*`, the Responses `web_search` tool).
//!
//! When a request offers such a tool, the model is offered a `web_search`
//! function (one `query` string). When it calls it, the layer runs the
//! search, streams the call and its results to the client in the client's
//! own shape, gives the results to the model as a tool message and streams
//! the model's follow-up, until the model answers without searching or the
//! request's searches are spent.
//!
//! *Where* a search runs is pluggable:
//!
//! * By default ([`WebSearchConfig::new`]) through the wrapped service
//!   itself: a local Ollama serves `POST /api/experimental/web_search`
//!   (`{"query","max_results"}` → `{"results":[{"title","url","content"}]}`)
//!   and forwards it to ollama.com with its own sign-in, so the layer needs
//!   no credential. A host that answers 404 (an older Ollama, or cloud
//!   features disabled) makes every search `unavailable`.
//! * Any [`WebSearch`]: a small trait from a [`SearchRequest`] to
//!   [`SearchHit`]s. [`HttpSearch`] implements it over any HTTP client
//!   service for SearXNG's JSON API and Ollama's public web search API.
//! * [`WebSearchConfig::off`]: the server tools are dropped, as before.
//!
//! The layer never fetches a URL a client or a model names; it only sends
//! queries to the configured backend.
//!
//! ```
//! use ollama_translate::search::{SearchHit, SearchRequest, WebSearchConfig};
//! use ollama_translate::OllamaTranslateLayer;
//!
//! // A backend is any `Fn(SearchRequest) -> SearchFuture` (or a `WebSearch`).
//! let backend = |req: SearchRequest| -> ollama_translate::search::SearchFuture {
//!     Box::pin(async move {
//!         Ok(vec![SearchHit::new("https://example.com/", "Example", format!("About {}", req.query))])
//!     })
//! };
//! let layer = OllamaTranslateLayer::new()
//!     .web_search(WebSearchConfig::with_backend(backend).max_results(3));
//! # let _ = layer;
//! ```

pub(crate) mod http;

pub use self::http::{HttpSearch, SearchFormat};

use crate::signing::{self, Key};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// One search the layer asks a backend for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchRequest {
    /// What the model asked for.
    pub query: String,
    /// The most hits wanted (the layer keeps at most this many).
    pub max_results: usize,
    /// Only hits on these domains (and their subdomains) are kept, when
    /// not empty. Backends may use it to narrow the search; the layer
    /// filters the hits either way.
    pub allowed_domains: Vec<String>,
    /// Hits on these domains (and their subdomains) are dropped.
    pub blocked_domains: Vec<String>,
}

/// One result of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    /// The page's address.
    pub url: String,
    /// Its title.
    pub title: String,
    /// Text from the page (the layer cuts it to its per-result bound).
    pub content: String,
    /// How old the page is, when the backend says (`"2 days ago"`,
    /// a date).
    pub page_age: Option<String>,
}

impl SearchHit {
    /// A hit without an age.
    pub fn new(
        url: impl Into<String>,
        title: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        SearchHit {
            url: url.into(),
            title: title.into(),
            content: content.into(),
            page_age: None,
        }
    }
}

/// Why a search gave no results, in the codes Anthropic's API uses for
/// `web_search_tool_result_error` (the Responses API reports a failed
/// `web_search_call`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SearchErrorCode {
    /// The backend cannot be reached, failed, or is not set up.
    Unavailable,
    /// The backend is rate limiting.
    TooManyRequests,
    /// The query is empty or not a string.
    InvalidInput,
    /// The query is longer than [`MAX_QUERY_CHARS`].
    QueryTooLong,
    /// The request's searches are spent.
    MaxUsesExceeded,
}

impl SearchErrorCode {
    /// The code as the wire writes it (`unavailable`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SearchErrorCode::Unavailable => "unavailable",
            SearchErrorCode::TooManyRequests => "too_many_requests",
            SearchErrorCode::InvalidInput => "invalid_input",
            SearchErrorCode::QueryTooLong => "query_too_long",
            SearchErrorCode::MaxUsesExceeded => "max_uses_exceeded",
        }
    }
}

/// A failed search: its code, and a message for logs (never shown to the
/// client, which gets only the code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchError {
    /// What the client is told.
    pub code: SearchErrorCode,
    /// What went wrong, for the log.
    pub message: String,
}

impl SearchError {
    /// An error with its code and log message.
    pub fn new(code: SearchErrorCode, message: impl Into<String>) -> Self {
        SearchError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for SearchError {}

/// What a [`WebSearch`] returns.
pub type SearchFuture = Pin<Box<dyn Future<Output = Result<Vec<SearchHit>, SearchError>> + Send>>;

/// A search backend.
///
/// The layer bounds every search itself (a deadline, the number of hits,
/// the text per hit), so a backend only has to search. Closures
/// `Fn(SearchRequest) -> SearchFuture` are backends too.
pub trait WebSearch: Send + Sync + 'static {
    /// Runs one search.
    fn search(&self, request: SearchRequest) -> SearchFuture;
    /// A short name for metrics and logs (`searxng`, `ollama_api`, …).
    fn name(&self) -> &'static str {
        "custom"
    }
}

impl<F> WebSearch for F
where
    F: Fn(SearchRequest) -> SearchFuture + Send + Sync + 'static,
{
    fn search(&self, request: SearchRequest) -> SearchFuture {
        self(request)
    }
}

/// Where searches run.
#[derive(Clone)]
pub(crate) enum Backend {
    /// `POST /api/experimental/web_search` on the wrapped service.
    Inner,
    /// A backend of the embedder's.
    Custom(Arc<dyn WebSearch>),
    /// Server tools are dropped.
    Off,
}

/// Queries longer than this many characters are `query_too_long`.
pub const MAX_QUERY_CHARS: usize = 400;

/// The most hits per search, whatever is configured.
pub const MAX_RESULTS: usize = 10;

/// How the layer runs web searches: the backend and the bounds, each with a
/// default. Give it to [`OllamaTranslateLayer::web_search`](crate::OllamaTranslateLayer::web_search).
///
/// ```
/// use std::time::Duration;
/// use ollama_translate::search::WebSearchConfig;
///
/// let config = WebSearchConfig::new() // through Ollama's own /api/experimental/web_search
///     .max_results(5)
///     .result_bytes(4096)
///     .timeout(Duration::from_secs(10))
///     .default_max_uses(3)
///     .max_uses_cap(5);
/// assert_eq!(config.backend_name(), "ollama");
/// ```
#[derive(Clone)]
pub struct WebSearchConfig {
    pub(crate) backend: Backend,
    pub(crate) max_results: usize,
    pub(crate) result_bytes: usize,
    pub(crate) timeout: Duration,
    pub(crate) default_max_uses: u32,
    pub(crate) max_uses_cap: u32,
}

impl Default for WebSearchConfig {
    fn default() -> Self {
        WebSearchConfig::new()
    }
}

impl fmt::Debug for WebSearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSearchConfig")
            .field("backend", &self.backend_name())
            .field("max_results", &self.max_results)
            .field("result_bytes", &self.result_bytes)
            .field("timeout", &self.timeout)
            .field("default_max_uses", &self.default_max_uses)
            .field("max_uses_cap", &self.max_uses_cap)
            .finish()
    }
}

impl WebSearchConfig {
    /// Searches through the wrapped service's `POST
    /// /api/experimental/web_search` (a local Ollama signed in to
    /// ollama.com), with the default bounds: 5 hits, 8 KiB of page text
    /// each, 15 s per search, 3 searches when the client sets no
    /// `max_uses`, and never more than 10 in one request.
    pub fn new() -> Self {
        WebSearchConfig {
            backend: Backend::Inner,
            max_results: 5,
            result_bytes: 8 * 1024,
            timeout: Duration::from_secs(15),
            default_max_uses: 3,
            max_uses_cap: 10,
        }
    }

    /// Searches through `backend` instead, with the default bounds.
    pub fn with_backend(backend: impl WebSearch) -> Self {
        WebSearchConfig {
            backend: Backend::Custom(Arc::new(backend)),
            ..WebSearchConfig::new()
        }
    }

    /// No web search: server tools are dropped (the model is not offered a
    /// search).
    pub fn off() -> Self {
        WebSearchConfig {
            backend: Backend::Off,
            ..WebSearchConfig::new()
        }
    }

    /// Hits per search (1 to [`MAX_RESULTS`]; clamped).
    pub fn max_results(mut self, n: usize) -> Self {
        self.max_results = n.clamp(1, MAX_RESULTS);
        self
    }

    /// Bytes of page text per hit that reach the model (at least 256).
    pub fn result_bytes(mut self, bytes: usize) -> Self {
        self.result_bytes = bytes.max(256);
        self
    }

    /// The deadline of one search (needs the layer's timer); past it the
    /// search is `unavailable`.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = after;
        self
    }

    /// Searches one request may run when the client sets no `max_uses`.
    pub fn default_max_uses(mut self, n: u32) -> Self {
        self.default_max_uses = n.max(1);
        self
    }

    /// Searches one request may run whatever the client asks (at least 1).
    pub fn max_uses_cap(mut self, n: u32) -> Self {
        self.max_uses_cap = n.max(1);
        self
    }

    /// Whether server tools are offered to models at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.backend, Backend::Off)
    }

    /// The backend's name for metrics: `ollama` (the wrapped service),
    /// `off`, or the [`WebSearch::name`] of a custom backend.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Inner => "ollama",
            Backend::Custom(b) => b.name(),
            Backend::Off => "off",
        }
    }

    /// The searches a request may run: what the client asked (or the
    /// default), within the cap.
    pub(crate) fn uses(&self, asked: Option<u32>) -> u32 {
        asked
            .unwrap_or(self.default_max_uses)
            .min(self.max_uses_cap)
    }
}

/// What a request's web-search tool asks for: set by the dialect from the
/// client's tool, bounded by the layer's [`WebSearchConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SearchTool {
    /// The client's `max_uses`, if any.
    pub(crate) max_uses: Option<u32>,
    pub(crate) allowed_domains: Vec<String>,
    pub(crate) blocked_domains: Vec<String>,
}

/// The name of the function the model is offered.
pub(crate) const FUNCTION: &str = "web_search";

/// The function the model is offered for a web-search tool. `location`
/// (the client's `user_location`, as text) goes into its description so the
/// model can make its queries local.
pub(crate) fn function(location: Option<&str>) -> serde_json::Value {
    let mut description = String::from(
        "Search the web for current information. Returns the titles, addresses and text of the best matching pages. Use it for recent events or facts you are unsure of; write a short query as you would type it into a search engine.",
    );
    if let Some(l) = location {
        description.push_str(" The user is in ");
        description.push_str(l);
        description.push('.');
    }
    serde_json::json!({
        "type": "function",
        "function": {
            "name": FUNCTION,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "The search query."}},
                "required": ["query"],
            },
        },
    })
}

/// The query of a `web_search` call's arguments (the JSON text of an
/// object), checked.
pub(crate) fn query_of(arguments: &str) -> Result<String, SearchError> {
    let value: serde_json::Value = serde_json::from_str(arguments).unwrap_or_default();
    let query = value
        .get("query")
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    if query.is_empty() {
        return Err(SearchError::new(
            SearchErrorCode::InvalidInput,
            "the model called web_search without a query",
        ));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(SearchError::new(
            SearchErrorCode::QueryTooLong,
            format!("the query is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    Ok(query.to_string())
}

/// The host of `url`, lower-cased, without a port or user info.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next()?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether `host` is `domain` or below it (`docs.rs` matches `docs.rs`
/// and `www.docs.rs`, not `notdocs.rs`).
fn on_domain(host: &str, domain: &str) -> bool {
    let domain = domain.trim().trim_start_matches("*.").trim_end_matches('.');
    let domain = host_of(domain).unwrap_or_else(|| domain.to_ascii_lowercase());
    !domain.is_empty()
        && (host == domain
            || host
                .strip_suffix(domain.as_str())
                .is_some_and(|h| h.ends_with('.')))
}

/// Keeps the hits the request's domain lists allow, at most `max`, each
/// page text cut to `bytes` (at a character boundary).
pub(crate) fn bound_hits(
    hits: Vec<SearchHit>,
    request: &SearchRequest,
    bytes: usize,
) -> Vec<SearchHit> {
    hits.into_iter()
        .filter(|hit| {
            let Some(host) = host_of(&hit.url) else {
                return false;
            };
            let allowed = request.allowed_domains.is_empty()
                || request.allowed_domains.iter().any(|d| on_domain(&host, d));
            allowed && !request.blocked_domains.iter().any(|d| on_domain(&host, d))
        })
        .take(request.max_results)
        .map(|mut hit| {
            cut(&mut hit.content, bytes);
            cut(&mut hit.title, 512);
            hit
        })
        .collect()
}

/// Cuts `s` to at most `bytes`, at a character boundary.
fn cut(s: &mut String, bytes: usize) {
    if s.len() > bytes {
        let mut end = bytes;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// What the model reads for a search: the query and each hit's title,
/// address, age and text. The same text comes back from hits a client sends
/// back in a later turn, so the model sees the same thing again.
pub(crate) fn model_text(query: &str, outcome: Result<&[SearchHit], SearchErrorCode>) -> String {
    let hits = match outcome {
        Err(SearchErrorCode::MaxUsesExceeded) => {
            return format!(
                "The web search for {query:?} was not run: this request's searches are spent. Answer with what you already know and have found."
            )
        }
        Err(code) => {
            return format!(
                "The web search for {query:?} failed ({}). Answer without it, or say that the search failed.",
                code.as_str()
            )
        }
        Ok(hits) => hits,
    };
    if hits.is_empty() {
        return format!("The web search for {query:?} found nothing.");
    }
    let mut text = format!("Web search results for {query:?}:\n");
    for (i, hit) in hits.iter().enumerate() {
        text.push_str(&format!("\n[{}] {}\nURL: {}\n", i + 1, hit.title, hit.url));
        if let Some(age) = &hit.page_age {
            text.push_str(&format!("Age: {age}\n"));
        }
        if !hit.content.is_empty() {
            text.push_str(&hit.content);
            text.push('\n');
        }
    }
    text
}

/// What a hit's `encrypted_content` is bound to.
const HIT_PURPOSE: &str = "web-search-hit";

/// A hit's `encrypted_content`: the hit as the model saw it (address,
/// title, age, text), signed with the layer's key. Not secret, only ours:
/// a later turn that sends it back gives the model the same text, and a
/// hit we did not make gives it nothing but its title and address.
pub(crate) fn seal_hit(key: &Key, hit: &SearchHit) -> String {
    let json = serde_json::json!({
        "u": hit.url, "t": hit.title, "c": hit.content, "a": hit.page_age,
    })
    .to_string();
    signing::seal(key, HIT_PURPOSE, &json)
}

/// The hit inside an `encrypted_content`, if we sealed it.
pub(crate) fn open_hit(key: &Key, sealed: &str) -> Option<SearchHit> {
    let json = signing::open(key, HIT_PURPOSE, sealed)?;
    let v: serde_json::Value = serde_json::from_str(&json).ok()?;
    let s = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    Some(SearchHit {
        url: s("u")?,
        title: s("t")?,
        content: s("c")?,
        page_age: s("a"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(allowed: &[&str], blocked: &[&str], max: usize) -> SearchRequest {
        SearchRequest {
            query: "q".into(),
            max_results: max,
            allowed_domains: allowed.iter().map(|s| s.to_string()).collect(),
            blocked_domains: blocked.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn hits(urls: &[&str]) -> Vec<SearchHit> {
        urls.iter()
            .map(|u| SearchHit::new(*u, "t", "é".repeat(100)))
            .collect()
    }

    #[test]
    fn domains_match_whole_labels() {
        assert_eq!(
            host_of("https://User@Docs.RS:443/x?y#z").as_deref(),
            Some("docs.rs")
        );
        assert!(on_domain("docs.rs", "docs.rs"));
        assert!(on_domain("www.docs.rs", "docs.rs"));
        assert!(on_domain("www.docs.rs", "https://docs.rs/"));
        assert!(!on_domain("notdocs.rs", "docs.rs"));
        assert!(!on_domain("docs.rs", ""));
    }

    #[test]
    fn hits_are_filtered_counted_and_cut() {
        let all = hits(&[
            "https://a.example.com/1",
            "https://b.org/2",
            "https://ads.example.com/3",
            "not a url",
            "https://example.com/4",
        ]);
        let kept = bound_hits(
            all.clone(),
            &req(&["example.com"], &["ads.example.com"], 5),
            11,
        );
        let urls: Vec<_> = kept.iter().map(|h| h.url.as_str()).collect();
        assert_eq!(urls, ["https://a.example.com/1", "https://example.com/4"]);
        assert_eq!(
            kept[0].content,
            "é".repeat(5),
            "cut at a character boundary"
        );
        let kept = bound_hits(all, &req(&[], &["b.org"], 2), 1000);
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|h| !h.url.contains("b.org")));
    }

    #[test]
    fn queries_are_checked() {
        assert_eq!(
            query_of(r#"{"query":" rust tower "}"#).unwrap(),
            "rust tower"
        );
        assert_eq!(
            query_of("{}").unwrap_err().code,
            SearchErrorCode::InvalidInput
        );
        assert_eq!(
            query_of(r#"{"query":1}"#).unwrap_err().code,
            SearchErrorCode::InvalidInput
        );
        let long = format!(r#"{{"query":"{}"}}"#, "a".repeat(MAX_QUERY_CHARS + 1));
        assert_eq!(
            query_of(&long).unwrap_err().code,
            SearchErrorCode::QueryTooLong
        );
    }

    #[test]
    fn sealed_hits_open_only_with_the_key_that_sealed_them() {
        let key = [7u8; 32];
        let mut hit = SearchHit::new("https://x.org/", "X", "text \"quoted\"");
        hit.page_age = Some("2 days ago".into());
        let sealed = seal_hit(&key, &hit);
        assert_eq!(open_hit(&key, &sealed), Some(hit));
        assert_eq!(open_hit(&[8u8; 32], &sealed), None);
        let tampered = sealed.replacen("v1.", "v1.A", 1);
        assert_eq!(open_hit(&key, &tampered), None);
        assert_eq!(open_hit(&key, "anthropic-encrypted-blob"), None);
    }

    #[test]
    fn the_model_reads_titles_addresses_and_text() {
        let hs = [SearchHit::new("https://x.org/", "X", "body")];
        let text = model_text("q", Ok(&hs));
        assert!(text.contains("[1] X\nURL: https://x.org/\nbody"), "{text}");
        assert!(model_text("q", Ok(&[])).contains("found nothing"));
        assert!(model_text("q", Err(SearchErrorCode::Unavailable)).contains("unavailable"));
        assert!(model_text("q", Err(SearchErrorCode::MaxUsesExceeded)).contains("spent"));
    }

    #[test]
    fn uses_are_capped() {
        let c = WebSearchConfig::new().default_max_uses(3).max_uses_cap(5);
        assert_eq!(c.uses(None), 3);
        assert_eq!(c.uses(Some(2)), 2);
        assert_eq!(c.uses(Some(50)), 5);
        assert_eq!(c.uses(Some(0)), 0);
    }
}
