//! Time, without tying the library to a runtime.
//!
//! The user hands the layer a [`Timer`] (with tokio, `TokioTimer` of the
//! `tokio` feature; any runtime's sleep as a function also works). Each translated body
//! keeps two deadlines with it: a keep-alive, due when nothing has been
//! written to the client for the keep-alive period, and the upstream idle
//! timeout, due when nothing has arrived from Ollama for that long. One
//! sleep is armed for the earlier of the two and moved only when it fires,
//! so a streamed token costs one clock read, not a timer operation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use sync_wrapper::SyncWrapper;

/// A future that completes after a delay.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A clock and sleeps, as the layer's keep-alives and timeouts need them
/// (modelled on hyper's `rt::Timer`).
///
/// Implement [`Timer::sleep_until`] and [`Timer::now`] over your runtime's
/// clock. With tokio, reading tokio's clock keeps deadlines exact under
/// `tokio::time::pause()` too:
///
/// ```
/// use ollama_translate::{OllamaTranslateLayer, Sleep, Timer};
/// use std::time::{Duration, Instant};
///
/// struct TokioTimer;
///
/// impl Timer for TokioTimer {
///     fn sleep_until(&self, deadline: Instant) -> Sleep {
///         Box::pin(tokio::time::sleep_until(deadline.into()))
///     }
///     fn now(&self) -> Instant {
///         tokio::time::Instant::now().into_std()
///     }
/// }
///
/// let layer = OllamaTranslateLayer::new()
///     .timer(TokioTimer)
///     .keepalive(Duration::from_secs(15));
/// # let _ = layer;
/// ```
///
/// Any `Fn(Duration) -> Sleep` is a `Timer` too; it reads
/// [`std::time::Instant`] as its clock, so it suits real time, not a paused
/// test clock.
///
/// See the [crate docs](crate) for more details.
pub trait Timer: Send + Sync + 'static {
    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> Sleep;

    /// The current time on this timer's clock.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Moves `sleep` to complete at `deadline` instead. The default makes a
    /// new sleep; a runtime that can re-arm in place may do so.
    fn reset(&self, sleep: &mut Sleep, deadline: Instant) {
        *sleep = self.sleep_until(deadline);
    }
}

impl<F> Timer for F
where
    F: Fn(Duration) -> Sleep + Send + Sync + 'static,
{
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self(deadline.saturating_duration_since(Instant::now()))
    }
}

/// The layer's timer and the periods it keeps.
#[derive(Clone, Default)]
pub(crate) struct Timing {
    pub(crate) timer: Option<Arc<dyn Timer>>,
    /// Send a keep-alive after this much silence towards the client.
    pub(crate) keepalive: Option<Duration>,
    /// Fail after this much silence from upstream.
    pub(crate) idle_timeout: Option<Duration>,
    /// The longest a client may take to send a translated request's body.
    pub(crate) body_timeout: Option<Duration>,
}

impl fmt::Debug for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timing")
            .field("timer", &self.timer.is_some())
            .field("keepalive", &self.keepalive)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

