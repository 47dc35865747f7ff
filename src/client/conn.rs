//! One HTTP/1.1 exchange with Ollama over a connection of the client's own:
//! the request written in as few writes as it allows, the response head
//! parsed with `httparse`, the body handed to [`OllamaBody`], and idle
//! connections kept for the next request.

use super::body::{read_into, Chunk, Framing, OllamaBody, READ_START};
use super::{tokens, CONNECT_TIMEOUT};
use crate::BoxError;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long an idle connection is kept for the next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most idle connections kept; past it the oldest is closed.
pub(super) const MAX_IDLE: usize = 256;
/// The longest response head accepted.
const HEAD_MAX: usize = 64 * 1024;
/// The most header fields in a response head.
const HEADERS_MAX: usize = 100;

/// Why an exchange with Ollama failed (the source of an
/// [`OllamaError`](super::OllamaError)).
#[derive(Debug)]
pub enum Failure {
    /// Connecting failed or took longer than the connect timeout.
    Connect(io::Error),
    /// Reading or writing the connection failed.
    Io(io::Error),
    /// Ollama closed the connection before its answer was whole.
    Cut,
    /// What Ollama sent is not HTTP/1.1 as RFC 9112 has it.
    Protocol(&'static str),
    /// The request body failed, or did not match its length.
    Request(BoxError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(_) => f.write_str("could not connect"),
            Failure::Io(_) => f.write_str("the connection failed"),
            Failure::Cut => f.write_str("Ollama closed the connection before the answer ended"),
            Failure::Protocol(what) => write!(f, "invalid HTTP from Ollama: {what}"),
            Failure::Request(_) => f.write_str("the request body failed"),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Connect(e) | Failure::Io(e) => Some(e),
            Failure::Request(e) => Some(&**e),
            Failure::Cut | Failure::Protocol(_) => None,
        }
    }
}

/// The connections to one Ollama that wait for a request, newest last.
#[derive(Debug, Default)]
pub(super) struct Idle {
    conns: Mutex<Vec<(TcpStream, Instant)>>,
}

impl Idle {
    /// The newest idle connection that is still open, if any.
    fn take(&self) -> Option<TcpStream> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some((io, since)) = conns.pop() {
            if now.duration_since(since) < IDLE_TIMEOUT && still_open(&io) {
                return Some(io);
            }
        }
        None
    }

    /// Keeps `io` for the next request, closing those idle too long.
    pub(super) fn put(&self, io: TcpStream) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let expired = conns
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT)
            .count();
        conns.drain(..expired);
        if conns.len() >= MAX_IDLE {
            conns.remove(0);
        }
        conns.push((io, now));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Whether an idle connection has neither been closed by Ollama nor has
/// unexpected bytes waiting (either makes it unusable).
fn still_open(io: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Where requests go: `host:port`, and the idle connections there.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) addr: String,
    pub(super) idle: Arc<Idle>,
}

/// A new connection to `addr`, within `timeout`: no Nagle delay (every
/// write is a whole message or chunk), TCP keep-alive at 90 s.
async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, Failure> {
    let io = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return Err(Failure::Connect(e)),
        Err(_) => {
            let why = format!("no connection within {} s", timeout.as_secs_f32());
            return Err(Failure::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                why,
            )));
        }
    };
    io.set_nodelay(true).map_err(Failure::Connect)?;
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(90));
    socket2::SockRef::from(&io)
        .set_tcp_keepalive(&keepalive)
        .map_err(Failure::Connect)?;
    Ok(io)
}

/// The request body as it is sent: whole when its first frame was all of
/// it (then a failed reused connection can be retried), else a stream.
enum Outgoing<B> {
    Whole(Bytes),
    Stream {
        first: Bytes,
        rest: B,
        length: Option<u64>,
    },
}

