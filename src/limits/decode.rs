//! Compressed request bodies (`Content-Encoding: gzip` or `zstd`), decoded
//! as they arrive: what is held is the *decoded* body, within the same
//! bounds as a plain one, so a few kilobytes that would decode to gigabytes
//! stop at the size limit with memory flat.

use crate::error::ApiError;
use http::header::{HeaderMap, CONTENT_ENCODING};
use http::StatusCode;

/// An encoding the layer decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Gzip,
    Zstd,
}

/// The largest zstd window a body may use (8 MiB, as Ollama allows): a
/// frame that asks for more is refused instead of allocated.
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Memory a decoder holds apart from the decoded body: the zstd window at
/// most, or deflate's 32 KiB window and state.
pub(crate) fn decoder_memory(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Zstd => (1 << ZSTD_WINDOW_LOG_MAX) + 256 * 1024,
        Encoding::Gzip => 64 * 1024,
    }
}

/// The request's content coding: `None` for none (or `identity`), an
/// [`Encoding`] the layer decodes, or a 415 for anything else.
pub(crate) fn encoding(headers: &HeaderMap) -> Result<Option<Encoding>, ApiError> {
    let mut codings = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
    let first = codings.next();
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{what}: send the JSON as it is, or compressed with gzip or zstd"),
        )
        .with_code("unsupported_content_encoding")
    };
    if codings.next().is_some() {
        return Err(unsupported("only one Content-Encoding is supported"));
    }
    match first {
        None => Ok(None),
        Some(c)
            if cfg!(feature = "compression")
                && (c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip")) =>
        {
            Ok(Some(Encoding::Gzip))
        }
        Some(c) if cfg!(feature = "compression") && c.eq_ignore_ascii_case("zstd") => {
            Ok(Some(Encoding::Zstd))
        }
        Some(c) => Err(unsupported(&format!(
            "Content-Encoding {c:?} is not supported"
        ))),
    }
}

/// Why decoding stopped.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// The decoded body passed the size limit (only a decoder finds that).
    #[cfg_attr(not(feature = "compression"), allow(dead_code))]
    TooLarge,
    /// The bytes are not what the encoding says.
    Corrupt(String),
}

impl DecodeError {
    pub(crate) fn into_api(self, limit: usize) -> ApiError {
        match self {
            DecodeError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the decoded request body is larger than the limit of {limit} bytes"),
            )
            .with_code("request_too_large"),
            DecodeError::Corrupt(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the compressed request body cannot be decoded: {e}"),
            )
            .with_code("invalid_content_encoding"),
        }
    }
}

#[cfg(feature = "compression")]
mod imp {
    use super::{DecodeError, Encoding, ZSTD_WINDOW_LOG_MAX};
    use bytes::BytesMut;
    use std::io::{self, Write};

    /// Where decoded bytes go: a buffer that refuses to pass its limit.
    struct Sink {
        buf: BytesMut,
        limit: usize,
        over: bool,
    }

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.buf.len() + data.len() > self.limit {
                self.over = true;
                return Err(io::Error::other("over the limit"));
            }
            self.buf.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    enum Inner {
        Gzip(flate2::write::GzDecoder<Sink>),
        Zstd(zstd::stream::write::Decoder<'static, Sink>),
    }

    /// A body being decoded.
    pub(crate) struct Decode {
        inner: Inner,
    }

    impl Decode {
        pub(crate) fn new(encoding: Encoding, limit: usize) -> Result<Self, DecodeError> {
            let sink = Sink {
                buf: BytesMut::new(),
                limit,
                over: false,
            };
            let inner = match encoding {
                Encoding::Gzip => Inner::Gzip(flate2::write::GzDecoder::new(sink)),
                Encoding::Zstd => {
                    let mut d = zstd::stream::write::Decoder::new(sink)
                        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
                    d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
                    Inner::Zstd(d)
                }
            };
            Ok(Decode { inner })
        }

        fn sink(&self) -> &Sink {
            match &self.inner {
                Inner::Gzip(d) => d.get_ref(),
                Inner::Zstd(d) => d.get_ref(),
            }
        }

        /// Bytes decoded so far.
        pub(crate) fn len(&self) -> usize {
            self.sink().buf.len()
        }

        fn error(&self, e: io::Error) -> DecodeError {
            if self.sink().over {
                DecodeError::TooLarge
            } else {
                DecodeError::Corrupt(e.to_string())
            }
        }

        /// Decodes the next piece of the body.
        pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
            let written = match &mut self.inner {
                Inner::Gzip(d) => d.write_all(chunk),
                Inner::Zstd(d) => d.write_all(chunk),
            };
            written.map_err(|e| self.error(e))
        }

        /// The whole decoded body.
        pub(crate) fn finish(mut self) -> Result<BytesMut, DecodeError> {
            let flushed = match &mut self.inner {
                Inner::Gzip(d) => d.try_finish(),
                Inner::Zstd(d) => d.flush(),
            };
            flushed.map_err(|e| self.error(e))?;
            Ok(match self.inner {
                Inner::Gzip(d) => {
                    d.finish()
                        .map_err(|e| DecodeError::Corrupt(e.to_string()))?
                        .buf
                }
                Inner::Zstd(d) => d.into_inner().buf,
            })
        }
    }
}

