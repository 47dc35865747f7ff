//! Runs the fake Ollama server from `tests/common/fake_ollama.rs` as a standalone process.
//!
//! Binds `127.0.0.1:0` (or `FAKE_OLLAMA_ADDR`), prints exactly one line
//! `FAKE_OLLAMA_LISTENING http://127.0.0.1:<port>` to stdout, then serves until killed. With
//! `FAKE_OLLAMA_EXIT_ON_STDIN_EOF=1` it also exits when its stdin reaches EOF, so a parent test
//! process that dies (closing the pipe) takes it down too.
//!
//! ```text
//! cargo run --example fake_ollama
//! ```

// The module carries its own `#![allow(dead_code)]` (the binary uses only part of it).
#[path = "../tests/common/fake_ollama.rs"]
mod fake_ollama;

use std::io::{Read, Write};

use fake_ollama::FakeOllama;

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
    let fake = FakeOllama::serve(listener).await;

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
