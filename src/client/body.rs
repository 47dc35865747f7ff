//! [`OllamaBody`]: a response body read straight from Ollama's connection.
//!
//! The body owns the connection while it is read: each poll decodes what is
//! already in the read buffer (a chunk, the rest of a `Content-Length`, or
//! whatever came before the close) and reads the socket only when the
//! buffer holds nothing to hand over. There is no task and no channel
//! between the socket and whoever polls the body. At the end of a body
//! that allows it the connection goes back to the client's idle set;
//! dropped before the end, it is closed, which is how Ollama learns that
//! nobody wants the rest of a generation.

use super::conn::{Failure, Idle};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::net::TcpStream;

/// The first read buffer of a response; it doubles (up to [`READ_MAX`])
/// while reads fill it, so a burst costs few reads and a slow stream little
/// memory.
pub(super) const READ_START: usize = 2048;
/// The most one read asks for.
const READ_MAX: usize = 64 * 1024;
/// The longest chunk-size or trailer line accepted.
const LINE_MAX: usize = 4096;
/// The most trailer bytes accepted after the last chunk.
const TRAILERS_MAX: usize = 16 * 1024;

/// How the body's end is known (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length`: this many bytes are left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// Neither: the body ends when Ollama closes the connection.
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one, this many
    /// bytes of them so far.
    Trailers(usize),
}

/// What one decoding step found.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Data(Bytes),
    End,
    More,
}

/// A response body from Ollama, read from the connection as it is polled.
/// Its frames are data only (trailers are read and dropped: Ollama sends
/// none). Dropping it before its end closes the connection.
///
/// [`OllamaClient`](super::OllamaClient)'s response body.
pub struct OllamaBody {
    reader: Option<Reader>,
}

struct Reader {
    io: TcpStream,
    buf: BytesMut,
    framing: Framing,
    /// How much the next read may ask for.
    next: usize,
    /// Where the connection goes at the end, when it may be used again.
    reuse: Option<Arc<Idle>>,
}

impl OllamaBody {
    /// A body without content (a `HEAD` answer, 204, 304, `Content-Length:
    /// 0`); the connection, if any, is already back in the idle set.
    pub(super) fn empty() -> Self {
        OllamaBody { reader: None }
    }

    /// The body that follows a response head on `io`, `buf` holding what
    /// was read past the head.
    pub(super) fn new(
        io: TcpStream,
        buf: BytesMut,
        framing: Framing,
        reuse: Option<Arc<Idle>>,
    ) -> Self {
        OllamaBody {
            reader: Some(Reader {
                io,
                buf,
                framing,
                next: READ_START,
                reuse,
            }),
        }
    }

    /// Ends the body: the connection goes back to the idle set when it
    /// may, and nothing unread is left on it.
    fn finish(&mut self) {
        if let Some(r) = self.reader.take() {
            if let (Some(idle), true) = (r.reuse, r.buf.is_empty()) {
                idle.put(r.io);
            }
        }
    }
}

impl fmt::Debug for OllamaBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OllamaBody")
            .field("framing", &self.reader.as_ref().map(|r| r.framing))
            .finish()
    }
}

