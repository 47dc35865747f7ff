//! The bounds on what a request may take while it is read: its size, the
//! memory all requests being read and parsed hold together ([`Budget`],
//! [`Hold`]), the time it may take, and its content coding ([`ReadBody`]).
//!
//! Neutral: the layer's futures and the pool both read bodies with it, and
//! it imports only `error` and `timer`.

mod decode;
mod read;

pub(crate) use self::decode::encoding;
pub(crate) use self::read::{reserve_parse, too_large, ReadBody};

use crate::error::ApiError;
use http::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of memory that requests being read and parsed may hold together.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
        })
    }
}

/// A share of the [`Budget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Hold {
    budget: Arc<Budget>,
    held: usize,
}

impl Hold {
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Hold { budget, held: 0 }
    }

    /// Takes `n` more bytes of the budget, or says it is spent (503).
    pub(crate) fn grow(&mut self, n: usize) -> Result<(), ApiError> {
        let limit = self.budget.limit;
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= limit)
            });
        match taken {
            Ok(_) => {
                self.held += n;
                Ok(())
            }
            Err(_) => {
                tracing::warn!(limit, "request memory budget spent; answering 503");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the proxy is reading too many large requests at once; retry shortly",
                )
                .with_code("overloaded"))
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}
