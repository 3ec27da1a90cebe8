//! What `/healthz` and `/readyz` answer, as pure functions of the agent's
//! state and the time, so that every case is tested without a clock.
//!
//! - `/healthz` (liveness: "restart me if this fails") asks whether the
//!   reconcile loop still turns. The loop wakes at least every resync
//!   period; three periods without it finishing a pass means it is stuck
//!   (a hung kernel call, a deadlock), which a restart fixes. A pass the
//!   kernel partly refused still finished: the log, `/metrics` and
//!   `weft status` report that, and a restart would not fix it. Before the
//!   loop starts (no lease yet: the store is unreachable, the podCIDR not
//!   assigned) there is nothing to judge, and restarting would only delay
//!   the lease, so the answer is healthy.
//! - `/readyz` (readiness) asks whether this node can serve pods right
//!   now: a lease held, not past its expiration, and the dataplane
//!   programmed for that lease's subnets (subnet.env written). A lease the
//!   agent could not renew in time (the store unreachable past its
//!   expiration) may be given to another node, so the node is not ready
//!   until it is renewed or taken again.

use std::time::{Duration, Instant, SystemTime};

use weft_core::lease::LeaseSubnets;

/// How many resync periods without a finished pass make the agent
/// unhealthy.
pub const STALL_PERIODS: u32 = 3;

/// The lease as readiness sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLease {
    pub subnets: LeaseSubnets,
    /// `None` for a reservation, which never expires.
    pub expiration: Option<SystemTime>,
}

/// `/healthz`: `Err` with a one-line reason when the reconcile loop has not
/// finished a pass for [`STALL_PERIODS`] resync periods.
pub fn liveness(last_pass: Option<Instant>, resync: Duration, now: Instant) -> Result<(), String> {
    let Some(last) = last_pass else {
        return Ok(());
    };
    let limit = resync * STALL_PERIODS;
    let since = now.saturating_duration_since(last);
    if since > limit {
        return Err(format!(
            "the reconcile loop has not finished a pass for {}s (limit {}s: {STALL_PERIODS} \
             resync periods)",
            since.as_secs(),
            limit.as_secs()
        ));
    }
    Ok(())
}

/// `/readyz`: `Err` with a one-line reason unless a live lease is held and
/// the dataplane is programmed for it.
pub fn readiness(
    lease: Option<&HeldLease>,
    programmed: Option<&LeaseSubnets>,
    now: SystemTime,
) -> Result<(), String> {
    let Some(lease) = lease else {
        return Err("no lease yet".to_owned());
    };
    if let Some(expiration) = lease.expiration
        && expiration <= now
    {
        let ago = now.duration_since(expiration).unwrap_or_default().as_secs();
        return Err(format!(
            "the lease for {} expired {ago}s ago without being renewed (is the store reachable?)",
            lease.subnets
        ));
    }
    match programmed {
        Some(p) if *p == lease.subnets => Ok(()),
        Some(p) => Err(format!(
            "the dataplane is programmed for {p}, not yet for the lease's {}",
            lease.subnets
        )),
        None => Err(format!(
            "the lease for {} is held; subnet.env and the dataplane are not programmed yet",
            lease.subnets
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(10);

    fn subnets(s: &str) -> LeaseSubnets {
        LeaseSubnets {
            v4: Some(s.parse().unwrap()),
            v6: None,
        }
    }

    #[test]
    fn healthy_before_the_loop_starts_and_while_it_turns() {
        let now = Instant::now();
        assert_eq!(liveness(None, RESYNC, now), Ok(()));
        let t0 = now;
        assert_eq!(liveness(Some(t0), RESYNC, t0), Ok(()));
        assert_eq!(liveness(Some(t0), RESYNC, t0 + RESYNC * 3), Ok(()));
    }

    #[test]
    fn unhealthy_after_three_resync_periods_without_a_pass() {
        let t0 = Instant::now();
        let err = liveness(Some(t0), RESYNC, t0 + Duration::from_secs(31)).unwrap_err();
        assert_eq!(
            err,
            "the reconcile loop has not finished a pass for 31s (limit 30s: 3 resync periods)"
        );
        assert!(!err.contains('\n'));
        // A pass later, healthy again.
        let t1 = t0 + Duration::from_secs(40);
        assert_eq!(liveness(Some(t1), RESYNC, t1), Ok(()));
    }

    #[test]
    fn not_ready_without_a_lease_or_before_programming() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(readiness(None, None, now), Err("no lease yet".into()));
        let lease = HeldLease {
            subnets: subnets("10.244.3.0/24"),
            expiration: Some(now + Duration::from_secs(60)),
        };
        assert!(readiness(Some(&lease), None, now).is_err());
        assert_eq!(readiness(Some(&lease), Some(&lease.subnets), now), Ok(()));
    }

    #[test]
    fn not_ready_while_the_lease_is_expired_unrenewed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut lease = HeldLease {
            subnets: subnets("10.244.3.0/24"),
            expiration: Some(now - Duration::from_secs(5)),
        };
        let err = readiness(Some(&lease), Some(&lease.subnets), now).unwrap_err();
        assert_eq!(
            err,
            "the lease for 10.244.3.0/24 expired 5s ago without being renewed (is the store \
             reachable?)"
        );
        // Exactly at expiration it is gone already.
        lease.expiration = Some(now);
        assert!(readiness(Some(&lease), Some(&lease.subnets), now).is_err());
        // Renewed: ready again.
        lease.expiration = Some(now + Duration::from_secs(20));
        assert_eq!(readiness(Some(&lease), Some(&lease.subnets), now), Ok(()));
    }

    #[test]
    fn a_reservation_never_expires() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX as u64);
        let lease = HeldLease {
            subnets: subnets("10.244.3.0/24"),
            expiration: None,
        };
        assert_eq!(readiness(Some(&lease), Some(&lease.subnets), now), Ok(()));
    }

    #[test]
    fn a_new_subnet_is_not_ready_until_programmed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let lease = HeldLease {
            subnets: subnets("10.244.9.0/24"),
            expiration: Some(now + Duration::from_secs(60)),
        };
        let err = readiness(Some(&lease), Some(&subnets("10.244.3.0/24")), now).unwrap_err();
        assert!(err.contains("programmed for 10.244.3.0/24"), "{err}");
    }
}
