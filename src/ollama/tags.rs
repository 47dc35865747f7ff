//! Ollama's model lists: `GET /api/tags` (the models a host has) and
//! `GET /api/ps` (the models it has loaded) answer the same shape,
//! `{"models":[{"name":…,"model":…,"modified_at":…,…}]}`.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A `/api/tags` or `/api/ps` answer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ModelList {
    /// Its entries that name a model, in Ollama's order.
    #[serde(default, deserialize_with = "named")]
    pub(crate) models: Vec<ListedModel>,
}

/// One entry of a [`ModelList`].
#[derive(Debug)]
pub(crate) struct ListedModel {
    /// Its `name` (else its `model`), as Ollama wrote it.
    pub(crate) name: String,
    /// `modified_at` (`/api/tags`), an RFC 3339 timestamp.
    pub(crate) modified_at: Option<String>,
    /// The entry as Ollama wrote it, every field kept.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) raw: Box<RawValue>,
}

impl ModelList {
    /// Reads `body`; entries that name no model are left out.
    #[cfg(any(feature = "pool", test))]
    pub(crate) fn parse(body: &[u8]) -> Result<ModelList, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// The entries of `models` that name a model.
fn named<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ListedModel>, D::Error> {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        model: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        modified_at: Option<Cow<'a, str>>,
    }
    let raws = Vec::<Box<RawValue>>::deserialize(d)?;
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let named: Named<'_> = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        let Some(name) = named.name.or(named.model).filter(|n| !n.is_empty()) else {
            continue;
        };
        let name = name.into_owned();
        let modified_at = named.modified_at.map(Cow::into_owned);
        out.push(ListedModel {
            name,
            modified_at,
            raw,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_timestamps_and_keeps_entries() {
        let list = ModelList::parse(
            br#"{"models":[{"name":"qwen3:latest","model":"qwen3:latest","modified_at":"2026-08-01T12:00:00Z","size":1},{"model":"llava:7b"},{"size":3},{"name":""}]}"#,
        )
        .unwrap();
        let names: Vec<&str> = list.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["qwen3:latest", "llava:7b"]);
        assert_eq!(
            list.models[0].modified_at.as_deref(),
            Some("2026-08-01T12:00:00Z")
        );
        assert_eq!(list.models[1].modified_at, None);
        assert_eq!(
            list.models[0].raw.get(),
            r#"{"name":"qwen3:latest","model":"qwen3:latest","modified_at":"2026-08-01T12:00:00Z","size":1}"#
        );
    }

    #[test]
    fn an_empty_answer_lists_nothing_and_garbage_is_an_error() {
        assert!(ModelList::parse(b"{}").unwrap().models.is_empty());
        assert!(ModelList::parse(br#"{"models":[]}"#)
            .unwrap()
            .models
            .is_empty());
        assert!(ModelList::parse(b"<html>").is_err());
        assert!(ModelList::parse(br#"{"models":[1]}"#).is_err());
    }
}
