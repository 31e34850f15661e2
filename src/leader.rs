//! Leader election as it guards a send: [`LeaderFence`] confirms, right before each
//! DeleteInstances, that this replica still holds the Lease for longer than the request can take
//! to leave ([`SEND_BOUND`]), and [`lease_grace`] says how early the leader must renew so that the
//! fence can always say yes.
//!
//! Reads the Lease only; taking and renewing it is the binary's (`src/bin/sae-controller.rs`).
//! Knows nothing of the objects or of SAE.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tracing::warn;

use crate::decide::SEND_BOUND;

/// Confirms, right before each DeleteInstances, that this replica still holds the leader Lease:
/// the lease manager's own view, and a fresh read of the Lease from the API server (holder is us
/// and the lease stays unexpired for at least [`SEND_BOUND`]). A replica that cannot confirm
/// sends nothing.
pub struct LeaderFence {
    pub leading: tokio::sync::watch::Receiver<bool>,
    pub leases: Api<Lease>,
    pub lease_name: String,
    pub identity: String,
}

impl LeaderFence {
    pub async fn confirm(&self) -> bool {
        if !*self.leading.borrow() {
            return false;
        }
        let lease = match self.leases.get(&self.lease_name).await {
            Ok(lease) => lease,
            Err(err) => {
                warn!(error = %err, "cannot read the leader Lease; not sending");
                return false;
            }
        };
        let Some(spec) = lease.spec else { return false };
        let holder_is_us = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expires = spec.renew_time.map(|t| t.0).and_then(|renewed| {
            renewed
                .checked_add(SignedDuration::from_secs(i64::from(
                    spec.lease_duration_seconds.unwrap_or(0),
                )))
                .ok()
        });
        // Unexpired for longer than the request can take to leave: a replica that cannot renew
        // stops sending before any other can take the lease over (it never relies on the lease
        // manager noticing first).
        let needed = Timestamp::now().checked_add(SEND_BOUND).ok();
        holder_is_us && expires.zip(needed).is_some_and(|(e, n)| e > n)
    }
}

/// How long before its Lease expires the leader renews it: early enough that the Lease is always
/// valid for longer than a send may take to leave (the fence refuses to send otherwise), with a
/// few seconds for the renewal itself. Leases too short for that are refused at start.
pub fn lease_grace(lease_seconds: u64) -> anyhow::Result<u64> {
    let needed = SEND_BOUND.as_secs().unsigned_abs() + 5;
    let grace = (lease_seconds / 3 + 1).max(needed);
    if lease_seconds < grace + 5 {
        anyhow::bail!(
            "--leader-election-lease-seconds {lease_seconds} is too short: the leader must renew \
             {grace} s before expiry so that every send is fenced by a valid lease, which needs a \
             lease of at least {} s",
            grace + 5
        );
    }
    Ok(grace)
}

#[cfg(test)]
mod tests {
    use super::lease_grace;

    #[test]
    fn a_lease_always_outlasts_a_send_between_renewals() {
        // Renewed 10 s before expiry (SEND_BOUND 5 s plus 5 s for the renewal itself)...
        assert_eq!(lease_grace(15).unwrap(), 10);
        // ...or a third of the lease when that is more.
        assert_eq!(lease_grace(60).unwrap(), 21);
        for too_short in [2, 4, 12, 14] {
            let err = lease_grace(too_short).unwrap_err().to_string();
            assert!(err.contains("at least 15 s"), "{err}");
        }
    }
}