impl Body for OllamaBody {
    type Data = Bytes;
    type Error = Failure;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Failure>>> {
        let this = self.get_mut();
        loop {
            let Some(r) = this.reader.as_mut() else {
                return Poll::Ready(None);
            };
            match r.framing.decode(&mut r.buf) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(e) => {
                    this.reader = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(r.poll_read(cx)) {
                Ok(0) if r.framing == Framing::Close => {
                    this.reader = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.reader = None;
                    return Poll::Ready(Some(Err(Failure::Cut)));
                }
                Ok(_) => {}
                Err(e) => {
                    this.reader = None;
                    return Poll::Ready(Some(Err(Failure::Io(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.reader.as_ref().map(|r| r.framing) {
            None => SizeHint::with_exact(0),
            Some(Framing::Length(n)) => SizeHint::with_exact(n),
            Some(_) => SizeHint::default(),
        }
    }
}

impl Reader {
    /// Reads what the socket has into the buffer: `Ok(0)` at its end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        read_into(&mut self.io, &mut self.buf, &mut self.next, cx)
    }
}

/// One read from `io` into `buf`, growing `next` while reads fill what they
/// were given (up to [`READ_MAX`]). The buffer's space is reclaimed in place
/// once the frames handed out from it are dropped. A read that does not
/// fill the buffer tells tokio the socket is drained, so no second read is
/// spent finding that out.
pub(super) fn read_into(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    next: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < *next / 2 {
        buf.reserve(*next);
    }
    let room = buf.capacity() - buf.len();
    let n = ready!(tokio_util::io::poll_read_buf(Pin::new(io), cx, buf))?;
    if n == room {
        *next = (*next * 2).min(READ_MAX);
    }
    Poll::Ready(Ok(n))
}

impl Framing {
    /// Decodes what `buf` holds: data to hand over, the end, or a need for
    /// more bytes.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Failure> {
        match self {
            Framing::Length(0) => Ok(Decoded::End),
            Framing::Length(left) => Ok(take(buf, left)),
            Framing::Close if buf.is_empty() => Ok(Decoded::More),
            Framing::Close => Ok(Decoded::Data(buf.split().freeze())),
            Framing::Chunked(chunk) => chunk.decode(buf),
        }
    }
}

/// Up to `left` bytes of `buf` as data.
fn take(buf: &mut BytesMut, left: &mut u64) -> Decoded {
    if buf.is_empty() {
        return Decoded::More;
    }
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    Decoded::Data(buf.split_to(n).freeze())
}

impl Chunk {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Failure> {
        loop {
            match self {
                Chunk::Size => {
                    let Some(line) = line(buf)? else {
                        return Ok(Decoded::More);
                    };
                    *self = match chunk_size(&line)? {
                        0 => Chunk::Trailers(0),
                        n => Chunk::Data(n),
                    };
                }
                Chunk::Data(left) => {
                    let found = take(buf, left);
                    if *left == 0 {
                        *self = Chunk::DataEnd;
                    }
                    return Ok(found);
                }
                Chunk::DataEnd => {
                    let Some(line) = line(buf)? else {
                        return Ok(Decoded::More);
                    };
                    if !line.is_empty() {
                        return Err(Failure::Protocol("a chunk longer than its size"));
                    }
                    *self = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let Some(line) = line(buf)? else {
                        return Ok(Decoded::More);
                    };
                    if line.is_empty() {
                        return Ok(Decoded::End);
                    }
                    *seen += line.len() + 2;
                    if *seen > TRAILERS_MAX {
                        return Err(Failure::Protocol("trailers too large"));
                    }
                }
            }
        }
    }
}

/// The next line of `buf` without its line end (CRLF, or a bare LF), taken
/// from the buffer; `None` until a whole line is there.
fn line(buf: &mut BytesMut) -> Result<Option<Bytes>, Failure> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > LINE_MAX {
            Err(Failure::Protocol("a chunk line too long"))
        } else {
            Ok(None)
        };
    };
    let mut line = buf.split_to(end + 1);
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    Ok(Some(line.freeze()))
}

/// A chunk-size line's size: hex digits, maybe extensions after `;`.
fn chunk_size(line: &[u8]) -> Result<u64, Failure> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(Failure::Protocol("an invalid chunk size"));
    }
    let mut size = 0u64;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(Failure::Protocol("an invalid chunk size")),
        };
        size = size * 16 + u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, wire: &[u8], cut: usize) -> Result<(Vec<u8>, bool), Failure> {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(cut.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match f.decode(&mut buf)? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::End => return Ok((out, true)),
                    Decoded::More => break,
                }
            }
        }
        Ok((out, false))
    }

    #[test]
    fn chunked_bodies_decode_at_every_cut() {
        let wire = b"7\r\n{\"a\":1}\r\n1;ext=1\r\n\n\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        for cut in 1..wire.len() {
            let (out, ended) = decode_all(Framing::Chunked(Chunk::Size), wire, cut).unwrap();
            assert_eq!(out, b"{\"a\":1}\n0123456789", "cut {cut}");
            assert!(ended, "cut {cut}");
        }
    }

    #[test]
    fn bare_line_feeds_are_accepted() {
        let (out, ended) = decode_all(Framing::Chunked(Chunk::Size), b"3\nabc\n0\n\n", 2).unwrap();
        assert_eq!((out.as_slice(), ended), (&b"abc"[..], true));
    }

    #[test]
    fn lengths_end_where_they_say() {
        let (out, ended) = decode_all(Framing::Length(5), b"hello", 2).unwrap();
        assert_eq!((out.as_slice(), ended), (&b"hello"[..], true));
        let (out, ended) = decode_all(Framing::Length(9), b"hello", 3).unwrap();
        assert_eq!((out.as_slice(), ended), (&b"hello"[..], false));
    }

    #[test]
    fn bad_chunks_are_errors() {
        for wire in [
            &b"zz\r\nab\r\n"[..],
            b"2\r\nabc\r\n0\r\n\r\n",
            b"ffffffffffffffff\r\n",
            b"\r\n",
        ] {
            assert!(
                decode_all(Framing::Chunked(Chunk::Size), wire, 64).is_err(),
                "{wire:?}"
            );
        }
        let long = vec![b'1'; LINE_MAX + 1];
        assert!(decode_all(Framing::Chunked(Chunk::Size), &long, LINE_MAX + 1).is_err());
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"x-trailer: 12345\r\n");
        }
        assert!(decode_all(Framing::Chunked(Chunk::Size), &trailers, 512).is_err());
    }
}
