//! Secrets stay secret: `Debug` output hides the keys.

#[path = "../examples/proxy/app.rs"]
mod app;

use ollama_translate::OllamaTranslateLayer;
use sha2::{Digest, Sha256};
use tower::Layer;

const API_KEY: &str = "sk-proxy-Zq81xVb";
const THINKING_SECRET: &str = "thinking-secret-Pw93kT";
const OLLAMA_KEY: &str = "ollama-upstream-Hc47mN";

/// The ways a secret could show in `Debug` output: its text, and for the
/// thinking key the derived key's bytes (as a hex string and as the array
/// `Debug` prints).
fn forms_of_secrets() -> Vec<String> {
    let derived: [u8; 32] = Sha256::digest(THINKING_SECRET.as_bytes()).into();
    let hex: String = derived.iter().map(|b| format!("{b:02x}")).collect();
    let upper = hex.to_ascii_uppercase();
    let list = format!("{derived:?}");
    // The first bytes alone, in case of a different layout (`[1, 2, ...`).
    let head = list[..list.len().min(20)].to_string();
    vec![
        API_KEY.into(),
        THINKING_SECRET.into(),
        OLLAMA_KEY.into(),
        hex,
        upper,
        list,
        head,
    ]
}

fn assert_hides_secrets(what: &str, debug: &str) {
    for secret in forms_of_secrets() {
        assert!(
            !debug.contains(&secret),
            "{what} shows {secret:?}:\n{debug}"
        );
    }
}

fn configured_layer() -> OllamaTranslateLayer {
    OllamaTranslateLayer::new()
        .think_models(["glm-5:cloud"])
        .model_alias("gpt-4o", "qwen3:8b")
        .max_request_bytes(1_234_567)
        .thinking_key(THINKING_SECRET)
        .require_api_key(API_KEY)
}

#[derive(Debug)]
struct Inner;

#[test]
fn layer_and_service_debug_hide_the_keys() {
    let layer = configured_layer();
    let service = layer.clone().layer(Inner);
    for (what, debug) in [
        ("layer", format!("{layer:?}")),
        ("layer {:#?}", format!("{layer:#?}")),
        ("service", format!("{service:?}")),
        ("service {:#?}", format!("{service:#?}")),
    ] {
        assert_hides_secrets(what, &debug);
        // Everything else is still there.
        for shown in [
            "think_models",
            "glm-5:cloud",
            "gpt-4o",
            "qwen3:8b",
            "1234567",
            "keepalive",
            "thinking_key",
        ] {
            assert!(debug.contains(shown), "{what} lacks {shown:?}:\n{debug}");
        }
        assert!(debug.contains("<redacted>"), "{what}:\n{debug}");
    }
    assert!(format!("{service:?}").contains("Inner"));
    let compact = format!("{layer:?}");
    assert!(compact.contains("thinking_key: <redacted>"), "{compact}");
    assert!(compact.contains("api_key: Some(<redacted>)"), "{compact}");
    // Without an API key there is nothing to hide.
    let plain = format!("{:?}", OllamaTranslateLayer::new());
    assert!(plain.contains("api_key: None"), "{plain}");
}

#[test]
fn proxy_settings_debug_hides_the_keys() {
    let env = |k: &str| {
        match k {
            "PROXY_API_KEY" => Some(API_KEY),
            "THINKING_KEY" => Some(THINKING_SECRET),
            "OLLAMA_API_KEY" => Some(OLLAMA_KEY),
            "OLLAMA_BASE_URL" => Some("http://ollama.internal:11434"),
            _ => None,
        }
        .map(String::from)
    };
    let settings = app::Settings::from_env(env).unwrap();
    let header = settings.ollama_api_key.as_ref().unwrap();
    assert!(
        header.is_sensitive(),
        "OLLAMA_API_KEY's header is sensitive"
    );
    assert_eq!(header, &format!("Bearer {OLLAMA_KEY}")[..]);
    for debug in [format!("{settings:?}"), format!("{settings:#?}")] {
        assert_hides_secrets("settings", &debug);
        for shown in ["127.0.0.1:4000", "ollama.internal:11434", "shutdown_grace"] {
            assert!(debug.contains(shown), "settings lack {shown:?}:\n{debug}");
        }
    }
    let compact = format!("{settings:?}");
    assert!(
        compact.contains("ollama_api_key: Some(<redacted>)"),
        "{compact}"
    );
    assert!(compact.contains("api_key: Some(<redacted>)"), "{compact}");
    let plain = format!("{:?}", app::Settings::from_env(|_| None).unwrap());
    assert!(plain.contains("ollama_api_key: None"), "{plain}");
}
