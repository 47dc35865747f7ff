//! What the services of one layer keep at run time, next to their
//! configuration: [`Shared`]. Every clone of the layer, and every service it
//! builds, shares it; [`Config`](crate::config::Config) is configuration
//! only.

use crate::limits::Budget;
use crate::ollama::model::model_key;
use crate::store::ResponseStore;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Default memory for requests being read and parsed together: 256 MiB.
pub(crate) const DEFAULT_REQUEST_MEMORY: usize = 256 * 1024 * 1024;

/// How long a model Ollama said cannot think gets no `think`.
pub(crate) const CANNOT_THINK_FOR: Duration = Duration::from_secs(15 * 60);

/// The run-time state of a layer's services.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    /// Memory that requests being read and parsed hold together.
    pub(crate) budget: Arc<Budget>,
    /// Models Ollama has shown cannot think.
    pub(crate) no_think: Arc<NoThink>,
    /// Answered Responses responses, for `previous_response_id`.
    pub(crate) responses: Arc<ResponseStore>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            budget: Budget::new(DEFAULT_REQUEST_MEMORY),
            no_think: Arc::default(),
            responses: ResponseStore::new(Default::default()),
        }
    }
}

/// The models Ollama has answered cannot think, each remembered for
/// [`CANNOT_THINK_FOR`] (a model can be pulled again in a version that
/// thinks).
#[derive(Debug, Default)]
pub(crate) struct NoThink(RwLock<HashMap<String, Instant>>);

impl NoThink {
    /// Whether Ollama has answered, within [`CANNOT_THINK_FOR`], that
    /// `model` does not support thinking.
    pub(crate) fn holds(&self, model: &str) -> bool {
        self.0
            .read()
            .ok()
            .and_then(|learned| learned.get(&model_key(model)).copied())
            .is_some_and(|at| at.elapsed() < CANNOT_THINK_FOR)
    }

    /// Remembers that `model` cannot think. Forgets what has expired, so
    /// the map stays as small as the models in use.
    pub(crate) fn learn(&self, model: &str) {
        if let Ok(mut learned) = self.0.write() {
            learned.retain(|_, at| at.elapsed() < CANNOT_THINK_FOR);
            learned.insert(model_key(model), Instant::now());
        }
    }
}
