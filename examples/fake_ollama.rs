//! Runs the fake Ollama server of the test support crate (`support/src/fake_ollama.rs`) as a
//! standalone process.
//!
//! Binds `127.0.0.1:0` (or `FAKE_OLLAMA_ADDR`), prints exactly one line
//! `FAKE_OLLAMA_LISTENING http://127.0.0.1:<port>` to stdout, then serves until killed. With
//! `FAKE_OLLAMA_EXIT_ON_STDIN_EOF=1` it also exits when its stdin reaches EOF, so a parent test
//! process that dies (closing the pipe) takes it down too.
//!
//! Optional environment variables shape the instance (see the module docs of the fake):
//!
//! - `FAKE_OLLAMA_MODELS`: comma-separated model names; only these catalogue models exist on
//!   this instance (unset or empty: the whole catalogue).
//! - `FAKE_OLLAMA_LOADED`: comma-separated model names loaded at start (listed by `/api/ps`).
//! - `FAKE_OLLAMA_PROMPT_COST_US_PER_KIB`: prompt processing cost in microseconds per KiB of
//!   prompt not shared with the model's cached prompt (unset: 0, no prompt-cache delay).
//!
//! An unknown model name or a cost that is not an integer is an error (non-zero exit status,
//! nothing on stdout).
//!
//! ```text
//! cargo run --example fake_ollama
//! ```

use std::io::{Read, Write};

use ollama_translate_support::fake_ollama::{FakeConfig, FakeOllama};

/// A comma-separated list from the environment; unset or empty ⇒ `None`.
fn env_list(name: &str) -> Option<Vec<String>> {
    let value = std::env::var(name).ok()?;
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (!items.is_empty()).then_some(items)
}

fn fail(message: String) -> ! {
    eprintln!("fake_ollama: {message}");
    std::process::exit(1);
}

#[tokio::main]
async fn main() {
    let addr = std::env::var("FAKE_OLLAMA_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_string());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake_ollama: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let config = FakeConfig {
        models: env_list("FAKE_OLLAMA_MODELS"),
        loaded: env_list("FAKE_OLLAMA_LOADED").unwrap_or_default(),
    };
    let prompt_cost = match std::env::var("FAKE_OLLAMA_PROMPT_COST_US_PER_KIB") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
            Ok(us) => std::time::Duration::from_micros(us),
            Err(e) => fail(format!("FAKE_OLLAMA_PROMPT_COST_US_PER_KIB={v:?}: {e}")),
        },
        _ => std::time::Duration::ZERO,
    };
    // An unknown model name panics (with the name) before anything is printed on stdout.
    let fake = FakeOllama::serve_with(listener, config).await;
    fake.set_prompt_cost(prompt_cost);

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "FAKE_OLLAMA_LISTENING {}", fake.base_url()).expect("write to stdout");
    stdout.flush().expect("flush stdout");
    drop(stdout);

    // A plain thread rather than tokio's stdin: a blocking read there would hold up runtime
    // shutdown.
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    if std::env::var("FAKE_OLLAMA_EXIT_ON_STDIN_EOF").as_deref() == Ok("1") {
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = eof_tx.send(());
        });
    } else {
        // Keep the sender alive so the receiver never resolves.
        std::mem::forget(eof_tx);
    }

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = eof_rx => {}
    }
    drop(fake);
    // Exit without waiting for the runtime to wind down (the stdin thread may still block).
    std::process::exit(0);
}
