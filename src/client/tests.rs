//! The client against a raw TCP Ollama that writes exactly the bytes a
//! test gives it, where the test wants them cut.

use super::conn::MAX_IDLE;
use super::*;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// What the raw server does with each request on a connection: the
/// response bytes, written `cut` bytes at a time, and whether to close the
/// connection after it.
#[derive(Clone)]
struct Script {
    response: Vec<u8>,
    cut: usize,
    close_after: bool,
    /// Requests answered on one connection; the next is read and the
    /// connection closed without an answer (a kept connection that dies
    /// as a request goes out).
    answers: usize,
}

/// A raw server: every connection reads request heads (and bodies, by
/// `Content-Length` or chunked), answers each with the script. Returns its
/// address, the connections accepted, and the request bytes it saw.
async fn raw(script: Script) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, s) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((io, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(io, script.clone(), s.clone()));
        }
    });
    (format!("http://{addr}"), accepted, seen)
}

async fn serve(mut io: TcpStream, script: Script, seen: Arc<std::sync::Mutex<Vec<u8>>>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for answered in 0..=script.answers {
        // A request is whole once its head ended and, for these tests, the
        // body's end is in: `0\r\n\r\n` for chunked, the length otherwise.
        while !whole(&got) {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        seen.lock().unwrap().extend_from_slice(&got);
        got.clear();
        if answered == script.answers {
            return;
        }
        for piece in script.response.chunks(script.cut) {
            if io.write_all(piece).await.is_err() {
                return;
            }
            io.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        if script.close_after {
            return;
        }
    }
}

fn whole(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let body = &got[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    body.len() >= length
}

fn chunked(lines: &[&str]) -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for l in lines {
        r.extend_from_slice(format!("{:x}\r\n{l}\r\n", l.len()).as_bytes());
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

async fn get(c: &OllamaClient<Empty<Bytes>>) -> Result<(StatusCode, Bytes), OllamaError> {
    let res = c
        .clone()
        .oneshot(Request::get("/api/chat").body(Empty::new()).unwrap())
        .await?;
    let status = res.status();
    Ok((status, res.into_body().collect().await.unwrap().to_bytes()))
}

#[tokio::test]
async fn chunked_answers_cut_anywhere_arrive_whole_on_one_connection() {
    let lines = ["{\"message\":{\"content\":\"He\"}}\n", "{\"done\":true}\n"];
    for cut in [1, 2, 3, 7, 64, 4096] {
        let (base, accepted, _) = raw(Script {
            response: chunked(&lines),
            cut,
            close_after: false,
            answers: usize::MAX - 1,
        })
        .await;
        let c = OllamaClient::new(base.parse().unwrap()).unwrap();
        for _ in 0..3 {
            let (status, body) = get(&c).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(body, lines.concat().as_bytes(), "cut {cut}");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "cut {cut}: one kept connection"
        );
    }
}

#[tokio::test]
async fn a_connection_closed_after_an_answer_is_replaced_and_the_request_sent_again() {
    // No `Connection: close`: the client keeps it, Ollama closes it.
    let (base, accepted, _) = raw(Script {
        response: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        cut: 4096,
        close_after: true,
        answers: usize::MAX - 1,
    })
    .await;
    let c = OllamaClient::new(base.parse().unwrap()).unwrap();
    for _ in 0..3 {
        let (_, body) = get(&c).await.unwrap();
        assert_eq!(body, "ok");
        // Let the close arrive, or not: both paths must answer.
        tokio::task::yield_now().await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_kept_connection_that_dies_as_the_request_goes_out_is_retried_once() {
    let (base, accepted, seen) = raw(Script {
        response: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        cut: 4096,
        close_after: false,
        answers: 1,
    })
    .await;
    let c = OllamaClient::new(base.parse().unwrap()).unwrap();
    assert_eq!(get(&c).await.unwrap().1, "ok");
    assert_eq!(c.target.idle.len(), 1);
    // Sent on the kept connection, which closes unanswered; then on a new one.
    assert_eq!(get(&c).await.unwrap().1, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let wire = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
    assert_eq!(wire.matches("GET /api/chat HTTP/1.1").count(), 3, "{wire}");

    // A request body that streams cannot be sent twice: the error is the
    // caller's.
    let c = OllamaClient::<Frames>::new(c.base().clone()).unwrap();
    let post = || {
        let body = Frames([Bytes::from_static(b"{}"), Bytes::from_static(b" ")].into());
        Request::post("/api/chat").body(body).unwrap()
    };
    let res = c.clone().oneshot(post()).await.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    let err = c.clone().oneshot(post()).await.unwrap_err();
    assert!(matches!(err.source, Failure::Cut), "{err:?}");
}

#[tokio::test]
async fn connection_close_and_http_1_0_are_not_kept() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let (base, accepted, _) = raw(Script {
            response: response.to_vec(),
            cut: 4096,
            close_after: false,
            answers: usize::MAX - 1,
        })
        .await;
        let c = OllamaClient::new(base.parse().unwrap()).unwrap();
        get(&c).await.unwrap();
        get(&c).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(c.target.idle.len(), 0);
    }
}

#[tokio::test]
async fn a_body_until_the_close_and_an_answer_cut_short() {
    let (base, _, _) = raw(Script {
        response: b"HTTP/1.1 200 OK\r\n\r\nall of it".to_vec(),
        cut: 3,
        close_after: true,
        answers: usize::MAX - 1,
    })
    .await;
    let c = OllamaClient::new(base.parse().unwrap()).unwrap();
    assert_eq!(get(&c).await.unwrap().1, "all of it");

    let (base, _, _) = raw(Script {
        response: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel".to_vec(),
        cut: 4096,
        close_after: true,
        answers: usize::MAX - 1,
    })
    .await;
    let c = OllamaClient::new(base.parse().unwrap()).unwrap();
    let res = c
        .oneshot(Request::get("/").body(Empty::new()).unwrap())
        .await
        .unwrap();
    let err = res.into_body().collect().await.unwrap_err();
    assert!(matches!(err, Failure::Cut), "{err:?}");
}

#[tokio::test]
async fn nonsense_and_heads_too_large_are_errors() {
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    while huge.len() <= 70_000 {
        huge.extend_from_slice(b"x-filler: 0123456789012345678901234567890123456789\r\n");
    }
    for response in [b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), huge] {
        let (base, _, _) = raw(Script {
            response,
            cut: 4096,
            close_after: false,
            answers: usize::MAX - 1,
        })
        .await;
        let c = OllamaClient::new(base.parse().unwrap()).unwrap();
        let err = get(&c).await.unwrap_err();
        assert!(!err.is_connect());
        assert!(
            err.chain().contains("invalid HTTP from Ollama"),
            "{}",
            err.chain()
        );
    }
}

/// A request body of frames whose length is not known ahead.
struct Frames(VecDeque<Bytes>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|d| Ok(http_body::Frame::data(d))))
    }
}

#[tokio::test]
async fn streamed_request_bodies_are_chunked_and_lengths_are_kept() {
    let (base, _, seen) = raw(Script {
        response: b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        cut: 4096,
        close_after: false,
        answers: usize::MAX - 1,
    })
    .await;
    let c = OllamaClient::<Frames>::new(base.parse().unwrap()).unwrap();
    let body = Frames(
        [&b"{\"model\":"[..], b"\"qwen3\"}"]
            .map(Bytes::from_static)
            .into(),
    );
    let res = c
        .clone()
        .oneshot(Request::post("/api/chat").body(body).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let wire = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
    assert!(wire.starts_with("POST /api/chat HTTP/1.1\r\n"), "{wire}");
    assert!(wire.contains("transfer-encoding: chunked\r\n"), "{wire}");
    assert!(
        wire.ends_with("\r\n\r\n9\r\n{\"model\":\r\n8\r\n\"qwen3\"}\r\n0\r\n\r\n"),
        "{wire}"
    );
}

#[tokio::test]
async fn dropping_the_body_closes_the_connection() {
    // Ollama's side: answer with the start of a stream, then wait for the
    // connection to close, as Ollama does to cancel a generation.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = io.read(&mut buf).await.unwrap();
        let start = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab\n\r\n";
        io.write_all(start).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf)).await;
        let _ = tx.send(matches!(closed, Ok(Ok(0))));
    });
    let c = OllamaClient::<Empty<Bytes>>::new(format!("http://{addr}").parse().unwrap()).unwrap();
    let mut body = c
        .oneshot(Request::get("/").body(Empty::new()).unwrap())
        .await
        .unwrap()
        .into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "ab\n");
    drop(body);
    assert!(rx.await.unwrap(), "Ollama saw the connection close");
}

#[tokio::test]
async fn kept_connections_are_bounded() {
    let idle = Idle::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut kept = Vec::new();
    for _ in 0..MAX_IDLE + 3 {
        let io = TcpStream::connect(addr).await.unwrap();
        kept.push(listener.accept().await.unwrap().0);
        idle.put(io);
    }
    assert_eq!(idle.len(), MAX_IDLE);
}
