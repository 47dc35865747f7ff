//! OpenAI model discovery: `GET /v1/models` from `/api/tags`, and
//! `GET /v1/models/{id}` from `/api/show` (ids may contain `:` and `/`).

use super::{openai, Render, Upstream, WholeBody};
use crate::config::Config;
use crate::error::ApiError;
use crate::ollama::model::{model_key, short_name};
use crate::ollama::request::Endpoint;
use crate::ollama::tags::ModelList;
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use serde_json::{json, Value};

/// `GET /v1/models`.
pub(crate) struct ListModels;

/// `GET /v1/models/{id}`.
pub(crate) struct RetrieveModel;

/// `library` for plain names, else the namespace (`hf.co/acme/x` → `acme`).
fn owner(name: &str) -> String {
    let base = name.split(':').next().unwrap_or(name);
    let parts: Vec<&str> = base.split('/').collect();
    match parts.len() {
        0 | 1 => "library".to_string(),
        n => parts[n - 2].to_string(),
    }
}

fn model_object(id: &str, owner: &str, modified_at: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": modified_at.and_then(parse_rfc3339).unwrap_or(0),
        "owned_by": owner,
    })
}

/// Seconds since the epoch of an RFC 3339 timestamp (`2026-08-01T12:00:00.5+02:00`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_second)
}

dialect!(
    ListModels,
    "models.list",
    prepare_list_models,
    openai::error_body
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`ListModels`].
fn prepare_list_models(
    config: &Config,
    _parts: &Parts,
    _body: &[u8],
) -> Result<Upstream, ApiError> {
    let mut aliases: Vec<(String, String)> = config
        .aliases
        .iter()
        .map(|(a, t)| (a.clone(), t.clone()))
        .collect();
    aliases.sort();
    Ok(Upstream::document(
        Endpoint::Tags,
        Bytes::new(),
        WholeBody::boxed(ListTranscoder { aliases }),
    ))
}

struct ListTranscoder {
    aliases: Vec<(String, String)>,
}

impl Render for ListTranscoder {
    fn render(&mut self, body: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        let tags = openai::read_answer::<ModelList>(body, "model list")?;
        let mut data: Vec<Value> = tags
            .models
            .iter()
            .map(|m| model_object(&m.name, &owner(&m.name), m.modified_at.as_deref()))
            .collect();
        // Aliases are models too, for clients that check the list first
        // (named as written, without `:latest`).
        for (alias, target) in &self.aliases {
            let key = model_key(target);
            if let Some(m) = tags.models.iter().find(|m| model_key(&m.name) == key) {
                data.push(model_object(
                    short_name(alias),
                    &owner(&m.name),
                    m.modified_at.as_deref(),
                ));
            }
        }
        let v = json!({"object": "list", "data": data});
        out.extend_from_slice(v.to_string().as_bytes());
        Ok(())
    }
}

/// Decodes `%XX` escapes in a path segment; `None` for a bad escape or
/// bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    // `percent-encoding` leaves a bad escape as it is: refuse it instead.
    let bad = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if bad {
        return None;
    }
    percent_encoding::percent_decode(bytes)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

dialect!(
    RetrieveModel,
    "models.retrieve",
    prepare_retrieve_model,
    openai::error_body
);

/// [`Dialect::prepare`](super::Dialect::prepare) for [`RetrieveModel`].
fn prepare_retrieve_model(
    config: &Config,
    parts: &Parts,
    _body: &[u8],
) -> Result<Upstream, ApiError> {
    let raw = parts
        .uri
        .path()
        .strip_prefix("/v1/models/")
        .unwrap_or("")
        .trim_end_matches('/');
    let id = percent_decode(raw)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("model", "a model id is required"))?;
    let target = config.resolve_model(&id).to_string();
    let body = json!({"model": target}).to_string();
    Ok(Upstream::document(
        Endpoint::Show,
        Bytes::from(body),
        WholeBody::boxed(ShowTranscoder { id, target }),
    ))
}

struct ShowTranscoder {
    id: String,
    target: String,
}

impl Render for ShowTranscoder {
    fn render(&mut self, line: &[u8], out: &mut BytesMut) -> Result<(), ApiError> {
        // Ollama's `show` always carries `modified_at`: an answer without
        // it is not one (and no model is invented from it).
        let show = openai::read_answer::<Show>(line, "model description")?;
        let v = model_object(&self.id, &owner(&self.target), Some(&show.modified_at));
        out.extend_from_slice(v.to_string().as_bytes());
        Ok(())
    }
}

/// The part of `/api/show`'s answer a model object needs.
#[derive(serde::Deserialize)]
struct Show {
    modified_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Transcode;

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-08-01T12:00:00.000000000Z"),
            Some(1_785_585_600)
        );
        assert_eq!(
            parse_rfc3339("2026-08-01T14:00:00.5+02:00"),
            Some(1_785_585_600)
        );
        assert_eq!(parse_rfc3339("2026-08-01 12:00:00z"), Some(1_785_585_600));
        assert_eq!(
            parse_rfc3339("2026-08-01t12:00:00-00:30"),
            Some(1_785_587_400)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn owners_come_from_namespaces() {
        assert_eq!(owner("qwen3:latest"), "library");
        assert_eq!(owner("hf.co/acme/tiny:Q4"), "acme");
        assert_eq!(owner("jmorgan/llava"), "jmorgan");
    }

    #[test]
    fn lists_models_and_aliases() {
        let mut t = WholeBody::new(ListTranscoder {
            aliases: vec![
                ("gpt-4o".into(), "qwen3".into()),
                ("ghost".into(), "nope".into()),
            ],
        });
        let mut out = BytesMut::new();
        t.line(
            br#"{"models":[{"name":"qwen3:latest","modified_at":"1970-01-01T00:01:00Z"},{"name":"hf.co/acme/tiny:Q4"}]}"#,
            &mut out,
        );
        t.finish(&mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"], "list");
        let ids: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["qwen3:latest", "hf.co/acme/tiny:Q4", "gpt-4o"]);
        assert_eq!(v["data"][0]["created"], 60);
        assert_eq!(v["data"][0]["owned_by"], "library");
    }

    #[test]
    fn garbage_from_ollama_is_a_502_not_a_model() {
        let mut list = WholeBody::new(ListTranscoder { aliases: vec![] });
        let mut show = WholeBody::new(ShowTranscoder {
            id: "m".into(),
            target: "m".into(),
        });
        let mut out = BytesMut::new();
        list.line(b"<html>oops</html>", &mut out);
        show.line(b"garbage", &mut out);
        assert!(out.is_empty(), "nothing rendered");
        for failure in [list.failure(), show.failure()] {
            assert_eq!(failure.expect("failed").status, 502);
        }
        // An empty answer is `{}`: no `modified_at`, so no invented model.
        let mut show = WholeBody::new(ShowTranscoder {
            id: "m".into(),
            target: "m".into(),
        });
        show.finish(&mut out).unwrap_err();
        assert!(out.is_empty());
    }

    #[test]
    fn decodes_ids() {
        assert_eq!(
            percent_decode("hf.co%2Facme%2Ftiny%3AQ4").unwrap(),
            "hf.co/acme/tiny:Q4"
        );
        assert!(percent_decode("bad%zz").is_none());
        assert!(percent_decode("bad%2").is_none());
        assert!(percent_decode("%ff").is_none(), "not UTF-8");
        assert_eq!(percent_decode("qwen3%3A8b").unwrap(), "qwen3:8b");
    }
}
