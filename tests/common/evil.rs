//! A careless (or hostile) Ollama on a raw socket: answers that never end,
//! lines without a newline, HTML where JSON belongs, headers that belong to
//! nobody, silence. Each connection reads one request and answers with
//! what the test's closure picks; every answer is bounded in bytes and
//! time so that a regression fails the test, not the machine.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the evil Ollama saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub head: String,
    pub body: Vec<u8>,
}

/// What to answer.
pub enum Answer {
    /// A whole response with `Content-Length`.
    Full {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: Vec<u8>,
    },
    /// `200`, chunked: `prefix`, then `repeat` again and again until
    /// `max_bytes` are sent or the peer goes away.
    Endless {
        prefix: Vec<u8>,
        repeat: Vec<u8>,
        max_bytes: usize,
    },
    /// `200`, chunked: `prefix`, then `repeat` once every `every`, for at
    /// most `for_at_most` or until the peer goes away.
    Paced {
        prefix: Vec<u8>,
        repeat: Vec<u8>,
        every: Duration,
        for_at_most: Duration,
    },
    /// Nothing at all, for up to a minute.
    Silence,
}

/// A running evil Ollama; stops with the test's runtime.
pub struct Evil {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Bytes written by `Endless` answers so far.
    pub sent: Arc<std::sync::atomic::AtomicUsize>,
}

impl Evil {
    pub async fn start(pick: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Evil {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let pick = Arc::new(pick);
        let (seen2, sent2) = (seen.clone(), sent.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (pick, seen, sent) = (pick.clone(), seen2.clone(), sent2.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &*pick, &seen, &sent).await;
                });
            }
        });
        Evil { url, seen, sent }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Seen>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    Ok(Some(Seen {
        method: first.next().unwrap_or("").to_string(),
        path: first.next().unwrap_or("").to_string(),
        head,
        body,
    }))
}

async fn serve(
    mut stream: TcpStream,
    pick: &(dyn Fn(&Seen) -> Answer + Send + Sync),
    seen: &Mutex<Vec<Seen>>,
    sent: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let answer = pick(&req);
    seen.lock().unwrap().push(req);
    match answer {
        Answer::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        Answer::Endless {
            prefix,
            repeat,
            max_bytes,
        } => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            let mut chunk = prefix;
            let mut total = 0;
            while total < max_bytes {
                if chunk.is_empty() {
                    // 64 KiB of the repeated piece per chunk.
                    while chunk.len() < 64 * 1024 {
                        chunk.extend_from_slice(&repeat);
                    }
                }
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                stream.write_all(&chunk).await?;
                stream.write_all(b"\r\n").await?;
                total += chunk.len();
                sent.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                chunk.clear();
            }
        }
        Answer::Paced {
            prefix,
            repeat,
            every,
            for_at_most,
        } => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            let end = tokio::time::Instant::now() + for_at_most;
            let mut chunk = prefix;
            while tokio::time::Instant::now() < end {
                if !chunk.is_empty() {
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    stream.write_all(&framed).await?;
                    sent.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(every).await;
                chunk = repeat.clone();
            }
        }
        Answer::Silence => tokio::time::sleep(Duration::from_secs(60)).await,
    }
    stream.shutdown().await
}