/// Sends `req` (already rebased onto Ollama) and reads the response head.
pub(super) async fn send<B>(
    target: &Target,
    req: Request<B>,
) -> Result<Response<OllamaBody>, Failure>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let hint = body.size_hint().exact();
    let mut outgoing = outgoing(body, hint).await?;
    let head = encode_head(&parts, &outgoing);
    let no_body = parts.method == Method::HEAD;
    let mut fresh_only = false;
    loop {
        let reused = if fresh_only { None } else { target.idle.take() };
        let was_reused = reused.is_some();
        let io = match reused {
            Some(io) => io,
            None => connect(&target.addr, CONNECT_TIMEOUT).await?,
        };
        match exchange(io, &head, &mut outgoing).await {
            Ok((io, buf, head)) => return response(io, buf, head, no_body, target),
            // A kept connection Ollama closed meanwhile: once more on a
            // new one, when the body can be sent again.
            Err(Attempt::Stale(_)) if was_reused && matches!(outgoing, Outgoing::Whole(_)) => {
                fresh_only = true;
            }
            Err(Attempt::Stale(e) | Attempt::Failed(e)) => return Err(e),
        }
    }
}

/// Takes the body's first frame, to know whether it is all of it.
async fn outgoing<B>(mut body: B, hint: Option<u64>) -> Result<Outgoing<B>, Failure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return Ok(Outgoing::Whole(Bytes::new()));
    }
    let first = loop {
        match body.frame().await {
            None => return Ok(Outgoing::Whole(Bytes::new())),
            Some(Err(e)) => return Err(Failure::Request(e.into())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    break data;
                }
            }
        }
    };
    if body.is_end_stream() {
        return Ok(Outgoing::Whole(first));
    }
    Ok(Outgoing::Stream {
        first,
        rest: body,
        length: hint,
    })
}

/// The request line and headers, with the framing of `outgoing`.
fn encode_head<B>(parts: &http::request::Parts, outgoing: &Outgoing<B>) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(128 + parts.headers.len() * 48);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let length = match outgoing {
        Outgoing::Whole(data) => Some(data.len() as u64),
        Outgoing::Stream { length, .. } => *length,
    };
    match length {
        Some(0) if matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE) => {}
        Some(n) => head.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Why an attempt failed: `Stale` when nothing came back on the connection
/// (a kept one Ollama had closed, if it was kept), else `Failed`.
enum Attempt {
    Stale(Failure),
    Failed(Failure),
}

/// The response head parsed, before its body.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

/// Writes the request on `io` and reads the response head.
async fn exchange<B>(
    mut io: TcpStream,
    head: &[u8],
    outgoing: &mut Outgoing<B>,
) -> Result<(TcpStream, BytesMut, Head), Attempt>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let written = match outgoing {
        Outgoing::Whole(data) => Framed::Plain(data.clone()).write(&mut io, head).await,
        Outgoing::Stream {
            first,
            rest,
            length,
        } => write_stream(&mut io, head, first, rest, *length).await,
    };
    match written {
        Ok(()) => {}
        Err(Failure::Io(e)) => return Err(Attempt::Stale(Failure::Io(e))),
        Err(e) => return Err(Attempt::Failed(e)),
    }
    let mut buf = BytesMut::with_capacity(READ_START);
    let head = read_head(&mut io, &mut buf).await?;
    Ok((io, buf, head))
}

/// The head, then the body frame by frame: chunked without a length, else
/// exactly `length` bytes.
async fn write_stream<B>(
    io: &mut TcpStream,
    head: &[u8],
    first: &mut Bytes,
    rest: &mut B,
    length: Option<u64>,
) -> Result<(), Failure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut sent = 0u64;
    let mut frame = Some(std::mem::take(first));
    let mut head = Some(head);
    loop {
        let data = frame.take().unwrap_or_default();
        sent += data.len() as u64;
        if length.is_some_and(|n| sent > n) {
            return Err(too_long());
        }
        let framed = match length {
            Some(_) => Framed::Plain(data),
            None if data.is_empty() => Framed::Plain(data),
            None => Framed::Chunk(data),
        };
        framed.write(io, head.take().unwrap_or_default()).await?;
        match rest.frame().await {
            None => break,
            Some(Err(e)) => return Err(Failure::Request(e.into())),
            Some(Ok(f)) => frame = f.into_data().ok(),
        }
    }
    if length.is_some_and(|n| sent != n) {
        return Err(too_long());
    }
    if length.is_none() {
        io.write_all(b"0\r\n\r\n").await.map_err(Failure::Io)?;
    }
    Ok(())
}

fn too_long() -> Failure {
    Failure::Request("the request body did not match its length".into())
}

/// A piece of a streamed request body as it goes on the wire.
enum Framed {
    Plain(Bytes),
    Chunk(Bytes),
}

