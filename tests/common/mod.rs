#![allow(dead_code)]
pub mod child;
pub mod evil;
pub mod fake_ollama;
pub mod proxy;
