//! Building requests for Ollama and responses for clients.

use crate::agent::Rounds;
use crate::body::{Limits, RequestBody, TranslateBody, MAX_ERROR_BODY};
use crate::dialect::{Delivery, Dialect, ErrorBody, JSON, SSE};
use crate::error::ApiError;
use crate::ollama::request::Endpoint;
use crate::ollama::routing::Seed;
use crate::telemetry::Meter;
use crate::timer::Timing;
use crate::transcode::Transcode;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};

/// An error in `dialect`'s shape, with its status.
pub(super) fn error<B>(
    dialect: &'static dyn Dialect,
    err: &ApiError,
) -> Response<TranslateBody<B>> {
    tracing::debug!(dialect = dialect.name(), status = err.status.as_u16(), message = ?err.message, "answering with an error");
    let mut res = Response::new(TranslateBody::full(dialect.error_body(err)));
    *res.status_mut() = err.status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    // Busy (the memory budget) or a key at its limit of requests in
    // flight: the SDKs retry after this.
    if matches!(
        err.status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// Headers of an upstream error re-rendered as a JSON error.
pub(super) fn error_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    h
}

/// What requests for Ollama take from the client's: its URI's scheme and
/// authority, extensions, `User-Agent` and the header naming its
/// conversation (one of the layer's `session_headers`), plus the
/// request's [`Routing`](crate::Routing) (for a pool to keep the
/// conversation on one host).
/// The rest (the client's credentials, `Host`, hop-by-hop headers) stays
/// behind.
#[derive(Clone)]
pub(super) struct Template {
    uri: Uri,
    extensions: http::Extensions,
    user_agent: Option<HeaderValue>,
    session: Option<(HeaderName, HeaderValue)>,
}

impl Template {
    /// What `parts` give requests for Ollama; `session_headers` name a
    /// conversation, the first found wins.
    pub(super) fn new(parts: http::request::Parts, session_headers: &[HeaderName]) -> Self {
        let session = session_headers
            .iter()
            .find_map(|name| Some((name.clone(), parts.headers.get(name)?.clone())));
        Template {
            uri: parts.uri,
            extensions: parts.extensions,
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
            session,
        }
    }

    /// Names the conversation with `x-session-id` when the client's headers
    /// named none.
    pub(super) fn conversation(&mut self, key: Option<&str>) {
        if self.session.is_none() {
            if let Some(v) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
                self.session = Some((HeaderName::from_static("x-session-id"), v));
            }
        }
    }

    /// Hands the request's [`Routing`](crate::Routing) on to every
    /// request for Ollama, its conversation keyed by the session header
    /// when there is one.
    pub(super) fn route(&mut self, seed: Option<Seed>) {
        if let Some(seed) = seed {
            let session = self.session.as_ref().map(|(_, value)| value.as_bytes());
            self.extensions.insert(seed.routing(session));
        }
    }
}

/// The request for Ollama: the native path and method, the JSON body.
pub(super) fn upstream_request<B>(
    template: &Template,
    endpoint: Endpoint,
    body: Bytes,
) -> Result<Request<RequestBody<B>>, ApiError> {
    let mut uri = Uri::builder().path_and_query(PathAndQuery::from_static(endpoint.path()));
    if let Some(scheme) = template.uri.scheme() {
        uri = uri.scheme(scheme.clone());
    }
    if let Some(authority) = template.uri.authority() {
        uri = uri.authority(authority.clone());
    }
    let uri = uri.build().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not build the upstream URI: {e}"),
        )
    })?;
    let mut req = Request::new(RequestBody::rewritten(body.clone()));
    *req.method_mut() = endpoint.method();
    *req.uri_mut() = uri;
    // Ollama speaks HTTP/1.1 whatever the client spoke to the layer.
    *req.version_mut() = http::Version::HTTP_11;
    *req.extensions_mut() = template.extensions.clone();
    let h = req.headers_mut();
    if !body.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    if let Some(ua) = &template.user_agent {
        h.insert(header::USER_AGENT, ua.clone());
    }
    if let Some((name, value)) = &template.session {
        h.insert(name.clone(), value.clone());
    }
    Ok(req)
}

/// What a translated answer needs once Ollama's headers are in.
pub(super) struct Answer<B> {
    pub(super) dialect: &'static dyn Dialect,
    pub(super) delivery: Delivery,
    pub(super) transcoder: Box<dyn Transcode>,
    pub(super) timing: Timing,
    /// See `Config::max_answer_bytes`.
    pub(super) limit: usize,
    /// Measures generating and embedding calls.
    pub(super) meter: Option<Meter>,
    /// Runs the answer's server tools between rounds.
    pub(super) agent: Option<Box<dyn Rounds<B>>>,
}

/// Ollama's response with its body translated: the dialect's content type
/// on success, Ollama's error re-rendered in the dialect otherwise.
pub(super) fn translated<B>(res: Response<B>, mut answer: Answer<B>) -> Response<TranslateBody<B>> {
    let (mut parts, body) = res.into_parts();
    // Only what belongs to the translated answer: Ollama's own headers
    // (cookies, lengths, encodings, anything `X-`) describe another body.
    let mut h = HeaderMap::new();
    let body = if parts.status.is_success() {
        let content_type = answer.delivery.content_type();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if content_type == SSE {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        }
        if let Some(meter) = answer.meter.as_mut() {
            meter.served();
            if answer.delivery == Delivery::Stream {
                meter.streaming();
            }
        }
        TranslateBody::translate_with(
            body,
            answer.transcoder,
            answer.timing.deadlines(),
            Limits {
                line: answer.limit,
                total: (answer.delivery != Delivery::Stream).then_some(answer.limit),
            },
            answer.meter,
            answer.agent,
        )
    } else {
        tracing::debug!(
            dialect = answer.dialect.name(),
            status = parts.status.as_u16(),
            "Ollama answered with an error"
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        if let Some(mut meter) = answer.meter {
            meter.finish(None, Some(parts.status.as_str()));
        }
        let errors = ErrorBody::new(answer.dialect, parts.status);
        // Bounded in bytes (`MAX_ERROR_BODY`) and in time (the idle
        // timeout); either way the client gets a whole error document.
        TranslateBody::translate(
            body,
            Box::new(errors),
            answer.timing.deadlines(),
            Limits::line(MAX_ERROR_BODY),
            None,
        )
    };
    parts.headers = h;
    Response::from_parts(parts, body)
}
