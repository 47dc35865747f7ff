//! [`CollectAnswer`]: a non-streaming client's answer, read whole before
//! its status is chosen.

use crate::body::TranslateBody;
use crate::error::{error_chain, ApiError, BoxError, Failure};
use bytes::{Bytes, BytesMut};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pin_project! {
    /// Reads a translated body to its end. Ollama streams the answer, so
    /// the idle timeout bounds the silence between tokens, and a failure
    /// half-way still gets a proper status: the dialect's own error (500
    /// for an error line, 502 for a drop or garbage, 504 for a stall).
    pub(crate) struct CollectAnswer<B> {
        #[pin]
        body: TranslateBody<B>,
        collected: BytesMut,
        limit: usize,
    }
}

impl<B> CollectAnswer<B> {
    pub(crate) fn new(body: TranslateBody<B>, limit: usize) -> Self {
        CollectAnswer {
            body,
            collected: BytesMut::new(),
            limit,
        }
    }
}

impl<B> Future for CollectAnswer<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let failed = loop {
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if this.collected.len() + data.len() > *this.limit {
                            let failure = Failure::UpstreamGarbage;
                            let message = format!(
                                "Ollama's answer is larger than the limit of {} bytes",
                                this.limit
                            );
                            tracing::warn!(limit = *this.limit, "an answer too large to collect");
                            let err =
                                ApiError::new(failure.status(), message).with_code(failure.code());
                            return Poll::Ready(Err(err));
                        }
                        this.collected.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => break Some(e),
                None => break None,
            }
        };
        let failure = this.body.as_ref().get_ref().failure().or_else(|| {
            failed.map(|e| ApiError::new(Failure::UpstreamLost.status(), error_chain(&*e)))
        });
        Poll::Ready(match failure {
            Some(err) => {
                tracing::warn!(status = err.status.as_u16(), error = %err.message, "Ollama failed while answering");
                Err(err)
            }
            None => Ok(std::mem::take(this.collected).freeze()),
        })
    }
}
