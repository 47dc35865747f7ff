use super::gather::*;
use super::translate::*;
use super::*;
use crate::error::Failure;
use proptest::prelude::*;
use std::collections::VecDeque;

/// Counts lines and keeps the longest; whole-body when asked.
struct Lines {
    whole: bool,
    longest: usize,
    aborted: bool,
}

impl Transcode for Lines {
    fn line(&mut self, line: &[u8], _out: &mut BytesMut) {
        self.longest = self.longest.max(line.len());
    }
    fn finish(&mut self, _out: &mut BytesMut) -> Result<(), BoxError> {
        Ok(())
    }
    fn abort(&mut self, _failure: Failure, _message: &str, _out: &mut BytesMut) {
        self.aborted = true;
    }
    fn whole_body(&self) -> bool {
        self.whole
    }
}

fn translator(whole: bool, limits: Limits) -> Translator {
    Translator {
        transcoder: Box::new(Lines {
            whole,
            longest: 0,
            aborted: false,
        }),
        deadlines: None,
        limit: limits.line,
        total_limit: limits.total,
        fed: 0,
        meter: None,
        partial: BytesMut::new(),
        out: BytesMut::new(),
        upstream_done: false,
        error: None,
        yielded_before_error: false,
        ended: false,
        gather: Gather::default(),
        looping: false,
        round: None,
        between_rounds: false,
    }
}

/// Echoes each line, newline included.
struct Echo;

impl Transcode for Echo {
    fn line(&mut self, line: &[u8], out: &mut BytesMut) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    fn finish(&mut self, _out: &mut BytesMut) -> Result<(), BoxError> {
        Ok(())
    }
    fn abort(&mut self, _failure: Failure, _message: &str, _out: &mut BytesMut) {}
}

/// Hands over one line per poll, and between lines says `Pending`:
/// with `burst`, after waking its waker at once (the next line is
/// already in the connection's buffer and comes a turn later, as
/// hyper's client hands chunks over); without, the next line comes when
/// the test sets `ready` (a model generating).
struct HandOver {
    lines: VecDeque<Bytes>,
    ready: bool,
    burst: bool,
    polls: usize,
}

impl Body for HandOver {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.polls += 1;
        if !self.ready {
            if self.burst {
                self.ready = true;
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        self.ready = false;
        Poll::Ready(self.lines.pop_front().map(|l| Ok(Frame::data(l))))
    }
}

fn lines(n: usize) -> VecDeque<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("token {i}\n")))
        .collect()
}

fn echo(body: HandOver) -> TranslateBody<HandOver> {
    let limits = Limits {
        line: 1024,
        total: None,
    };
    TranslateBody::translate(body, Box::new(Echo), None, limits, None)
}

struct Noop;

impl std::task::Wake for Noop {
    fn wake(self: std::sync::Arc<Self>) {}
}

fn poll_once(body: &mut TranslateBody<HandOver>) -> Poll<Option<Bytes>> {
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    Pin::new(body)
        .poll_frame(&mut cx)
        .map(|f| f.map(|f| f.unwrap().into_data().unwrap()))
}

#[test]
fn tokens_handed_over_one_per_turn_leave_together() {
    let mut body = echo(HandOver {
        lines: lines(200),
        ready: true,
        burst: true,
        polls: 0,
    });
    let (mut frames, mut text) = (0, Vec::new());
    for _ in 0..10_000 {
        match poll_once(&mut body) {
            Poll::Ready(Some(data)) => {
                frames += 1;
                text.extend_from_slice(&data);
            }
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    let want: Vec<u8> = lines(200).iter().flat_map(|l| l.to_vec()).collect();
    assert_eq!(text, want, "every token, in order");
    assert!(frames <= 2, "{frames} frames for 200 tokens");
}

/// Hands over every line at once, as a client whose buffer holds a burst.
struct Buffered(VecDeque<Bytes>);

impl Body for Buffered {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|l| Ok(Frame::data(l))))
    }
}

#[test]
fn a_buffered_whole_answer_passed_through_leaves_in_one_frame() {
    let mut body = TranslateBody::passthrough(Buffered(lines(50)), true);
    let (frames, err) = drain(&mut body);
    assert!(err.is_none());
    let want: Vec<u8> = lines(50).iter().flat_map(|l| l.to_vec()).collect();
    assert_eq!(frames, [Bytes::from(want)]);
}

