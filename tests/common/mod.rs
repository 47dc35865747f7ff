#![allow(dead_code)]
pub mod fake_ollama;
pub mod proxy;
