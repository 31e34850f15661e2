//! The deletion policies as the controller applies them to one object: the policies and
//! namespaces it watches, the hourly count from the statuses it has, and the app's Running
//! instances from SAE when a policy needs them. The rules themselves are pure (`crate::policy`).

use super::slot::Slot;
use super::{Context, Error};
use crate::crd::SaeInstanceDeletion;
use crate::decide::PolicyCheck;
use crate::sae::Credentials;
use crate::steps::PolicyStage;

impl Context {
    /// What the deletion policies say about `obj` sending now. Dry runs never delete and are not
    /// checked.
    pub(super) async fn policy_check(
        &self,
        _slot: &mut Slot,
        _creds: Option<&Credentials>,
        obj: &SaeInstanceDeletion,
        _stage: PolicyStage,
    ) -> Result<PolicyCheck, Error> {
        if obj.pinned().dry_run {
            return Ok(PolicyCheck::Admitted);
        }
        // Not wired yet: no policy is read, so everything is admitted, as before policies.
        Ok(PolicyCheck::Admitted)
    }
}
