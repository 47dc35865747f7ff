//! A [`Timer`] over tokio's clock (feature `tokio`).

use crate::timer::{Sleep, Timer};
use std::time::Instant;

/// tokio's clock and sleeps, for the layer's keep-alives and timeouts (and
/// a [`Pool`](crate::Pool)'s). Reading tokio's clock keeps deadlines exact
/// under `tokio::time::pause()` too.
///
/// ```
/// use ollama_translate::{OllamaTranslateLayer, TokioTimer};
/// use std::time::Duration;
///
/// let layer = OllamaTranslateLayer::new()
///     .timer(TokioTimer)
///     .keepalive(Duration::from_secs(15))
///     .upstream_idle_timeout(Duration::from_secs(300));
/// # let _ = layer;
/// ```
///
/// Its sleeps need a tokio runtime with the time driver.
///
/// See the [crate docs](crate) for more details.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioTimer;

impl Timer for TokioTimer {
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn sleeps_on_the_paused_clock() {
        let start = TokioTimer.now();
        TokioTimer
            .sleep_until(start + Duration::from_secs(60))
            .await;
        assert!(TokioTimer.now() - start >= Duration::from_secs(60));
        // A deadline passed completes at once.
        TokioTimer.sleep_until(start).await;
    }
}
