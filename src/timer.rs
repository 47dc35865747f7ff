//! Time, without tying the library to a runtime: the user hands the layer a
//! sleep function (e.g. `tokio::time::sleep`), and the body uses it for
//! keep-alives while the model is silent and for an upstream idle timeout.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A future that completes after a delay.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes [`Sleep`] futures; see [`OllamaTranslateLayer::timer`](crate::OllamaTranslateLayer::timer).
#[derive(Clone)]
pub(crate) struct Timer {
    pub(crate) sleep: Arc<dyn Fn(Duration) -> Sleep + Send + Sync>,
    /// How often to check the stream.
    pub(crate) tick: Duration,
    /// Send a keep-alive after this much silence.
    pub(crate) keepalive: Option<Duration>,
    /// Fail the stream after this much silence from upstream.
    pub(crate) idle_timeout: Option<Duration>,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("tick", &self.tick)
            .field("keepalive", &self.keepalive)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl Timer {
    /// The tick: the shorter of the two periods, at least 10 ms.
    pub(crate) fn recompute_tick(&mut self) {
        let periods = [self.keepalive, self.idle_timeout];
        let min = periods.iter().flatten().min().copied();
        self.tick = min
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(10));
    }
}

/// Per-body clock: counts silence in ticks.
pub(crate) struct Clock {
    timer: Timer,
    sleep: Option<Sleep>,
    silent: Duration,
    since_keepalive: Duration,
    active: bool,
}

/// What a tick means for the stream.
pub(crate) enum Tick {
    Nothing,
    KeepAlive,
    TimedOut(Duration),
}

impl Clock {
    pub(crate) fn new(timer: Timer) -> Self {
        Clock {
            timer,
            sleep: None,
            silent: Duration::ZERO,
            since_keepalive: Duration::ZERO,
            active: false,
        }
    }

    /// Upstream sent something.
    pub(crate) fn activity(&mut self) {
        self.active = true;
    }

    /// Polls the clock; `Ready` at most once per tick.
    pub(crate) fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Tick> {
        use std::task::Poll;
        let tick = self.timer.tick;
        let sleep = self.sleep.get_or_insert_with(|| (self.timer.sleep)(tick));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Re-arm and register the waker for the next tick.
        let mut next = (self.timer.sleep)(tick);
        let _ = next.as_mut().poll(cx);
        self.sleep = Some(next);
        if std::mem::take(&mut self.active) {
            self.silent = Duration::ZERO;
            self.since_keepalive = Duration::ZERO;
            return Poll::Ready(Tick::Nothing);
        }
        self.silent += tick;
        self.since_keepalive += tick;
        if let Some(limit) = self.timer.idle_timeout {
            if self.silent >= limit {
                return Poll::Ready(Tick::TimedOut(self.silent));
            }
        }
        if let Some(every) = self.timer.keepalive {
            if self.since_keepalive >= every {
                self.since_keepalive = Duration::ZERO;
                return Poll::Ready(Tick::KeepAlive);
            }
        }
        Poll::Ready(Tick::Nothing)
    }
}
