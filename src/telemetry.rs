//! What the layer records, under OpenTelemetry's GenAI semantic-convention
//! names (schema 1.36), through the `metrics` facade (nothing is recorded,
//! and nearly nothing spent, when no recorder is installed) and one
//! `tracing` span per translated request.
//!
//! Every name lives here. A Prometheus exporter with unit suffixes turns
//! `gen_ai.client.operation.duration` into
//! `gen_ai_client_operation_duration_seconds`.

use crate::transcode::Usage;
use metrics::{counter, gauge, histogram, Label, SharedString, Unit};
use std::collections::HashSet;
use std::sync::{Mutex, Once, OnceLock};
use std::time::Instant;

/// `gen_ai.client.token.usage`, by `gen_ai.token.type` (`input`, `output`).
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// `gen_ai.client.operation.duration`, seconds, every request.
pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// `gen_ai.client.operation.time_to_first_chunk`, seconds, streams only.
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
/// `gen_ai.client.operation.time_per_output_chunk`, seconds, streams only.
pub const TIME_PER_OUTPUT_CHUNK: &str = "gen_ai.client.operation.time_per_output_chunk";
/// Translated requests answered, by `dialect` and `status`.
pub const REQUESTS: &str = "ollama_translate.requests";
/// Translated streams in flight.
pub const STREAMS_IN_FLIGHT: &str = "ollama_translate.streams_in_flight";
/// Calls to Ollama that failed, by `error_type`.
pub const UPSTREAM_ERRORS: &str = "ollama_translate.upstream_errors";

/// Requests a `Pool` (the `pool` feature) sent to a host, by `server.address`
/// (the host's name) and `affinity`: `none` (no conversation), `new` (its
/// first turn here), `kept` (its host again) or `moved` (its host could
/// not take it).
pub const POOL_REQUESTS: &str = "ollama_translate.pool.requests";
/// Requests a pool tried again on another host, by `reason`:
/// `unreachable`, `busy` (a 503), `model_missing` (a 404), `server_error`
/// (another 5xx, or an answer that is not Ollama's), `timeout` (no head in
/// time) or `search_unavailable` (a host that cannot run a web search).
pub const POOL_FAILOVERS: &str = "ollama_translate.pool.failovers";
/// 1 while a pool's host answers, 0 while it does not, by
/// `server.address`.
pub const POOL_HOST_UP: &str = "ollama_translate.pool.host_up";

/// Web searches the layer ran for a model's server tool, by `backend`
/// (`ollama`, `searxng`, `ollama_api`, `custom`) and `outcome` (`ok`, or an
/// error code: `unavailable`, `too_many_requests`, `invalid_input`,
/// `query_too_long`, `max_uses_exceeded`).
pub const WEB_SEARCHES: &str = "ollama_translate.web_searches";
/// How long each web search took, by `backend` and `outcome`.
pub const WEB_SEARCH_DURATION: &str = "ollama_translate.web_search.duration";

/// Advised boundaries for token counts.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Advised boundaries for durations, seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Model names come from clients: at most this many distinct values are
/// labels; the rest are `other`.
const MAX_MODELS: usize = 64;

/// The most bytes of one label value: a longer one is cut (at a character
/// boundary) and ends with `…`. Every line of a scrape repeats its labels,
/// so one long value costs its length times every series it is in.
pub const MAX_LABEL_BYTES: usize = 128;

/// The label value standing for every value not admitted.
pub const OTHER: &str = "other";

/// `value` as a metric label value, at most [`MAX_LABEL_BYTES`] long.
///
/// For values that come from configuration (a host's address, an API
/// key's name): their number is bounded there, their length here. Values
/// that come from clients also need a bound on how many there are: a
/// [`LabelSet`].
///
/// ```
/// use ollama_translate::telemetry::{bounded_label, MAX_LABEL_BYTES};
/// assert_eq!(bounded_label("qwen3").as_ref(), "qwen3");
/// let long = bounded_label(&"é".repeat(1000));
/// assert!(long.len() <= MAX_LABEL_BYTES && long.ends_with('…'));
/// ```
pub fn bounded_label(value: &str) -> SharedString {
    SharedString::from(cut_label(value).into_owned())
}

/// `value` cut to [`MAX_LABEL_BYTES`], `…` included.
fn cut_label(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_LABEL_BYTES {
        return value.into();
    }
    let ellipsis = '…';
    let mut end = MAX_LABEL_BYTES - ellipsis.len_utf8();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &value[..end]).into()
}

