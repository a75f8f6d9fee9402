//! Whether this instance should receive traffic: what `/readyz` answers
//! and the `wordcount_ready` gauge shows.
//!
//! Ready once the data source has answered, and staying so while stale
//! data covers a failing source: it never flaps on a refresh. Draining
//! (after SIGTERM) wins over everything. [`Readiness`] is the one writer of
//! the gauge, so the gauge and `/readyz` always agree.

use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadyState {
    /// The source has not answered yet.
    Starting,
    /// The source answered at least once.
    Ready,
    /// The source failed and there is no good data to serve instead.
    Failing(&'static str),
    /// SIGTERM arrived: let the load balancer move on while we drain.
    Draining,
}

pub struct Readiness {
    state: Mutex<ReadyState>,
    metrics: Arc<Metrics>,
}

impl Readiness {
    /// Starting: not ready until the source answers.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Readiness { state: Mutex::new(ReadyState::Starting), metrics }
    }

    fn set(&self, next: impl FnOnce(ReadyState) -> ReadyState) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = next(*state);
        self.metrics.instance.set_ready(*state == ReadyState::Ready);
    }

    pub fn source_answered(&self) {
        self.set(|s| if s == ReadyState::Draining { s } else { ReadyState::Ready });
    }

    /// A failed query with no good data to fall back on. Once ready, an
    /// instance stays ready: it has data to serve, even if stale.
    pub fn source_failed(&self, reason: &'static str) {
        self.set(|s| match s {
            ReadyState::Starting | ReadyState::Failing(_) => ReadyState::Failing(reason),
            other => other,
        });
    }

    pub fn draining(&self) {
        self.set(|_| ReadyState::Draining);
    }

    /// `Ok` when ready, else the reason `/readyz` reports.
    pub fn check(&self) -> Result<(), String> {
        match *self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            ReadyState::Ready => Ok(()),
            ReadyState::Starting => Err("waiting for the first answer from the data source".into()),
            ReadyState::Failing(reason) => Err(format!("data source unavailable ({reason}) and no data cached")),
            ReadyState::Draining => Err("shutting down".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness() -> (Readiness, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new("the", "sample", &[]));
        (Readiness::new(Arc::clone(&metrics)), metrics)
    }

    /// `/readyz`'s answer and the gauge, which must agree.
    fn state(r: &Readiness, metrics: &Metrics) -> Result<(), String> {
        let gauge = metrics.encode(None).lines().any(|l| l == "wordcount_ready 1");
        assert_eq!(gauge, r.check().is_ok(), "the gauge follows /readyz");
        r.check()
    }

    #[test]
    fn readiness_starts_unready() {
        let (r, metrics) = readiness();
        assert!(state(&r, &metrics).unwrap_err().contains("waiting"));
    }

    #[test]
    fn readiness_follows_the_first_answer_and_does_not_flap() {
        let (r, metrics) = readiness();
        r.source_failed("timeout");
        assert!(state(&r, &metrics).unwrap_err().contains("timeout"));
        r.source_answered();
        assert_eq!(state(&r, &metrics), Ok(()));
        r.source_failed("upstream_5xx");
        assert_eq!(state(&r, &metrics), Ok(()), "a failure after data exists keeps the instance ready");
    }

    #[test]
    fn draining_wins_over_everything() {
        let (r, metrics) = readiness();
        r.source_answered();
        r.draining();
        r.source_answered();
        assert_eq!(state(&r, &metrics), Err("shutting down".into()));
    }
}
