//! Test support of `ollama-translate`, shared by its tests, examples and
//! benches (not published): [`fake_ollama`], a scriptable fake Ollama.

pub mod fake_ollama;
