//! The fake Ollama: the `ollama-translate-support` crate's (`support/`).
pub use ollama_translate_support::fake_ollama::*;
