//! Builders shared by the unit tests of several modules (compiled for tests only): one
//! `SaeInstanceDeletion` spec and object, so that a test says only how its object differs, and a
//! clock moved by hand for the credential providers' caching tests.
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

/// A clock a test moves by hand, for credential providers (and fakes of their services) that
/// take their time from a closure: the test sets the time, every reader sees it at once.
#[derive(Clone)]
pub(crate) struct HandClock(std::sync::Arc<std::sync::Mutex<Timestamp>>);

impl HandClock {
    pub(crate) fn starting_at(start: Timestamp) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(start)))
    }

    pub(crate) fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }

    pub(crate) fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap() = t;
    }

    /// The closure a provider's `with_clock` takes, reading this clock.
    pub(crate) fn reader(&self) -> impl Fn() -> Timestamp + Send + Sync + 'static {
        let clock = self.clone();
        move || clock.now()
    }
}
