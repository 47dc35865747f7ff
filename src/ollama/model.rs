//! Model names as Ollama compares them.

/// The key of a model name, the one convention of the crate (the layer's
/// per-model settings and aliases, the pool's lists of hosts' models):
/// Ollama's own full form, minus its defaults. Lower case (Ollama compares
/// names without case), without the default registry and namespace
/// (`registry.ollama.ai/library/qwen3` and `library/qwen3` are `qwen3`),
/// with `:latest` when the name has no tag. So `qwen3`, `qwen3:latest`,
/// `Qwen3:Latest` and `library/qwen3` all have the key `qwen3:latest`;
/// `qwen3:8b` and `hf.co/acme/tiny` (`hf.co/acme/tiny:latest`) have their
/// own.
pub(crate) fn model_key(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let short = lower
        .strip_prefix("registry.ollama.ai/")
        .filter(|rest| rest.matches('/').count() == 1)
        .unwrap_or(&lower);
    let short = short
        .strip_prefix("library/")
        .filter(|rest| !rest.contains('/'))
        .unwrap_or(short);
    if short.is_empty() {
        return String::new();
    }
    let last = short.rsplit('/').next().unwrap_or(short);
    let mut key = String::with_capacity(short.len() + 7);
    key.push_str(short);
    if !last.contains(':') {
        key.push_str(":latest");
    }
    key
}

/// A model key (see [`model_key`]) the way people write it: `:latest`
/// left out.
pub(crate) fn short_name(key: &str) -> &str {
    key.strip_suffix(":latest").unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_one_model_share_its_key() {
        for name in [
            "qwen3",
            "qwen3:latest",
            "Qwen3:Latest",
            " QWEN3 ",
            "library/qwen3",
            "library/qwen3:latest",
            "registry.ollama.ai/library/qwen3",
            "Registry.Ollama.AI/Library/Qwen3:LATEST",
        ] {
            assert_eq!(model_key(name), "qwen3:latest", "{name}");
        }
        assert_eq!(short_name(&model_key("Qwen3:latest")), "qwen3");
    }

    #[test]
    fn other_tags_namespaces_and_hosts_are_other_models() {
        assert_eq!(model_key("qwen3:8b"), "qwen3:8b");
        assert_eq!(model_key("glm-5:cloud"), "glm-5:cloud");
        assert_eq!(model_key("jmorgan/llava"), "jmorgan/llava:latest");
        assert_eq!(
            model_key("registry.ollama.ai/jmorgan/llava"),
            "jmorgan/llava:latest"
        );
        assert_eq!(model_key("hf.co/org/model"), "hf.co/org/model:latest");
        assert_eq!(model_key("hf.co/library/m"), "hf.co/library/m:latest");
        assert_eq!(model_key("localhost:5000/m"), "localhost:5000/m:latest");
        assert_ne!(model_key("qwen3"), model_key("qwen3:8b"));
        assert_eq!(model_key(""), "");
        assert_eq!(model_key("  "), "");
    }
}
