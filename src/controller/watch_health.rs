//! Whether the watch on `SaeInstanceDeletion` objects is making progress, for `/healthz`.
//!
//! Plain state fed by the watch stream in [`super::run`]; no API calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether the watch on SaeInstanceDeletion objects is making progress, for `/healthz`: it is
/// unhealthy once its errors have gone on, without a single success, for longer than `tolerance`.
/// An idle watch (no events at all) is healthy.
#[derive(Clone)]
pub struct WatchHealth {
    failing_since: Arc<std::sync::Mutex<Option<Instant>>>,
    tolerance: Duration,
}

impl WatchHealth {
    pub fn new(tolerance: Duration) -> Self {
        Self {
            failing_since: Arc::default(),
            tolerance,
        }
    }

    pub(super) fn note_event(&self, ok: bool) {
        let mut since = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        match (ok, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    pub fn healthy(&self) -> bool {
        let since = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        since.is_none_or(|t| t.elapsed() < self.tolerance)
    }
}
