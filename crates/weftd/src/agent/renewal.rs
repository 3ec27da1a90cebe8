//! When to renew a lease: `--subnet-lease-renew-margin` before it lapses, as
//! flanneld does, but never later than halfway through what is left, so a
//! short lease (tests, labs) is renewed in time too.

use std::time::{Duration, SystemTime};

/// Delay until the next renewal; `None` for a reservation, which never
/// expires.
pub fn renew_delay(
    now: SystemTime,
    expiration: Option<SystemTime>,
    margin: Duration,
) -> Option<Duration> {
    let remaining = expiration?.duration_since(now).unwrap_or(Duration::ZERO);
    Some(remaining - margin.min(remaining / 2))
}

/// Delay before retrying a failed renewal: flanneld's minute, shortened so
/// that a short lease gets several attempts before it lapses; once it has
/// lapsed by our clock (the store may still hold it: etcd refreshes leases
/// when it restarts), every 5 s until the store answers.
pub fn retry_delay(now: SystemTime, expiration: Option<SystemTime>) -> Duration {
    let remaining = match expiration {
        None => Duration::from_secs(240),
        Some(e) => match e.duration_since(now) {
            Ok(r) if !r.is_zero() => r,
            _ => return Duration::from_secs(5),
        },
    };
    (remaining / 4).clamp(Duration::from_millis(500), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn renews_a_margin_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + HOUR;
        let exp = now + 24 * HOUR;
        assert_eq!(renew_delay(now, Some(exp), HOUR), Some(23 * HOUR));
    }

    #[test]
    fn a_short_lease_is_renewed_halfway() {
        let now = SystemTime::UNIX_EPOCH + HOUR;
        let exp = now + Duration::from_secs(10);
        assert_eq!(
            renew_delay(now, Some(exp), HOUR),
            Some(Duration::from_secs(5))
        );
        assert_eq!(renew_delay(now, Some(now), HOUR), Some(Duration::ZERO));
    }

    #[test]
    fn reservations_are_never_renewed() {
        assert_eq!(renew_delay(SystemTime::UNIX_EPOCH, None, HOUR), None);
    }

    #[test]
    fn retries_are_bounded() {
        let now = SystemTime::UNIX_EPOCH + HOUR;
        assert_eq!(
            retry_delay(now, Some(now + 24 * HOUR)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retry_delay(now, Some(now + Duration::from_secs(8))),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(now, Some(now + Duration::from_secs(1))),
            Duration::from_millis(500)
        );
        assert_eq!(
            retry_delay(now, Some(now)),
            Duration::from_secs(5),
            "lapsed: steady retries"
        );
    }
}
