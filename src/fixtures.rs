//! Builders shared by the unit tests of several modules (compiled for tests only): one
//! `SaeInstanceDeletion` spec and object, so that a test says only how its object differs.
//!
//! Uses the API types of [`crate::crd`] and nothing else of the crate, so any module's tests may
//! use it without a cycle.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{CredentialsRef, RetryPolicy, SaeInstanceDeletion, SaeInstanceDeletionSpec};

/// The instant the tests' objects are created at unless they need the real clock:
/// 2026-01-01T00:00:00Z.
pub(crate) fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("a valid timestamp")
}

/// The spec the tests start from: app `app-1` in cn-hangzhou, instances `i-1` and `i-2`, the
/// AccessKey from Secret `sae-creds`, and every other field at its default (retry policy, a
/// deadline of 3600 s, waiting for the change order, no dry run).
pub(crate) fn spec() -> SaeInstanceDeletionSpec {
    SaeInstanceDeletionSpec {
        region_id: "cn-hangzhou".into(),
        app_id: "app-1".into(),
        instance_ids: vec!["i-1".into(), "i-2".into()],
        credentials_ref: Some(CredentialsRef {
            name: "sae-creds".into(),
        }),
        retry: RetryPolicy::default(),
        active_deadline_seconds: 3600,
        wait_for_completion: true,
        dry_run: false,
    }
}

/// An object `namespace/name` with [`spec`], created at `created`, with no status (and no uid,
/// resourceVersion or generation: tests that need them set them).
pub(crate) fn object(name: &str, namespace: &str, created: Timestamp) -> SaeInstanceDeletion {
    object_with(name, namespace, created, spec())
}

/// Like [`object`], with the given spec.
pub(crate) fn object_with(
    name: &str,
    namespace: &str,
    created: Timestamp,
    spec: SaeInstanceDeletionSpec,
) -> SaeInstanceDeletion {
    let mut obj = SaeInstanceDeletion::new(name, spec);
    obj.metadata.namespace = Some(namespace.into());
    obj.metadata.creation_timestamp = Some(Time(created));
    obj
}