#[test]
fn the_first_token_of_a_buffered_burst_leaves_alone_and_the_rest_together() {
    let limits = Limits {
        line: 1024,
        total: None,
    };
    let mut body =
        TranslateBody::translate(Buffered(lines(500)), Box::new(Echo), None, limits, None);
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut frames = Vec::new();
    let mut pending = 0;
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(f)) => frames.push(f.unwrap().into_data().unwrap()),
            Poll::Ready(None) => break,
            Poll::Pending => {
                // Once, right after the first frame: the server writes it.
                assert_eq!(frames.len(), 1);
                pending += 1;
            }
        }
    }
    assert_eq!(pending, 1);
    assert_eq!(frames[0], "token 0\n");
    let all: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    let want: Vec<u8> = lines(500).iter().flat_map(|l| l.to_vec()).collect();
    assert_eq!(all, want);
    assert!(frames.len() <= 3, "{} frames", frames.len());
}

#[test]
fn paced_tokens_are_not_held_back() {
    let mut body = echo(HandOver {
        lines: lines(100),
        ready: false,
        burst: false,
        polls: 0,
    });
    let mut frames = 0;
    for i in 0..100 {
        // The next token arrives; until it leaves, the server polls.
        let Inner::Translate { body: inner, .. } = &mut body.inner else {
            unreachable!()
        };
        inner.ready = true;
        let before = inner.polls;
        let mut polls = 0;
        let data = loop {
            polls += 1;
            match poll_once(&mut body) {
                Poll::Ready(Some(data)) => break data,
                Poll::Ready(None) => panic!("ended early"),
                Poll::Pending => assert!(polls <= 1 + GATHER_TURNS as usize),
            }
        };
        assert_eq!(data, format!("token {i}\n"), "each token on its own");
        frames += 1;
        let Inner::Translate { body: inner, .. } = &body.inner else {
            unreachable!()
        };
        assert!(inner.polls - before <= 2 + GATHER_TURNS as usize);
    }
    assert_eq!(frames, 100);
    // Waiting gained nothing, so it is tried less and less: over 100
    // tokens only a handful of rounds waited at all.
    let Inner::Translate { body: inner, .. } = &body.inner else {
        unreachable!()
    };
    assert!(
        inner.polls < 100 * 2 + 8 * GATHER_TURNS as usize,
        "{} polls",
        inner.polls
    );
}

/// Polls until the end: the frames' data, and the error if any.
fn drain<B>(body: &mut TranslateBody<B>) -> (Vec<Bytes>, Option<BoxError>)
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut frames = Vec::new();
    for _ in 0..100_000 {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => frames.push(f.into_data().unwrap()),
            Poll::Ready(Some(Err(e))) => return (frames, Some(e)),
            Poll::Ready(None) => return (frames, None),
            Poll::Pending => {}
        }
    }
    panic!("no end");
}

/// 300 lines handed over in a burst, passed through (coalesced or not):
/// the frames the client gets, and the error if any.
fn pass_burst(coalesce: bool) -> (TranslateBody<HandOver>, Vec<Bytes>, Option<BoxError>) {
    let inner = HandOver {
        lines: lines(300),
        ready: true,
        burst: true,
        polls: 0,
    };
    let mut body = TranslateBody::passthrough(inner, coalesce);
    let (frames, err) = drain(&mut body);
    (body, frames, err)
}

#[test]
fn passed_through_bursts_leave_together_and_unchanged() {
    let (body, frames, err) = pass_burst(true);
    assert!(err.is_none());
    let all: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    let want: Vec<u8> = lines(300).iter().flat_map(|l| l.to_vec()).collect();
    assert_eq!(all, want);
    assert!(frames.len() <= 2, "{} frames for 300 chunks", frames.len());
    assert!(body.is_end_stream());
}

#[test]
fn passed_through_untouched_keeps_the_inner_frames() {
    let (body, frames, err) = pass_burst(false);
    assert!(err.is_none());
    assert_eq!(
        frames,
        Vec::from(lines(300)),
        "one frame per chunk, as it came"
    );
    assert!(!body.is_translated());
}

/// Two chunks, then an error.
struct Breaks(u8);

impl Body for Breaks {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0 += 1;
        Poll::Ready(Some(match self.0 {
            1 => Ok(Frame::data(Bytes::from("a"))),
            2 => Ok(Frame::data(Bytes::from("b"))),
            _ => Err("cut".into()),
        }))
    }
}