/// `text` cut to at most `max` bytes at a character boundary (for span
/// fields: a client's model name can be megabytes long).
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Label values admitted one by one, up to a number of distinct ones, each
/// cut to [`MAX_LABEL_BYTES`]; past the number every new value is
/// [`OTHER`]. What decides that a value deserves a label (a model Ollama
/// served, a configured name) is the caller's.
#[derive(Debug)]
pub struct LabelSet {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelSet {
    /// An empty set that admits at most `max` distinct values.
    pub fn new(max: usize) -> Self {
        LabelSet {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value`'s label, admitting it while there is room.
    pub fn admit(&self, value: &str) -> SharedString {
        let label = cut_label(value);
        let Ok(mut seen) = self.seen.lock() else {
            return SharedString::const_str(OTHER);
        };
        if seen.contains(label.as_ref())
            || (seen.len() < self.max && seen.insert(label.clone().into_owned()))
        {
            SharedString::from(label.into_owned())
        } else {
            SharedString::const_str(OTHER)
        }
    }

    /// `value`'s label if it was admitted before, else [`OTHER`].
    pub fn get(&self, value: &str) -> SharedString {
        let label = cut_label(value);
        match self.seen.lock() {
            Ok(seen) if seen.contains(label.as_ref()) => SharedString::from(label.into_owned()),
            _ => SharedString::const_str(OTHER),
        }
    }
}

fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        metrics::describe_histogram!(TOKEN_USAGE, "Tokens used per request, by gen_ai.token.type");
        metrics::describe_histogram!(
            OPERATION_DURATION,
            Unit::Seconds,
            "Duration of a GenAI operation"
        );
        metrics::describe_histogram!(
            TIME_TO_FIRST_CHUNK,
            Unit::Seconds,
            "Time to the first chunk of a stream"
        );
        metrics::describe_histogram!(
            TIME_PER_OUTPUT_CHUNK,
            Unit::Seconds,
            "Time per output chunk after the first"
        );
        metrics::describe_counter!(
            REQUESTS,
            "Translated requests answered, by dialect and status"
        );
        metrics::describe_gauge!(STREAMS_IN_FLIGHT, "Translated streams in flight");
        metrics::describe_counter!(
            UPSTREAM_ERRORS,
            "Calls to Ollama that failed, by error type"
        );
        metrics::describe_counter!(
            WEB_SEARCHES,
            "Web searches run for server tools, by backend and outcome"
        );
        metrics::describe_histogram!(
            WEB_SEARCH_DURATION,
            Unit::Seconds,
            "Duration of a web search, by backend and outcome"
        );
    });
}

/// The models that have a label of their own: those Ollama served (a
/// success answer) and those the configuration names, up to [`MAX_MODELS`].
/// A name Ollama refused (a 404) is never admitted: it is `other`.
fn models() -> &'static LabelSet {
    static MODELS: OnceLock<LabelSet> = OnceLock::new();
    MODELS.get_or_init(|| LabelSet::new(MAX_MODELS))
}

/// Key names come from the operator's keys file: at most this many distinct
/// values are labels (each at most [`MAX_NAME_BYTES`](crate::access::MAX_NAME_BYTES),
/// and [`MAX_LABEL_BYTES`] whatever that says), the rest are `other`.
const MAX_KEYS: usize = 64;

/// A key's name as a label value: itself while few names have been seen.
fn key_label(name: &str) -> SharedString {
    static KEYS: OnceLock<LabelSet> = OnceLock::new();
    // Names are short ASCII (`Key::new`); cut anyway.
    let name = name.get(..crate::access::MAX_NAME_BYTES).unwrap_or(name);
    KEYS.get_or_init(|| LabelSet::new(MAX_KEYS)).admit(name)
}

/// One translated (or refused) response leaving the layer, for the key
/// named `key` when one let it in.
pub(crate) fn answered(dialect: &'static str, status: http::StatusCode, key: Option<&str>) {
    describe();
    let status = status.as_str().to_string();
    match key {
        Some(key) => {
            counter!(REQUESTS, "dialect" => dialect, "status" => status, "key" => key_label(key))
        }
        None => counter!(REQUESTS, "dialect" => dialect, "status" => status),
    }
    .increment(1);
}

/// A pool sent a request to `host`.
#[cfg(feature = "pool")]
pub(crate) fn pool_routed(host: &str, affinity: &'static str) {
    describe();
    counter!(POOL_REQUESTS, "server.address" => bounded_label(host), "affinity" => affinity)
        .increment(1);
}

/// A pool tries another host.
#[cfg(feature = "pool")]
pub(crate) fn pool_failover(reason: &'static str) {
    describe();
    counter!(POOL_FAILOVERS, "reason" => reason).increment(1);
}

/// Whether a pool's host answers.
#[cfg(feature = "pool")]
pub(crate) fn pool_host_up(host: &str, up: bool) {
    describe();
    gauge!(POOL_HOST_UP, "server.address" => bounded_label(host)).set(if up { 1.0 } else { 0.0 });
}

/// One web search ran (or was refused before it ran: `duration` is `None`).
pub(crate) fn web_search(
    backend: &'static str,
    outcome: &'static str,
    duration: Option<std::time::Duration>,
) {
    describe();
    counter!(WEB_SEARCHES, "backend" => backend, "outcome" => outcome).increment(1);
    if let Some(d) = duration {
        metrics::histogram!(WEB_SEARCH_DURATION, "backend" => backend, "outcome" => outcome)
            .record(d.as_secs_f64());
    }
}

/// One failed call to Ollama.
pub(crate) fn upstream_error(error_type: &'static str) {
    describe();
    counter!(UPSTREAM_ERRORS, "error_type" => error_type).increment(1);
}

/// A generating or embedding request, measured from its start to the end
/// of its answer (or its failure, or the client going away).
pub(crate) struct Meter {
    operation: &'static str,
    /// The model as the client named it, cut to a label's length.
    model: String,
    server: Option<SharedString>,
    key: Option<SharedString>,
    /// The configuration names the model, or Ollama answered for it: the
    /// model may have a label of its own.
    known: bool,
    span: tracing::Span,
    start: Instant,
    stream: bool,
    first: Option<Instant>,
    last: Option<Instant>,
    chunks: u64,
    done: bool,
}

impl Meter {
    /// Starts measuring `operation` (`chat`, `text_completion`,
    /// `embeddings`) of `model` (as the client named it) served by
    /// `server` (Ollama's address, when known), for the key named `key`
    /// (when one let the request in). `configured`: the configuration
    /// names the model (see [`Meter::served`]).
    pub(crate) fn start(
        operation: &'static str,
        model: &str,
        server: Option<&str>,
        key: Option<&str>,
        configured: bool,
    ) -> Meter {
        describe();
        // Span fields are bounded too (an exporter sends each span).
        let shown = prefix(model, 4 * MAX_LABEL_BYTES);
        let span = tracing::info_span!(
            "gen_ai",
            otel.name = %format_args!("{operation} {}", shown.escape_debug()),
            otel.kind = "client",
            gen_ai.operation.name = operation,
            gen_ai.provider.name = "ollama",
            gen_ai.request.model = %shown.escape_debug(),
            server.address = server,
            ollama_translate.key = key,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
            gen_ai.response.finish_reasons = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        Meter {
            operation,
            model: cut_label(model).into_owned(),
            server: server.map(bounded_label),
            key: key.map(key_label),
            known: configured,
            span,
            start: Instant::now(),
            stream: false,
            first: None,
            last: None,
            chunks: 0,
            done: false,
        }
    }

    /// Ollama answered for the model (a success status): the name is one
    /// it serves, and may become a label.
    pub(crate) fn served(&mut self) {
        self.known = true;
    }

    /// The labels every measurement of this request carries.
    fn labels(&self) -> Vec<Label> {
        let model = if self.known {
            models().admit(&self.model)
        } else {
            models().get(&self.model)
        };
        let mut labels = vec![
            Label::new("gen_ai.operation.name", self.operation),
            Label::new("gen_ai.provider.name", "ollama"),
            Label::new("gen_ai.request.model", model),
        ];
        if let Some(server) = &self.server {
            labels.push(Label::new("server.address", server.clone()));
        }
        if let Some(key) = &self.key {
            labels.push(Label::new("key", key.clone()));
        }
        labels
    }

    /// The answer streams: chunk timings are recorded.
    pub(crate) fn streaming(&mut self) {
        if !self.stream {
            self.stream = true;
            gauge!(STREAMS_IN_FLIGHT).increment(1.0);
        }
    }

    /// A chunk with data went to the client.
    pub(crate) fn chunk(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.chunks += 1;
    }

    /// The answer ended: its usage when Ollama reported it, its failure if
    /// it had one.
    pub(crate) fn finish(&mut self, usage: Option<Usage<'_>>, error: Option<&str>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut labels = self.labels();
        if let Some(e) = error {
            labels.push(Label::new("error.type", e.to_string()));
            self.span.record("error.type", e);
            self.span.record("otel.status_code", "ERROR");
        }
        histogram!(OPERATION_DURATION, labels.clone()).record(self.start.elapsed().as_secs_f64());
        if self.stream {
            gauge!(STREAMS_IN_FLIGHT).decrement(1.0);
            if let Some(first) = self.first {
                histogram!(TIME_TO_FIRST_CHUNK, labels.clone())
                    .record(first.duration_since(self.start).as_secs_f64());
                if let (Some(last), true) = (self.last, self.chunks > 1) {
                    let per = last.duration_since(first).as_secs_f64() / (self.chunks - 1) as f64;
                    histogram!(TIME_PER_OUTPUT_CHUNK, labels.clone()).record(per);
                }
            }
        }
        if let Some(u) = usage {
            for (kind, n) in [("input", u.input), ("output", u.output)] {
                let Some(n) = n else { continue };
                let mut l = labels.clone();
                l.push(Label::new("gen_ai.token.type", kind));
                histogram!(TOKEN_USAGE, l).record(n as f64);
            }
            // As i64: tracing-opentelemetry turns a u64 into a string
            // attribute (the conventions want an int).
            if let Some(n) = u.input {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                self.span.record("gen_ai.usage.input_tokens", n);
            }
            if let Some(n) = u.output {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                self.span.record("gen_ai.usage.output_tokens", n);
            }
            if let Some(r) = u.finish_reason {
                self.span.record("gen_ai.response.finish_reasons", r);
            }
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // The client went away before the end.
        self.finish(None, Some("cancelled"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_capped_in_number_and_in_bytes() {
        let set = LabelSet::new(3);
        assert_eq!(set.get("a").as_ref(), OTHER, "not admitted yet");
        for v in ["a", "b", "c"] {
            assert_eq!(set.admit(v).as_ref(), v);
        }
        assert_eq!(set.admit("d").as_ref(), OTHER, "past the cap");
        assert_eq!(set.get("b").as_ref(), "b", "an admitted value keeps it");
        let set = LabelSet::new(2);
        let long = "x".repeat(1 << 20);
        let label = set.admit(&long);
        assert_eq!(label.len(), MAX_LABEL_BYTES);
        assert!(label.ends_with('…'));
        // Multi-byte characters are cut at a boundary.
        let label = bounded_label(&"é".repeat(MAX_LABEL_BYTES));
        assert!(label.len() <= MAX_LABEL_BYTES);
        assert!(label.starts_with("éé") && label.ends_with('…'));
        assert_eq!(bounded_label("short").as_ref(), "short");
        assert_eq!(prefix("ééé", 3), "é");
    }

    #[test]
    fn a_model_gets_a_label_only_once_served_or_configured() {
        let unknown = Meter::start("chat", "label-test-refused", None, None, false);
        assert_eq!(label(&unknown, "gen_ai.request.model"), OTHER);
        let mut served = Meter::start("chat", "label-test-served", Some("h:1"), None, false);
        served.served();
        assert_eq!(label(&served, "gen_ai.request.model"), "label-test-served");
        assert_eq!(label(&served, "server.address"), "h:1");
        // Learned: the next request for it has it before Ollama answers.
        let again = Meter::start("chat", "label-test-served", None, None, false);
        assert_eq!(label(&again, "gen_ai.request.model"), "label-test-served");
        let configured = Meter::start("chat", "label-test-alias", None, None, true);
        assert_eq!(
            label(&configured, "gen_ai.request.model"),
            "label-test-alias"
        );
        // Still refused: it never was admitted.
        let refused = Meter::start("chat", "label-test-refused", None, None, false);
        assert_eq!(label(&refused, "gen_ai.request.model"), OTHER);
    }

    fn label(meter: &Meter, key: &str) -> String {
        meter
            .labels()
            .iter()
            .find(|l| l.key() == key)
            .map(|l| l.value().to_string())
            .unwrap_or_default()
    }
}