impl Timing {
    /// The deadlines set that need a timer when there is none: they do
    /// nothing then, and the layer says so once (see [`Timing::warn_once`]).
    pub(crate) fn idle_without_timer(&self) -> Vec<&'static str> {
        if self.timer.is_some() {
            return Vec::new();
        }
        [
            ("keepalive", self.keepalive),
            ("upstream_idle_timeout", self.idle_timeout),
            ("request_body_timeout", self.body_timeout),
        ]
        .into_iter()
        .filter(|(_, d)| d.is_some_and(|d| !d.is_zero()))
        .map(|(name, _)| name)
        .collect()
    }

    /// Logs once per process, at `warn`, that deadlines are set but there
    /// is no timer to keep them.
    pub(crate) fn warn_once(&self) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let idle = self.idle_without_timer();
        if idle.is_empty() || WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            settings = ?idle,
            "the layer has no timer, so these deadlines do nothing: give it one with \
             OllamaTranslateLayer::timer"
        );
    }

    /// A sleep until the idle timeout, from now: the wait for Ollama's
    /// response headers is bounded by the same silence.
    pub(crate) fn idle_deadline(&self) -> Option<Sleep> {
        let timer = self.timer.as_ref()?;
        let after = self.idle_timeout?;
        Some(timer.sleep_until(timer.now() + after))
    }

    /// A sleep until the request body must have arrived.
    pub(crate) fn body_deadline(&self) -> Option<(Sleep, Duration)> {
        let timer = self.timer.as_ref()?;
        let after = self.body_timeout?;
        Some((timer.sleep_until(timer.now() + after), after))
    }

    /// The pace a body passed through must keep, when there is a body
    /// timeout to keep.
    pub(crate) fn pace(&self) -> Option<Pace> {
        Some(Pace {
            timer: self.timer.clone()?,
            after: self.body_timeout?,
            sleep: SyncWrapper::new(None),
            got: 0,
            late: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A body's deadlines, when there are any to keep.
    pub(crate) fn deadlines(&self) -> Option<Deadlines> {
        let timer = self.timer.clone()?;
        if self.keepalive.is_none() && self.idle_timeout.is_none() {
            return None;
        }
        let now = timer.now();
        Some(Deadlines {
            timer,
            keepalive: self.keepalive,
            idle_timeout: self.idle_timeout,
            last_in: now,
            last_out: now,
            sleep: SyncWrapper::new(None),
        })
    }
}

/// What fell due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing was written to the client for the keep-alive period.
    KeepAlive,
    /// Nothing arrived from upstream for this long.
    IdleTimeout(Duration),
}

/// One body's keep-alive and idle deadlines, kept with one sleep.
pub(crate) struct Deadlines {
    timer: Arc<dyn Timer>,
    keepalive: Option<Duration>,
    idle_timeout: Option<Duration>,
    /// When upstream last sent something.
    last_in: Instant,
    /// When the client was last sent something.
    last_out: Instant,
    /// Armed for `.1`. Only ever touched through `&mut self`, so the body
    /// that holds it is `Sync` whatever the timer's sleeps are.
    sleep: SyncWrapper<Option<(Sleep, Instant)>>,
}

impl Deadlines {
    /// Upstream sent a frame; `progress` says whether it carried anything
    /// but whitespace (blank lines are not progress: they do not put the
    /// idle timeout off), `wrote` whether it produced output.
    pub(crate) fn received(&mut self, progress: bool, wrote: bool) {
        let now = self.timer.now();
        if progress {
            self.last_in = now;
        }
        if wrote {
            self.last_out = now;
        }
    }

    /// A keep-alive was written.
    pub(crate) fn sent(&mut self) {
        self.last_out = self.timer.now();
    }

    fn next(&self) -> Option<Instant> {
        let idle = self.idle_timeout.map(|d| self.last_in + d);
        let keepalive = self.keepalive.map(|d| self.last_out + d);
        match (idle, keepalive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `Ready` when a deadline has passed. The idle timeout wins when both
    /// fall due together.
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<Due> {
        loop {
            let Some(next) = self.next() else {
                return Poll::Pending;
            };
            let sleep = match self.sleep.get_mut() {
                // Activity only pushes deadlines later; a sleep armed for an
                // earlier instant is moved when it fires, not per token.
                Some((sleep, at)) => {
                    if next < *at {
                        self.timer.reset(sleep, next);
                        *at = next;
                    }
                    sleep
                }
                None => {
                    let armed = (self.timer.sleep_until(next), next);
                    &mut self.sleep.get_mut().insert(armed).0
                }
            };
            ready!(sleep.as_mut().poll(cx));
            let now = self.timer.now();
            if let Some(after) = self.idle_timeout {
                if now >= self.last_in + after {
                    *self.sleep.get_mut() = None;
                    return Poll::Ready(Due::IdleTimeout(after));
                }
            }
            if let Some(every) = self.keepalive {
                if now >= self.last_out + every {
                    *self.sleep.get_mut() = None;
                    return Poll::Ready(Due::KeepAlive);
                }
            }
            // Fired for a deadline that activity has since moved: re-arm
            // for the new one on the next turn.
            *self.sleep.get_mut() = None;
        }
    }
}

/// A request body passed through may take any time in all (a model blob
/// of gigabytes), but each [`PACE_BYTES`] of it (or its rest) must arrive
/// within the body timeout of the wait for them starting: a stalled or
/// trickled body fails instead of holding a connection to Ollama.
pub(crate) const PACE_BYTES: usize = 64 * 1024;

/// The pace a client keeps while its body is passed through.
pub(crate) struct Pace {
    timer: Arc<dyn Timer>,
    after: Duration,
    /// Armed when the body first has nothing after the last reset.
    sleep: SyncWrapper<Option<Sleep>>,
    /// Bytes since the last reset.
    got: usize,
    /// Set once the body fell behind: the response is then a 408.
    late: Arc<AtomicBool>,
}

impl Pace {
    /// The flag that says the body fell behind.
    pub(crate) fn late(&self) -> Arc<AtomicBool> {
        self.late.clone()
    }

    /// The body timeout.
    pub(crate) fn after(&self) -> Duration {
        self.after
    }

    /// `n` bytes arrived; the body ended (`n` is then 0, and `end` true).
    pub(crate) fn arrived(&mut self, n: usize, end: bool) {
        self.got = self.got.saturating_add(n);
        if end || self.got >= PACE_BYTES {
            self.got = 0;
            *self.sleep.get_mut() = None;
        }
    }

    /// The body has nothing right now: `Ready` once it has had nothing
    /// new enough for the body timeout (and the flag is set).
    pub(crate) fn poll_late(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (timer, after) = (&self.timer, self.after);
        let sleep = self
            .sleep
            .get_mut()
            .get_or_insert_with(|| timer.sleep_until(timer.now() + after));
        ready!(sleep.as_mut().poll(cx));
        self.late.store(true, Ordering::Release);
        Poll::Ready(())
    }
}

impl fmt::Debug for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pace")
            .field("after", &self.after)
            .field("got", &self.got)
            .finish()
    }
}
