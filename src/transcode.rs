//! What the response body and the dialects agree on: [`Transcode`], the
//! body's plug-in point, and [`Usage`], what an answer used.
//!
//! Neutral: the body drives a `Transcode`, the dialects implement it, and
//! the meter reads the `Usage`; none of them imports another for it. It
//! imports only `error` and `ollama`.

use crate::error::{ApiError, BoxError, Failure};
use crate::ollama::{RoundEnd, ServerCall, ServerResult};
use bytes::BytesMut;

/// Turns an upstream response body into the client's, piece by piece: the
/// body's plug-in point. Dialects implement it (usually through
/// [`Decoder`](crate::ollama::Decoder) and an encoder of their own).
pub(crate) trait Transcode: Send + Sync {
    /// One complete line of the upstream body, without its `\n` (or, when
    /// [`Transcode::whole_body`] is true, the whole body at its end).
    fn line(&mut self, line: &[u8], out: &mut BytesMut);
    /// The upstream body ended. An error means the stream ended in a way
    /// that must not look like a clean finish to the client.
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BoxError>;
    /// The upstream body failed (connection dropped, idle timeout); write an
    /// in-band error if the dialect has one.
    fn abort(&mut self, failure: Failure, message: &str, out: &mut BytesMut);
    /// Nothing has been written to the client for the keep-alive period;
    /// write the dialect's keep-alive (an SSE comment, an Anthropic `ping`),
    /// if it has one and the answer is still going. Default: nothing.
    fn idle(&mut self, _out: &mut BytesMut) {}
    /// Whether what [`Transcode::abort`] wrote is a complete answer of its
    /// own (an error document with the status already sent): the body then
    /// ends cleanly after it instead of with an error. Default: false.
    fn abort_completes(&self) -> bool {
        false
    }
    /// Whether to get the whole body at once instead of line by line.
    fn whole_body(&self) -> bool {
        false
    }
    /// Why the stream failed, if it did: an answer collected whole for a
    /// non-streaming client is then replaced by this error (its status and
    /// message in the client's dialect).
    fn failure(&self) -> Option<ApiError> {
        None
    }
    /// What Ollama said the request used, once the answer is complete.
    fn usage(&self) -> Option<Usage<'_>> {
        None
    }
    /// The upstream body ended after a round of the model that called
    /// server tools the layer runs (see [`crate::agent`]): that round.
    /// Default: none (the answer is complete).
    fn take_round(&mut self) -> Option<RoundEnd> {
        None
    }
    /// The layer runs a server tool call of the round.
    fn server_call(&mut self, _call: &ServerCall<'_>, _out: &mut BytesMut) {}
    /// What it gave.
    fn server_result(&mut self, _result: &ServerResult<'_>, _out: &mut BytesMut) {}
    /// The answer ends with the round that called server tools.
    fn end_turn(&mut self, _out: &mut BytesMut) {}
    /// The follow-up's body begins.
    fn next_round(&mut self) {}
}

/// What Ollama said it used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage<'a> {
    pub(crate) input: Option<u64>,
    pub(crate) output: Option<u64>,
    pub(crate) finish_reason: Option<&'a str>,
}
