//! SAE's error codes: which are retried, refused or failed, and the code table against the CRD's reasons.

use super::*;

// ---- SAE's error codes: retried, refused, failed ---------------------------------------------

#[test]
fn every_terminal_code_maps_to_its_reason() {
    let table = [
        ("InvalidApplication.NotFound", "ApplicationNotFound"),
        ("InvalidAppId.NotFound", "ApplicationNotFound"),
        ("InvalidParameter.NotEmpty", "InvalidParameter"),
        ("InvalidParameter.Obviously", "InvalidParameter"),
        ("InvalidParameter.WithMessage", "InvalidParameter"),
        ("NoComputeResourceQuota.Exceed", "QuotaExceeded"),
        ("NoComputeResourceQuota.App.Exceed", "QuotaExceeded"),
        ("NoComputeResourceQuota.User.Exceed", "QuotaExceeded"),
        ("SignatureDoesNotMatch", "AuthenticationFailed"),
        ("InvalidAccessKeyId.NotFound", "AuthenticationFailed"),
        ("InvalidAccessKeyId.Inactive", "AuthenticationFailed"),
        ("InvalidTimeStamp.Expired", "AuthenticationFailed"),
        ("SignatureNonceUsed", "AuthenticationFailed"),
        ("Application.NotDeployYet", "Rejected"),
        ("user.indebt", "Rejected"),
        ("InvalidParameterX", "Rejected"),
        ("SomethingNew.Undocumented", "Rejected"),
    ];
    for (code, reason) in table {
        let mut d = decide(&submitting(), &inputs_at(11), refused(code));
        if let Action::CheckGone { rejection } = d.action {
            // InvalidParameter first asks whether the instances are gone; here they all exist.
            assert_eq!(reason, "InvalidParameter", "{code}");
            let existing = Ok(ids(&["i-1", "i-2"]));
            let observation = Observation::GoneCheck {
                rejection,
                existing,
            };
            d = decide(&submitting(), &inputs_at(11), observation);
        }
        assert_eq!(d.status.phase, Some(Phase::Failed), "{code}");
        assert_eq!(d.status.reason(), Some(reason), "{code}");
        assert_eq!(d.status.error_code.as_deref(), Some(code));
        assert_eq!(d.status.request_id.as_deref(), Some("req-err"));
        assert_eq!(d.action, Action::Done);
        let event = &d.events[0];
        assert!(
            event.warning && event.note.contains(code) && event.note.contains("req-err"),
            "{event:?}"
        );
    }
}

#[test]
fn authentication_failures_say_what_to_check() {
    let d = decide(
        &submitting(),
        &inputs_at(11),
        refused("InvalidAccessKeyId.NotFound"),
    );
    assert!(
        d.status
            .message
            .unwrap()
            .contains("check the AccessKey in Secret ns/sae-creds")
    );

    let own = submitting_with(SaeInstanceDeletionSpec {
        credentials_ref: None,
        ..spec()
    });
    let d = decide(&own, &inputs_at(11), refused("SignatureDoesNotMatch"));
    assert!(
        d.status
            .message
            .unwrap()
            .contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
    );

    let d = decide(
        &submitting(),
        &inputs_at(11),
        refused("InvalidTimeStamp.Expired"),
    );
    assert!(d.status.message.unwrap().contains("clock"));
}

#[test]
fn retrying_counts_attempts_until_exhausted() {
    let mut obj = object_with(
        SaeInstanceDeletionSpec {
            retry: RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            },
            ..spec()
        },
        None,
    );
    let mut now = 10;
    let mut sent = vec![];
    loop {
        let d = decide(&obj, &inputs_at(now), start());
        match &d.action {
            Action::SendDelete { instance_ids } => sent.push(instance_ids.clone()),
            Action::WaitUntil(t) => {
                now = t.as_second() - at(0).as_second();
                continue;
            }
            other => panic!("unexpected {other:?}"),
        }
        obj = apply(&obj, &d);
        let d = decide(
            &obj,
            &inputs_at(now),
            refused("Application.ChangerOrderRunning"),
        );
        obj = apply(&obj, &d);
        if d.action == Action::Done {
            break;
        }
    }
    assert_eq!(sent.len(), 3, "maxAttempts counts every send");
    assert!(sent.iter().all(|s| s == &ids(&["i-1", "i-2"])));
    assert_eq!(status(&obj).reason(), Some("RetriesExhausted"));
    assert_eq!(status(&obj).attempts, Some(3));
    assert_eq!(status(&obj).next_attempt_time, None);
}

#[test]
fn retry_after_from_sae_is_honoured_but_capped_by_the_deadline() {
    let mut err = api_error("Throttling.User", 400);
    if let SaeError::Api { retry_after, .. } = &mut err {
        *retry_after = Some(Duration::from_secs(60));
    }
    let d = decide(
        &submitting(),
        &inputs_at(11),
        Observation::DeleteResult(Err(err.clone())),
    );
    assert_eq!(d.status.next_attempt_time, Some(Time(at(71))));
    assert_eq!(d.action, Action::WaitUntil(at(71)));

    // Near the deadline the wait ends at the deadline, where the object fails.
    let late = step(&fresh(), 3580, start());
    let d = decide(&late, &inputs_at(3581), Observation::DeleteResult(Err(err)));
    assert_eq!(d.status.next_attempt_time, Some(Time(at(3641))));
    assert_eq!(d.action, Action::WaitUntil(at(3600)));
    let d = decide(&apply(&late, &d), &inputs_at(3600), start());
    assert_eq!(d.status.reason(), Some("DeadlineExceeded"));
}

// ---- SAE's code table and the CRD's reasons ----------------------------------------------------

#[test]
fn every_refusal_of_the_code_table_is_a_reason_of_the_same_name() {
    use crate::sae::codes::{CODES, UNLISTED};
    for info in CODES.iter().chain([&UNLISTED]) {
        let reason = Reason::from(info.refusal);
        assert_eq!(reason.as_str(), format!("{:?}", info.refusal));
        assert!(Reason::ALL.contains(&reason));
    }
}
