//! `WEB_SEARCH` and the `WEB_SEARCH_*` settings: where clients' web search
//! tools search, and the bounds.

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use ollama_translate::client::{base_display, https_client};
use ollama_translate::search::{HttpSearch, SearchFormat, WebSearchConfig};
use std::time::Duration;

/// Ollama's public web search API (`WEB_SEARCH=ollama-api` without `WEB_SEARCH_URL`).
const OLLAMA_API_URL: &str = "https://ollama.com";

#[derive(clap::Args, Debug, Clone)]
pub struct SearchSettings {
    /// Where clients' web search tools search: ollama (through OLLAMA_BASE_URL's /api/experimental/web_search), searxng, ollama-api (ollama.com's web search API), or off.
    #[arg(long, env, default_value = "ollama", value_parser = ["ollama", "searxng", "ollama-api", "off"], ignore_case = true)]
    pub web_search: String,
    /// The SearXNG address (needed for searxng), or the web search API's [https://ollama.com for ollama-api].
    #[arg(long, env)]
    pub web_search_url: Option<String>,
    /// Key sent as Authorization: Bearer <key> (needed for ollama-api).
    #[arg(long, env, hide_env_values = true, value_parser = crate::settings::secret)]
    pub web_search_api_key: Option<crate::settings::Secret>,
    /// Results a search gives the model, 1 to 10.
    #[arg(long, env, default_value = "5", value_parser = clap::value_parser!(u64).range(1..=ollama_translate::search::MAX_RESULTS as u64))]
    pub web_search_results: u64,
    /// Bytes of page text per result that reach the model.
    #[arg(long, env, default_value = "8192", value_parser = clap::value_parser!(u64).range(256..))]
    pub web_search_result_bytes: u64,
    /// How long one search may take, 1 to 3600.
    #[arg(long, env, default_value = "15", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub web_search_timeout_secs: u64,
    /// Searches a request may run when the client sets no max_uses [3].
    #[arg(long, env, value_parser = clap::value_parser!(u32).range(1..))]
    pub web_search_max_uses: Option<u32>,
    /// Searches a request may run whatever the client asks.
    #[arg(long, env, default_value = "10", value_parser = clap::value_parser!(u32).range(1..))]
    pub web_search_max_uses_cap: u32,
}

impl SearchSettings {
    /// The layer's [`WebSearchConfig`], and what the line logged at start
    /// says of it (never the key).
    pub fn config(&self, hosts: &[Uri]) -> Result<(WebSearchConfig, String), String> {
        let cap = self.web_search_max_uses_cap;
        let max_uses = match self.web_search_max_uses {
            // An explicit default above the cap would silently be the cap.
            Some(n) if n > cap => {
                return Err(format!(
                    "WEB_SEARCH_MAX_USES ({n}) is above WEB_SEARCH_MAX_USES_CAP ({cap})"
                ))
            }
            Some(n) => n,
            None => 3.min(cap),
        };
        let key = self.web_search_api_key.as_ref().map(|k| k.0.clone());
        if let Some(k) = &key {
            HeaderValue::from_str(&format!("Bearer {k}"))
                .map_err(|e| format!("WEB_SEARCH_API_KEY: {e}"))?;
        }
        let url = self.web_search_url.clone();
        let kind = self.web_search.to_ascii_lowercase();
        let Some((config, shown)) = backend(&kind, url, key, hosts)? else {
            let off = "off (WEB_SEARCH=off): clients' web search tools are dropped";
            return Ok((WebSearchConfig::off(), off.into()));
        };
        let (results, bytes, secs) = (
            self.web_search_results,
            self.web_search_result_bytes,
            self.web_search_timeout_secs,
        );
        let config = config
            .max_results(results as usize)
            .result_bytes(bytes as usize)
            .timeout(Duration::from_secs(secs))
            .default_max_uses(max_uses)
            .max_uses_cap(cap);
        let shown = format!(
            "{shown}; {results} results a search, {bytes} bytes of text each, {secs} s a \
             search, {max_uses} searches a request unless the client says (at most {cap})"
        );
        Ok((config, shown))
    }
}

/// The backend `WEB_SEARCH` (`kind`) names, with `WEB_SEARCH_URL` and
/// `WEB_SEARCH_API_KEY`, and what the start line says of it; `None` for `off`.
fn backend(
    kind: &str,
    url: Option<String>,
    key: Option<String>,
    hosts: &[Uri],
) -> Result<Option<(WebSearchConfig, String)>, String> {
    let (format, base, key) = match kind {
        "off" => return Ok(None),
        "ollama" => {
            for (var, value) in [("WEB_SEARCH_URL", &url), ("WEB_SEARCH_API_KEY", &key)] {
                if value.is_some() {
                    return Err(format!(
                        "{var} is set, but WEB_SEARCH is ollama (the default: searches go \
                         through OLLAMA_BASE_URL); set WEB_SEARCH=searxng or ollama-api"
                    ));
                }
            }
            let shown = format!(
                "through Ollama at {} (POST /api/experimental/web_search)",
                crate::settings::shown(hosts)
            );
            return Ok(Some((WebSearchConfig::new(), shown)));
        }
        "searxng" => {
            let url = url.ok_or(
                "WEB_SEARCH=searxng needs WEB_SEARCH_URL, the SearXNG instance's address \
                 (e.g. http://searxng:8080)",
            )?;
            (SearchFormat::Searxng, search_url(&url)?, key)
        }
        _ => {
            let key = key.ok_or(
                "WEB_SEARCH=ollama-api needs WEB_SEARCH_API_KEY, an API key from ollama.com",
            )?;
            let base = search_url(url.as_deref().unwrap_or(OLLAMA_API_URL))?;
            (SearchFormat::OllamaApi, base, Some(key))
        }
    };
    let mut shown = match format {
        SearchFormat::Searxng => format!("SearXNG at {}", base_display(&base)),
        _ => format!("Ollama's web search API at {}", base_display(&base)),
    };
    let mut search = HttpSearch::<_, Full<Bytes>>::new(https_client(), base, format);
    if let Some(k) = key {
        search = search.api_key(k);
        shown.push_str(" (with WEB_SEARCH_API_KEY)");
    }
    Ok(Some((WebSearchConfig::with_backend(search), shown)))
}

/// `WEB_SEARCH_URL`: an `http://` or `https://` URL with a host, maybe a
/// path prefix; no credentials (`WEB_SEARCH_API_KEY` carries a key), no query.
fn search_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("WEB_SEARCH_URL {url:?}: {e}"))?;
    let not_http =
        || format!("WEB_SEARCH_URL {url:?} must be an http:// or https:// URL with a host");
    let Some(authority) = uri.authority() else {
        return Err(not_http());
    };
    if authority.as_str().contains('@') {
        // Not echoed: it holds a password.
        return Err(
            "WEB_SEARCH_URL must not hold credentials (user:password@); use WEB_SEARCH_API_KEY"
                .into(),
        );
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(not_http());
    }
    if uri.query().is_some() {
        return Err(format!("WEB_SEARCH_URL {url:?} must not have a query"));
    }
    Ok(uri)
}