#[test]
fn a_passed_through_error_comes_after_the_data_and_a_flush() {
    let mut body = TranslateBody::passthrough(Breaks(0), true);
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut poll = || Pin::new(&mut body).poll_frame(&mut cx);
    match poll() {
        Poll::Ready(Some(Ok(f))) => assert_eq!(f.into_data().unwrap(), "ab"),
        other => panic!("{other:?}"),
    }
    assert!(poll().is_pending(), "a yield, so the data is written first");
    match poll() {
        Poll::Ready(Some(Err(e))) => assert_eq!(e.to_string(), "cut"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn waiting_backs_off_while_it_gains_nothing_and_resumes_when_it_does() {
    let mut g = Gather::default();
    let mut waits = 0;
    for _ in 0..200 {
        while g.wait(10) {
            waits += 1;
        }
        g.sent();
    }
    // 1 + 2 + 4 + … + 64, then every 65 frames: a few rounds waited.
    assert!(waits <= 8 * GATHER_TURNS as usize, "{waits}");
    // A burst: waiting pays off, so the next round waits again at once.
    while g.skip > 0 {
        g.sent();
    }
    assert!(g.wait(10));
    g.arrived();
    g.sent();
    assert!(g.wait(10), "no backoff after a round that gained");
    assert!(!g.wait(GATHER_BYTES), "never past the frame size");
}

#[test]
fn finds_the_first_newline() {
    assert_eq!(find_newline(b""), None);
    assert_eq!(find_newline(b"abc"), None);
    assert_eq!(find_newline(b"\n"), Some(0));
    assert_eq!(find_newline(b"0123456\n89\n"), Some(7));
    assert_eq!(find_newline(b"0123456789abcdef0123\n"), Some(20));
    assert_eq!(find_newline("é\u{10a}\x0b\x09\n".as_bytes()), Some(6));
}

proptest! {
    /// Whatever Ollama sends, split anywhere: no panic, and what is
    /// held never passes the bound; a line over it ends the stream.
    #[test]
    fn upstream_bytes_never_grow_memory_past_the_bound(
        frames in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![1 => Just(b'\n'), 1 => Just(b'{'), 30 => any::<u8>()], 0..200),
            0..40,
        ),
        whole in any::<bool>(),
        collected in any::<bool>(),
    ) {
        const LIMIT: usize = 64;
        let limits = Limits { line: LIMIT, total: collected.then_some(4 * LIMIT) };
        let mut t = translator(whole, limits);
        let mut fed = 0;
        for f in &frames {
            if t.upstream_done {
                break;
            }
            fed += f.len();
            t.feed(Bytes::copy_from_slice(f));
            prop_assert!(t.partial.len() <= LIMIT, "held {} bytes", t.partial.len());
        }
        if !t.upstream_done {
            t.eof();
        }
        let too_much = collected && fed > 4 * LIMIT;
        if !whole && !too_much {
            // Only a line over the limit fails the stream.
            let longest = frames.concat().split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
            prop_assert_eq!(t.error.is_some(), longest > LIMIT);
        }
    }

    #[test]
    fn agrees_with_a_byte_scan(s in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0x0b), Just(0x8a), any::<u8>()], 0..64)) {
        prop_assert_eq!(find_newline(&s), s.iter().position(|&b| b == b'\n'));
    }
}

/// `TranslateBody` is `Sync` over a `Sync` body, whatever the timer's
/// sleeps are (these are not `Sync`), so it boxes as `BoxBody`.
#[tokio::test]
async fn translate_body_is_sync_and_boxes() {
    use http_body_util::BodyExt;
    fn sync<T: Send + Sync>(_: &T) {}
    let unsync_sleep = |d: std::time::Duration| -> crate::Sleep {
        let not_sync = std::cell::Cell::new(0u8);
        Box::pin(async move {
            tokio::time::sleep(d).await;
            not_sync.set(1);
        })
    };
    let timing = crate::timer::Timing {
        timer: Some(std::sync::Arc::new(unsync_sleep)),
        keepalive: Some(std::time::Duration::from_secs(10)),
        idle_timeout: Some(std::time::Duration::from_secs(10)),
        body_timeout: None,
    };
    let line = "hi\n";
    let body = TranslateBody::translate(
        http_body_util::Full::new(bytes::Bytes::from(line)),
        Box::new(Echo),
        timing.deadlines(),
        Limits::line(1024),
        None,
    );
    sync(&body);
    let boxed = http_body_util::combinators::BoxBody::new(body);
    let text = boxed.collect().await.unwrap().to_bytes();
    assert_eq!(text, "hi\n");
}
