//! The proxy's environment mini-languages, parsed into the layer's typed
//! settings: `REASONING` (`drop;[glm-5:cloud]forward`), `OLLAMA_OPTIONS`
//! (`num_ctx=32768,keep_alive=30m;[qwen3:8b]num_ctx=65536`) and
//! `MODEL_ALIASES` (`gpt-4o=qwen3:8b,claude-sonnet-4-5=glm-5:cloud`).

use ollama_translate::{ModelDefaults, OllamaTranslateLayer, ReasoningMode};

/// Splits a per-model spec into `(None, global)` and `(Some(model), value)`
/// parts: groups separated by `;`, a model's group starting `[model]`.
pub fn split_model_spec(spec: &str) -> Result<Vec<(Option<String>, String)>, String> {
    let mut out = Vec::new();
    for group in spec.split(';').map(str::trim).filter(|g| !g.is_empty()) {
        let Some(rest) = group.strip_prefix('[') else {
            out.push((None, group.to_string()));
            continue;
        };
        let (model, value) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in {group:?}"))?;
        let model = model.trim();
        if model.is_empty() {
            return Err(format!("empty model name in {group:?}"));
        }
        out.push((Some(model.to_string()), value.trim().to_string()));
    }
    Ok(out)
}

/// `REASONING`: a global mode and per-model ones.
pub fn reasoning(
    mut layer: OllamaTranslateLayer,
    spec: &str,
) -> Result<OllamaTranslateLayer, String> {
    for (model, value) in split_model_spec(spec)? {
        let mode: ReasoningMode = value.parse().map_err(|e| format!("{e}"))?;
        layer = match model {
            Some(m) => layer.model_reasoning(m, mode),
            None => layer.reasoning(mode),
        };
    }
    Ok(layer)
}

/// `OLLAMA_OPTIONS`: global options and per-model ones.
pub fn options(
    mut layer: OllamaTranslateLayer,
    spec: &str,
) -> Result<OllamaTranslateLayer, String> {
    for (model, value) in split_model_spec(spec)? {
        let defaults: ModelDefaults = value.parse().map_err(|e| format!("{e}"))?;
        layer = match model {
            Some(m) => layer.model_options(m, defaults),
            None => layer.default_options(defaults),
        };
    }
    Ok(layer)
}

/// `MODEL_ALIASES`: `from=to` pairs.
pub fn aliases(
    mut layer: OllamaTranslateLayer,
    spec: &str,
) -> Result<OllamaTranslateLayer, String> {
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected from=to, got {pair:?}"))?;
        layer = layer.model_alias(from.trim(), to.trim());
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_model_specs() {
        let parts =
            split_model_spec("num_ctx=8192; [qwen3:8b]num_ctx=65536,keep_alive=1h").unwrap();
        assert_eq!(parts[0], (None, "num_ctx=8192".to_string()));
        assert_eq!(
            parts[1],
            (
                Some("qwen3:8b".to_string()),
                "num_ctx=65536,keep_alive=1h".to_string()
            )
        );
        assert!(split_model_spec("[qwen3 num_ctx=1").is_err());
        assert!(split_model_spec("[]x").is_err());
    }

    #[test]
    fn bad_specs_are_errors() {
        let l = OllamaTranslateLayer::new;
        assert!(reasoning(l(), "loud").is_err());
        assert!(reasoning(l(), "forward;[glm-5:cloud]drop").is_ok());
        assert!(aliases(l(), "nope").is_err());
        assert!(options(l(), "num_ctx").is_err());
        assert!(options(l(), "num_ctx=1;[m]keep_alive=1h").is_ok());
    }
}
