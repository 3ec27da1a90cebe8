//! Exponential backoff with jitter for reconnecting to a datastore.

use std::time::Duration;

use crate::SnapshotSender;
use crate::random;

/// Doubles from `min` to `max`; `reset` after a success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            current: min,
        }
    }

    /// The next delay, with up to 20% jitter so that many agents restarted
    /// together do not hammer the store in step.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter_ms = base.as_millis() as u64 / 5;
        base + Duration::from_millis(random::u64() % (jitter_ms + 1))
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }

    /// Sleeps for the next delay unless every receiver of `tx` went away
    /// first: a watch waiting to reconnect must not outlive its agent.
    /// Returns false when the watch should stop.
    pub(crate) async fn pause(&mut self, tx: &SnapshotSender) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.next_delay()) => true,
            _ = tx.closed() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(120));
        for _ in 0..20 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(capped >= Duration::from_secs(5) && capped <= Duration::from_secs(6));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