impl Framed {
    /// Writes `before` (the head, the first time) and the piece, in one
    /// vectored write when the socket takes it.
    async fn write(self, io: &mut TcpStream, before: &[u8]) -> Result<(), Failure> {
        let result = match self {
            Framed::Plain(data) => io.write_all_buf(&mut before.chain(data)).await,
            Framed::Chunk(data) => {
                let size = format!("{:x}\r\n", data.len());
                let mut all = before
                    .chain(size.as_bytes())
                    .chain(data)
                    .chain(&b"\r\n"[..]);
                io.write_all_buf(&mut all).await
            }
        };
        result.map_err(Failure::Io)
    }
}

/// Reads until a whole response head (not a 1xx) is in `buf`, and takes it
/// from `buf`.
async fn read_head(io: &mut TcpStream, buf: &mut BytesMut) -> Result<Head, Attempt> {
    let mut next = READ_START;
    let mut got_any = false;
    loop {
        if !buf.is_empty() {
            got_any = true;
            if let Some(head) = parse_head(buf).map_err(Attempt::Failed)? {
                return Ok(head);
            }
            if buf.len() > HEAD_MAX {
                return Err(Attempt::Failed(Failure::Protocol(
                    "a response head too large",
                )));
            }
        }
        let read = std::future::poll_fn(|cx| read_into(io, buf, &mut next, cx)).await;
        match read {
            Ok(0) if got_any => return Err(Attempt::Failed(Failure::Cut)),
            Ok(0) => return Err(Attempt::Stale(Failure::Cut)),
            Ok(_) => {}
            Err(e) if got_any => return Err(Attempt::Failed(Failure::Io(e))),
            Err(e) => return Err(Attempt::Stale(Failure::Io(e))),
        }
    }
}

/// The head at the start of `buf`, taken from it; `None` while it is not
/// all there. Informational (1xx) heads are skipped.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Failure> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut res = httparse::Response::new(&mut fields);
        let len = match res.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Failure::Protocol("too many header fields"))
            }
            Err(_) => return Err(Failure::Protocol("an invalid response head")),
        };
        let status = res
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(Failure::Protocol("an invalid status"))?;
        let version = match res.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let mut headers = HeaderMap::with_capacity(res.headers.len());
        for f in res.headers.iter() {
            let name = HeaderName::from_bytes(f.name.as_bytes())
                .map_err(|_| Failure::Protocol("an invalid header name"))?;
            let value = HeaderValue::from_bytes(f.value)
                .map_err(|_| Failure::Protocol("an invalid header value"))?;
            headers.append(name, value);
        }
        buf.advance(len);
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        return Ok(Some(Head {
            status,
            version,
            headers,
        }));
    }
}

/// The response for `head`, its body read from `io`.
fn response(
    io: TcpStream,
    buf: BytesMut,
    head: Head,
    no_body: bool,
    target: &Target,
) -> Result<Response<OllamaBody>, Failure> {
    let keep = keep_alive(&head);
    let body = match framing(&head, no_body)? {
        Framing::Length(0) => {
            if keep && buf.is_empty() {
                target.idle.put(io);
            }
            OllamaBody::empty()
        }
        framing => OllamaBody::new(io, buf, framing, keep.then(|| target.idle.clone())),
    };
    let mut res = Response::new(body);
    *res.status_mut() = head.status;
    *res.version_mut() = head.version;
    *res.headers_mut() = head.headers;
    Ok(res)
}

/// Whether the connection may carry another request after this response.
fn keep_alive(head: &Head) -> bool {
    let close = tokens(&head.headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("close"));
    head.version == Version::HTTP_11 && !close && head.status != StatusCode::SWITCHING_PROTOCOLS
}

/// How the body's end is known (RFC 9112 §6.3); an error for a
/// `Content-Length` that is not one number.
fn framing(head: &Head, no_body: bool) -> Result<Framing, Failure> {
    let s = head.status;
    if no_body || s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    let h = &head.headers;
    let chunked = tokens(h, header::TRANSFER_ENCODING)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    if chunked {
        return Ok(Framing::Chunked(Chunk::Size));
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        return Ok(Framing::Close);
    }
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => Ok(Framing::Close),
        (Some(v), None) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Framing::Length)
            .ok_or(Failure::Protocol("an invalid content-length")),
        (Some(_), Some(_)) => Err(Failure::Protocol("more than one content-length")),
    }
}