#[cfg(not(feature = "compression"))]
mod imp {
    use super::{DecodeError, Encoding};
    use bytes::BytesMut;

    /// Without the `compression` feature nothing is decoded
    /// ([`super::encoding`] refuses every coding first).
    pub(crate) struct Decode(std::convert::Infallible);

    impl Decode {
        pub(crate) fn new(_: Encoding, _: usize) -> Result<Self, DecodeError> {
            Err(DecodeError::Corrupt(
                "built without the compression feature".into(),
            ))
        }
        pub(crate) fn len(&self) -> usize {
            match self.0 {}
        }
        pub(crate) fn feed(&mut self, _: &[u8]) -> Result<(), DecodeError> {
            match self.0 {}
        }
        pub(crate) fn finish(self) -> Result<BytesMut, DecodeError> {
            match self.0 {}
        }
    }
}

pub(crate) use imp::Decode;

#[cfg(all(test, feature = "compression"))]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(
        enc: Encoding,
        data: &[u8],
        limit: usize,
        piece: usize,
    ) -> Result<BytesMut, DecodeError> {
        let mut d = Decode::new(enc, limit)?;
        for chunk in data.chunks(piece) {
            d.feed(chunk)?;
            assert!(d.len() <= limit);
        }
        d.finish()
    }

    #[test]
    fn gzip_and_zstd_decode_in_pieces() {
        let json = br#"{"model":"m","input":"hello"}"#.repeat(100);
        for piece in [1, 7, 4096] {
            assert_eq!(
                &decode(Encoding::Gzip, &gzip(&json), 1 << 20, piece).unwrap()[..],
                &json[..]
            );
            let z = zstd::encode_all(&json[..], 3).unwrap();
            assert_eq!(
                &decode(Encoding::Zstd, &z, 1 << 20, piece).unwrap()[..],
                &json[..]
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 64 << 20];
        let z = zstd::encode_all(&zeros[..], 19).unwrap();
        let g = gzip(&zeros);
        assert!(z.len() < 64 * 1024 && g.len() < 128 * 1024);
        for (enc, data) in [(Encoding::Zstd, &z), (Encoding::Gzip, &g)] {
            assert!(matches!(
                decode(enc, data, 1 << 20, 8192),
                Err(DecodeError::TooLarge)
            ));
        }
    }

    #[test]
    fn garbage_and_big_windows_are_refused() {
        assert!(matches!(
            decode(Encoding::Gzip, b"not gzip at all", 1 << 20, 4),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            decode(Encoding::Zstd, b"not zstd at all", 1 << 20, 4),
            Err(DecodeError::Corrupt(_))
        ));
        // A frame made with a 128 MiB window: refused, not allocated.
        let data = vec![7u8; 1 << 16];
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(27).unwrap();
        e.long_distance_matching(true).unwrap();
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        assert!(matches!(
            decode(Encoding::Zstd, &z, 1 << 30, 4096),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn encodings_are_read_from_the_headers() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_ENCODING, v.parse().unwrap());
            m
        };
        assert_eq!(encoding(&HeaderMap::new()).unwrap(), None);
        assert_eq!(encoding(&h("identity")).unwrap(), None);
        assert_eq!(encoding(&h("gzip")).unwrap(), Some(Encoding::Gzip));
        assert_eq!(encoding(&h("ZSTD")).unwrap(), Some(Encoding::Zstd));
        assert_eq!(encoding(&h("br")).unwrap_err().status, 415);
        assert_eq!(encoding(&h("gzip, zstd")).unwrap_err().status, 415);
    }
}
