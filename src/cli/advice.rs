//! What a person on call should do about each final or waiting reason: the README's
//! troubleshooting table, in the words the plugin prints after a failure.

use crate::crd::Reason;

/// The advice for `reason`; None for reasons that need nothing from anyone.
pub fn advice(reason: Reason) -> Option<&'static str> {
    Some(match reason {
        Reason::Pending
        | Reason::Submitting
        | Reason::WaitingForChangeOrder
        | Reason::Succeeded
        | Reason::AlreadyDeleted
        | Reason::DryRunSucceeded => return None,
        Reason::Retrying => {
            "nothing: SAE refused for now (see the error code); retries are bounded by retry.maxAttempts"
        }
        Reason::WaitingForApplication => {
            "nothing: objects on one app take turns, oldest first; `kubectl sae get --app APP` shows the line"
        }
        Reason::CredentialsNotFound => {
            "create or fix the Secret (keys accessKeyId and accessKeySecret); the object picks it up by itself"
        }
        Reason::SaeUnreachable => {
            "check the network path from the controller to SAE (DNS, egress, proxy, TLS); nothing was sent"
        }
        Reason::OutcomeUnknown => {
            "the answer was lost and the deadline came first: check the SAE console for a change order deleting \
             these instances in the window the message names, and whether they still exist, before creating a new object"
        }
        Reason::ApplicationNotFound => {
            "SAE does not know this app id in this region: check --app and --region, then create a new object"
        }
        Reason::InvalidParameter => {
            "SAE rejected the instance ids: check them (`kubectl sae delete` with the right ids creates a new object)"
        }
        Reason::AuthenticationFailed => {
            "check the AccessKey pair (Secret or the controller's own) and the controller host's clock"
        }
        Reason::QuotaExceeded => {
            "raise the SAE quota named in the message, then create a new object"
        }
        Reason::RetriesExhausted => {
            "SAE refused every attempt: read the error code, then create a new object to try again"
        }
        Reason::DeadlineExceeded => {
            "not finished within the deadline: the message names the change order, if any; look at it in the SAE console"
        }
        Reason::ChangeOrderFailed => {
            "SAE's change order failed: read SAE's error in the message and the change order in the SAE console"
        }
        Reason::Rejected => "SAE refused for good: read the error code and the message",
        Reason::NotPermitted => {
            "no SaeDeletionPolicy admits this object: ask whoever owns the policies (`kubectl get saepol`)"
        }
        Reason::DisruptionBudget => {
            "a policy's minRunningInstances or maxInstancesPerHour stands in the way: wait, or delete fewer instances"
        }
        Reason::OutsideMaintenanceWindow => {
            "every admitting policy's maintenance window is closed: the object is sent when one opens"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_reason_has_advice() {
        for reason in Reason::ALL {
            let quiet = matches!(
                reason,
                Reason::Pending
                    | Reason::Submitting
                    | Reason::WaitingForChangeOrder
                    | Reason::Succeeded
                    | Reason::AlreadyDeleted
                    | Reason::DryRunSucceeded
            );
            assert_eq!(advice(reason).is_none(), quiet, "{reason}");
        }
    }
}
