//! [`ReadBody`]: a request body read whole (the client's, or the one a
//! pool reads for its model), with bounds on its size, on the memory every
//! request being read and parsed holds together, and on the time it may
//! take; [`reserve_parse`]: what parsing it will take.

use super::decode::{decoder_memory, Decode, Encoding};
use super::Hold;
use crate::error::{error_chain, ApiError, BoxError};
use crate::timer::Sleep;
use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// Bodies up to this size are parsed without counting their JSON values:
/// they cannot hold enough values to matter.
const COUNT_VALUES_ABOVE: usize = 1024 * 1024;
/// The most JSON values one request may hold: parsed, each costs tens of
/// bytes however few bytes it took on the wire (`[0,0,0,…]`).
pub(crate) const MAX_JSON_VALUES: usize = 1 << 20;
/// What one parsed JSON value is reckoned to cost.
const BYTES_PER_VALUE: usize = 64;

/// Reserves what parsing `body` will take from the budget; refuses bodies
/// whose JSON holds too many values (a 413).
pub(crate) fn reserve_parse(hold: &mut Hold, body: &[u8]) -> Result<(), ApiError> {
    if body.len() <= COUNT_VALUES_ABOVE {
        return hold.grow(body.len().saturating_mul(2));
    }
    let values = count_values(body);
    if values > MAX_JSON_VALUES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body holds more than {MAX_JSON_VALUES} JSON values"),
        )
        .with_code("request_too_large"));
    }
    hold.grow(body.len() + values * BYTES_PER_VALUE)
}

/// Commas and opening brackets outside strings: about one per JSON value.
fn count_values(body: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (1usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => n += 1,
                _ => {}
            }
        }
    }
    n
}

pin_project! {
    /// Reads a request body whole: at most `limit` bytes (a 413), within
    /// the shared budget (a 503), before the deadline (a 408).
    pub(crate) struct ReadBody<B> {
        #[pin]
        body: B,
        buf: BytesMut,
        limit: usize,
        hold: Hold,
        deadline: Option<(Sleep, Duration)>,
        // A compressed body: what is held and bounded is what it decodes to.
        decode: Option<Decode>,
    }
}

impl<B> ReadBody<B> {
    pub(crate) fn new(
        body: B,
        limit: usize,
        hold: Hold,
        deadline: Option<(Sleep, Duration)>,
    ) -> Self {
        ReadBody {
            body,
            buf: BytesMut::new(),
            limit,
            hold,
            deadline,
            decode: None,
        }
    }

    /// The body is compressed with `encoding`: it is decoded as it comes,
    /// the decoder's own memory taken from the budget first.
    pub(crate) fn decoding(mut self, encoding: Option<Encoding>) -> Result<Self, ApiError> {
        if let Some(encoding) = encoding {
            self.hold.grow(decoder_memory(encoding))?;
            self.decode =
                Some(Decode::new(encoding, self.limit).map_err(|e| e.into_api(self.limit))?);
        }
        Ok(self)
    }
}

/// A body over the size limit.
pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes"),
    )
    .with_code("request_too_large")
}

impl<B> Future for ReadBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<(Bytes, Hold), ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let frame = match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    let Some((sleep, after)) = this.deadline.as_mut() else {
                        return Poll::Pending;
                    };
                    ready!(sleep.as_mut().poll(cx));
                    let message = format!(
                        "the request body did not arrive within {} s",
                        after.as_secs()
                    );
                    return Poll::Ready(Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, message)
                        .with_code("request_timeout")));
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    let Ok(mut data) = frame.into_data() else {
                        continue;
                    };
                    if let Some(decode) = this.decode.as_mut() {
                        let before = decode.len();
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let len = chunk.len();
                            decode.feed(chunk).map_err(|e| e.into_api(*this.limit))?;
                            data.advance(len);
                        }
                        this.hold.grow(decode.len() - before)?;
                        continue;
                    }
                    let n = data.remaining();
                    if this.buf.len() + n > *this.limit {
                        return Poll::Ready(Err(too_large(*this.limit)));
                    }
                    this.hold.grow(n)?;
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        this.buf.extend_from_slice(chunk);
                        let len = chunk.len();
                        data.advance(len);
                    }
                }
                Some(Err(e)) => {
                    let e: BoxError = e.into();
                    let message = format!("could not read the request body: {}", error_chain(&*e));
                    return Poll::Ready(Err(ApiError::new(StatusCode::BAD_REQUEST, message)));
                }
                None => {
                    if let Some(decode) = this.decode.take() {
                        *this.buf = decode.finish().map_err(|e| e.into_api(*this.limit))?;
                    }
                    let budget = this.hold.budget.clone();
                    let hold = std::mem::replace(this.hold, Hold::new(budget));
                    return Poll::Ready(Ok((std::mem::take(this.buf).freeze(), hold)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Budget;
    use std::sync::atomic::Ordering;

    #[test]
    fn counts_values_outside_strings() {
        assert_eq!(count_values(b"{}"), 2);
        assert_eq!(count_values(br#"[0,0,0]"#), 4);
        assert_eq!(count_values(br#"{"a,[{":"x\",y","b":[1,2]}"#), 5);
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = Budget::new(100);
        let mut a = Hold::new(budget.clone());
        let mut b = Hold::new(budget.clone());
        a.grow(60).unwrap();
        assert_eq!(b.grow(50).unwrap_err().status, 503);
        b.grow(40).unwrap();
        drop(a);
        b.grow(60).unwrap();
        drop(b);
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
    }

    #[test]
    fn too_many_values_is_a_413_before_parsing() {
        let mut hold = Hold::new(Budget::new(usize::MAX));
        let mut body = b"{\"model\":\"m\",\"x\":[".to_vec();
        body.extend(std::iter::repeat_n(&b"0,"[..], MAX_JSON_VALUES + 10).flatten());
        body.extend_from_slice(b"0]}");
        assert_eq!(reserve_parse(&mut hold, &body).unwrap_err().status, 413);
        let mut hold = Hold::new(Budget::new(usize::MAX));
        let text = format!("{{\"s\":\"{}\"}}", "a,".repeat(COUNT_VALUES_ABOVE));
        reserve_parse(&mut hold, text.as_bytes()).unwrap();
    }
}
