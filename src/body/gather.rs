//! Write coalescing: when a stream waits a turn of the executor for more
//! before handing out what is ready ([`Gather`]), and what a body passed
//! through holds back meanwhile ([`Held`]).

use crate::error::BoxError;
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Frames are handed out at most this big when more is ready at once.
pub(super) const GATHER_BYTES: usize = 16 * 1024;

/// Empty turns a stream waits, in a row, for its next chunk before handing
/// out what it has.
pub(super) const GATHER_TURNS: u8 = 4;

/// The most frames a stream sends without waiting after rounds in which
/// waiting gained nothing (doubling from 1).
pub(super) const GATHER_BACKOFF: u16 = 64;

/// Whether a stream waits a few turns of the executor for its next chunk
/// before handing out what is ready.
///
/// A server writes (one system call) whenever the response body has
/// nothing more right now. Tokens often arrive in bursts — several lines
/// in one read from Ollama — but a client connection hands them over one
/// chunk per turn of its task, so the body would find nothing more after
/// every token and each token would cost a write of its own. Waking itself
/// and returning `Pending` lets that task run; when the next chunk comes,
/// the tokens leave together. No timer is involved: a wait is a turn of the
/// executor (microseconds), and only [`GATHER_TURNS`] in a row.
///
/// When tokens really come one at a time (a model generating), waiting
/// gains nothing: after such a round the stream sends 1, 2, 4 … up to
/// [`GATHER_BACKOFF`] frames without waiting before it tries again, so a
/// paced token is almost never held back, and a stream that turns bursty
/// is caught within that many frames. The first frame never waits. A
/// translated stream's first frame does not gather either: it leaves with
/// the first chunk that gave it anything, and the stream then yields one
/// turn (a server writes what it holds only when the body says `Pending`),
/// so the time to the first token is what it would be without gathering
/// even when a burst is already in the client connection's buffer. A body
/// passed through may be a whole answer (`/api/tags`), which is best sent
/// in one write, so it gathers from the start.
#[derive(Debug)]
pub(super) struct Gather {
    /// Empty turns in a row in this round.
    pub(super) turns: u8,
    /// This round has waited at least once.
    pub(super) waited: bool,
    /// Waiting brought data this round.
    pub(super) gained: bool,
    /// Frames left to send without waiting.
    pub(super) skip: u16,
    /// The last backoff.
    pub(super) backoff: u16,
    /// No frame has gone out yet.
    pub(super) first: bool,
    /// The first frame has just gone out alone: yield a turn before more.
    pub(super) flush: bool,
}

impl Default for Gather {
    fn default() -> Self {
        Gather {
            turns: 0,
            waited: false,
            gained: false,
            // The first frame goes at once.
            skip: 1,
            backoff: 0,
            first: true,
            flush: false,
        }
    }
}

impl Gather {
    /// The upstream has nothing right now and `ready` bytes are waiting to
    /// go out: true to wait one more turn.
    pub(super) fn wait(&mut self, ready: usize) -> bool {
        if self.skip > 0 || ready >= GATHER_BYTES || self.turns >= GATHER_TURNS {
            return false;
        }
        self.turns += 1;
        self.waited = true;
        true
    }

    /// True once after the first frame went out alone, having woken the
    /// task: the stream answers `Pending`, and the server writes that frame
    /// before the rest of a burst is gathered.
    pub(super) fn yield_after_first(&mut self, cx: &mut Context<'_>) -> bool {
        if !std::mem::take(&mut self.flush) {
            return false;
        }
        cx.waker().wake_by_ref();
        true
    }

    /// Data came from the upstream.
    pub(super) fn arrived(&mut self) {
        if self.turns > 0 {
            self.gained = true;
            self.turns = 0;
        }
    }

    /// A frame goes out: the round ends.
    pub(super) fn sent(&mut self) {
        if self.skip > 0 {
            self.skip -= 1;
        } else if self.gained {
            self.backoff = 0;
        } else if self.waited {
            self.backoff = (self.backoff.saturating_mul(2) + 1).min(GATHER_BACKOFF);
            self.skip = self.backoff;
        }
        self.turns = 0;
        self.waited = false;
        self.gained = false;
        self.first = false;
    }
}

/// What a body passed through holds back: the data of chunks that came
/// together (the first kept as it came, the rest copied after it), and
/// what follows them (trailers, an error, the end). The stream's bytes are
/// unchanged; only how they are cut into frames is (see [`Gather`]).
#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) first: Option<Bytes>,
    pub(super) more: BytesMut,
    /// Trailers or an error, to hand out after the data.
    pub(super) next: Option<Result<Frame<Bytes>, BoxError>>,
    /// The inner body has ended or failed.
    pub(super) done: bool,
    /// Yielded once before an error, so the server flushes the data
    /// before it (hyper drops unflushed data on a body error).
    pub(super) yielded: bool,
    pub(super) gather: Gather,
}

impl Held {
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0 && self.next.is_none()
    }

    pub(super) fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.more.len()
    }

    pub(super) fn keep(&mut self, data: Bytes) {
        match &self.first {
            None if self.more.is_empty() => self.first = Some(data),
            _ => {
                if let Some(first) = self.first.take() {
                    self.more.extend_from_slice(&first);
                }
                self.more.extend_from_slice(&data);
            }
        }
    }

    pub(super) fn frame(&mut self) -> Option<Frame<Bytes>> {
        self.gather.sent();
        if !self.more.is_empty() {
            return Some(Frame::data(self.more.split().freeze()));
        }
        self.first.take().map(Frame::data)
    }

    pub(super) fn poll<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        loop {
            let len = self.len();
            if len > 0 && (self.done || self.next.is_some() || len >= GATHER_BYTES) {
                return Poll::Ready(self.frame().map(Ok));
            }
            if let Some(next) = self.next.take() {
                if next.is_err() && !self.yielded {
                    self.yielded = true;
                    self.next = Some(next);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(Some(next));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        self.keep(data.copy_to_bytes(data.remaining()));
                        self.gather.arrived();
                    }
                    Err(frame) => {
                        self.next = Some(Ok(
                            frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()))
                        ));
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    self.next = Some(Err(e.into()));
                    self.done = true;
                }
                Poll::Ready(None) => self.done = true,
                Poll::Pending if len == 0 => return Poll::Pending,
                Poll::Pending => {
                    if self.gather.wait(len) {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    return Poll::Ready(self.frame().map(Ok));
                }
            }
        }
    }
}
