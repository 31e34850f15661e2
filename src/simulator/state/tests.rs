use serde_json::json;

use super::nonces::{NONCE_CAPACITY, NonceCache};
use super::*;
use crate::sae::Credentials;
use crate::sae::sign::{self, SignInput, SignatureVersion};
use crate::simulator::auth::{self, Authorization, ReceivedRequest};
use crate::simulator::change_order::{ChangeOrderSource, ConsoleChangeOrderSpec};
use crate::simulator::routing::Operation;
use crate::simulator::seed::{AppFaults, AppSpec, FaultSpec, GroupSpec};

fn t0() -> Timestamp {
    "2024-05-01T10:00:00Z".parse().unwrap()
}

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

fn q(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn model() -> Model {
    let mut m = Model::new(ModelConfig::default());
    m.upsert_app(
        AppSpec {
            app_id: "app-1".into(),
            groups: vec![GroupSpec {
                group_id: "g-1".into(),
                group_name: None,
                instance_ids: vec!["i-a".into(), "i-b".into(), "i-c".into()],
            }],
        },
        t0(),
    )
    .unwrap();
    m
}

fn delete(m: &mut Model, ids: &str, now: Timestamp) -> Outcome {
    m.execute(
        Operation::DeleteInstances,
        &q(&[("AppId", "app-1"), ("InstanceIds", ids)]),
        now,
    )
}

fn status(m: &mut Model, co: &str, now: Timestamp) -> i64 {
    let data = m
        .execute(
            Operation::DescribeChangeOrder,
            &q(&[("ChangeOrderId", co)]),
            now,
        )
        .unwrap()
        .data;
    data["Status"].as_i64().unwrap()
}

fn instances(m: &mut Model, now: Timestamp) -> Vec<String> {
    let data = m
        .execute(
            Operation::DescribeApplicationInstances,
            &q(&[("AppId", "app-1"), ("GroupId", "g-1")]),
            now,
        )
        .unwrap()
        .data;
    data["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_string())
        .collect()
}

fn faults(m: &mut Model, json: Value) {
    let faults: Vec<FaultSpec> = serde_json::from_value(json).unwrap();
    m.add_faults(
        AppFaults {
            app_id: "app-1".into(),
            faults,
        },
        t0(),
    )
    .unwrap();
}

#[test]
fn change_order_runs_then_succeeds_and_removes_instances() {
    let mut m = model();
    let co = delete(&mut m, "i-a,i-b", t0()).unwrap().committed.unwrap();
    assert_eq!(status(&mut m, &co, t0() + secs(1)), 1);
    assert_eq!(instances(&mut m, t0() + secs(1)), ["i-a", "i-b", "i-c"]);
    assert_eq!(status(&mut m, &co, t0() + secs(2)), 2);
    assert_eq!(instances(&mut m, t0() + secs(2)), ["i-c"]);
    let ledger = m.ledger(t0() + secs(3));
    assert_eq!(ledger.deletions.len(), 1);
    assert_eq!(ledger.deletions[0].final_status, Some(2));
    assert_eq!(ledger.deletions[0].instance_ids, ["i-a", "i-b"]);
}

#[test]
fn one_change_order_per_app() {
    let mut m = model();
    delete(&mut m, "i-a", t0()).unwrap();
    let err = delete(&mut m, "i-b", t0() + secs(1)).unwrap_err();
    assert_eq!(err.code, "Application.ChangerOrderRunning");
    assert_eq!(err.http_status, 400);
    assert!(delete(&mut m, "i-b", t0() + secs(2)).is_ok());
}

#[test]
fn deletion_validates_params_app_and_instances() {
    let mut m = model();
    let err = m
        .execute(Operation::DeleteInstances, &q(&[("AppId", "app-1")]), t0())
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameter.NotEmpty");
    let err = m.execute(
        Operation::DeleteInstances,
        &q(&[("AppId", "nope"), ("InstanceIds", "i-a")]),
        t0(),
    );
    assert_eq!(err.unwrap_err().code, "InvalidApplication.NotFound");
    let err = delete(&mut m, "i-a,i-zzz", t0()).unwrap_err();
    assert_eq!(err.code, "InvalidParameter.WithMessage");
    assert!(err.message.contains("i-zzz"), "{}", err.message);
    assert_eq!(
        delete(&mut m, " , ", t0()).unwrap_err().code,
        "InvalidParameter.NotEmpty"
    );
    let err = m
        .execute(Operation::ListChangeOrders, &q(&[("AppId", "nope")]), t0())
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.http_status),
        ("InvalidAppId.NotFound", 404)
    );
    let err = m
        .execute(
            Operation::DescribeChangeOrder,
            &q(&[("ChangeOrderId", "x")]),
            t0(),
        )
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameter.WithMessage");
    assert!(m.ledger(t0()).deletions.is_empty());
}

#[test]
fn list_change_orders_is_newest_first_and_paged() {
    let mut m = model();
    let first = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
    let second = delete(&mut m, "i-b", t0() + secs(5))
        .unwrap()
        .committed
        .unwrap();
    let list = |m: &mut Model, extra: &[(&str, &str)]| {
        let mut query = q(&[("AppId", "app-1")]);
        query.extend(q(extra));
        m.execute(Operation::ListChangeOrders, &query, t0() + secs(6))
            .unwrap()
            .data
    };
    let data = list(&mut m, &[]);
    assert_eq!(data["TotalSize"], 2);
    assert_eq!(data["ChangeOrderList"][0]["ChangeOrderId"], second.as_str());
    assert_eq!(data["ChangeOrderList"][0]["Status"], 1);
    assert_eq!(data["ChangeOrderList"][1]["ChangeOrderId"], first.as_str());
    assert_eq!(data["ChangeOrderList"][1]["Status"], 2);
    assert_eq!(
        data["ChangeOrderList"][1]["CreateTime"],
        "2024-05-01 18:00:00"
    );
    let page2 = list(&mut m, &[("CurrentPage", "2"), ("PageSize", "1")]);
    assert_eq!(page2["ChangeOrderList"][0]["ChangeOrderId"], first.as_str());
    assert_eq!(
        list(&mut m, &[("CoType", "CoDeploy")])["ChangeOrderList"],
        json!([])
    );
    let err = m.execute(
        Operation::ListChangeOrders,
        &q(&[("AppId", "app-1"), ("PageSize", "x")]),
        t0(),
    );
    assert_eq!(err.unwrap_err().code, "InvalidParameter.WithMessage");
}

#[test]
fn a_throttled_key_is_refused_whatever_its_quota_until_switched_off_or_reset() {
    let mut m = model();
    m.config_mut().requests_per_minute = 0;
    m.set_throttle("ak", Some(Some(1000)));
    let err = m.admit("ak", t0()).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.retry_after_millis, err.gateway),
        ("Throttling.User", Some(1000), true)
    );
    m.admit("other", t0()).unwrap();
    m.set_throttle("ak", Some(None));
    assert_eq!(m.admit("ak", t0()).unwrap_err().retry_after_millis, None);
    assert_eq!(m.throttled_access_key_ids(), ["ak"]);
    m.set_throttle("ak", None);
    m.admit("ak", t0()).unwrap();
    m.set_throttle("ak", Some(None));
    m.reset();
    m.admit("ak", t0()).unwrap();
}

#[test]
fn quota_slides_and_tells_when_a_slot_frees() {
    let mut m = model();
    m.config_mut().requests_per_minute = 2;
    m.admit("ak", t0()).unwrap();
    m.admit("ak", t0() + secs(10)).unwrap();
    let err = m.admit("ak", t0() + secs(20)).unwrap_err();
    assert_eq!(err.code, "Throttling.User");
    assert_eq!(err.retry_after_millis, Some(40_000), "milliseconds");
    m.admit("other", t0() + secs(20)).unwrap();
    // A key of its own quota: "noisy" gets one call a minute, "free" none at all.
    m.config_mut()
        .key_requests_per_minute
        .extend([("noisy".to_string(), 1), ("free".to_string(), 0)]);
    m.admit("noisy", t0() + secs(20)).unwrap();
    assert!(m.admit("noisy", t0() + secs(21)).is_err());
    for _ in 0..10 {
        m.admit("free", t0() + secs(21)).unwrap();
    }
    // The throttled call did not count: one slot frees at t0+60.
    m.admit("ak", t0() + secs(60)).unwrap();
    assert!(m.admit("ak", t0() + secs(61)).is_err());
    m.config_mut().requests_per_minute = 0;
    for _ in 0..1000 {
        m.admit("ak", t0() + secs(61)).unwrap();
    }
}

#[test]
fn nonces_are_refused_within_the_window_and_bounded() {
    let mut cache = NonceCache::default();
    let w = SignedDuration::from_mins(15);
    assert!(cache.check_and_remember("n1".into(), t0(), w));
    assert!(!cache.check_and_remember("n1".into(), t0() + secs(899), w));
    assert!(cache.check_and_remember("n1".into(), t0() + secs(2000), w));
    for i in 0..NONCE_CAPACITY + 10 {
        cache.check_and_remember(format!("x{i}"), t0() + secs(2000), w);
    }
    assert!(cache.order.len() <= NONCE_CAPACITY && cache.seen.len() == cache.order.len());
}

#[test]
fn error_faults_fire_n_times_on_their_operation_only() {
    let mut m = model();
    faults(
        &mut m,
        json!([{"kind": "error", "code": "Application.ChangerOrderRunning", "times": 2}]),
    );
    let groups = q(&[("AppId", "app-1")]);
    assert!(matches!(
        m.call(Operation::DescribeApplicationGroups, &groups, t0()),
        CallPlan::Answer {
            outcome: Ok(_),
            fault: None
        }
    ));
    let call = q(&[("AppId", "app-1"), ("InstanceIds", "i-a")]);
    for _ in 0..2 {
        match m.call(Operation::DeleteInstances, &call, t0()) {
            CallPlan::Answer {
                outcome: Err(e),
                fault: Some("error"),
            } => {
                assert_eq!(e.code, "Application.ChangerOrderRunning")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        m.call(Operation::DeleteInstances, &call, t0()),
        CallPlan::Answer { outcome: Ok(_), .. }
    ));
}

#[test]
fn upgrading_window_ends() {
    let mut m = model();
    faults(&mut m, json!([{"kind": "upgrading", "seconds": 20}]));
    let call = q(&[("AppId", "app-1"), ("InstanceIds", "i-a")]);
    for at in [0, 5, 19] {
        match m.call(Operation::DeleteInstances, &call, t0() + secs(at)) {
            CallPlan::Answer {
                outcome: Err(e), ..
            } => assert_eq!(e.code, "System.Upgrading"),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        m.call(Operation::DeleteInstances, &call, t0() + secs(20)),
        CallPlan::Answer { outcome: Ok(_), .. }
    ));
}

#[test]
fn committing_faults_execute_and_others_do_not() {
    let mut m = model();
    faults(
        &mut m,
        json!([
            {"kind": "http500", "commit": false},
            {"kind": "http500", "commit": true},
            {"kind": "ambiguous"},
            {"kind": "garbage", "commit": true},
            {"kind": "slow", "millis": 1500, "commit": true},
            {"kind": "slow", "millis": 10},
        ]),
    );
    let call = |i: &str| q(&[("AppId", "app-1"), ("InstanceIds", i)]);
    assert_eq!(
        m.call(Operation::DeleteInstances, &call("i-a"), t0()),
        CallPlan::InternalError { committed: None }
    );
    let CallPlan::InternalError { committed: Some(_) } =
        m.call(Operation::DeleteInstances, &call("i-a"), t0())
    else {
        panic!("http500 commit:true must execute")
    };
    let CallPlan::DropConnection { committed: Some(_) } =
        m.call(Operation::DeleteInstances, &call("i-b"), t0() + secs(2))
    else {
        panic!("ambiguous must execute")
    };
    let CallPlan::Garbage { committed: Some(_) } =
        m.call(Operation::DeleteInstances, &call("i-c"), t0() + secs(4))
    else {
        panic!("garbage commit:true must execute")
    };
    m.upsert_app(
        AppSpec {
            app_id: "app-1".into(),
            groups: vec![GroupSpec {
                group_id: "g-1".into(),
                group_name: None,
                instance_ids: vec!["i-d".into()],
            }],
        },
        t0() + secs(6),
    )
    .unwrap();
    match m.call(Operation::DeleteInstances, &call("i-d"), t0() + secs(6)) {
        CallPlan::Delayed {
            delay,
            outcome: Ok(s),
        } => {
            assert_eq!(delay, Duration::from_millis(1500));
            assert!(s.committed.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        m.call(Operation::DeleteInstances, &call("i-d"), t0() + secs(8)),
        CallPlan::ExecuteAfter {
            delay: Duration::from_millis(10)
        }
    );
    assert_eq!(m.ledger(t0() + secs(10)).deletions.len(), 4);
}

#[test]
fn scripted_change_order_result_keeps_instances() {
    let mut m = model();
    faults(
        &mut m,
        json!([{"kind": "changeOrderResult", "status": 3, "errorMessage": "boom"}]),
    );
    let co = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
    assert_eq!(status(&mut m, &co, t0() + secs(1)), 1);
    let data = m
        .execute(
            Operation::DescribeChangeOrder,
            &q(&[("ChangeOrderId", &co)]),
            t0() + secs(3),
        )
        .unwrap()
        .data;
    assert_eq!(data["Status"], 3);
    assert_eq!(data["ErrorMessage"], "boom");
    assert_eq!(instances(&mut m, t0() + secs(3)), ["i-a", "i-b", "i-c"]);
    let next = delete(&mut m, "i-a", t0() + secs(3))
        .unwrap()
        .committed
        .unwrap();
    assert_eq!(status(&mut m, &next, t0() + secs(5)), 2);
}

#[test]
fn fault_specs_are_validated() {
    let mut m = model();
    for bad in [
        json!([{"kind": "error", "code": "X", "operation": "Nope"}]),
        json!([{"kind": "changeOrderResult", "status": 2}]),
        json!([{"kind": "http500", "times": 0}]),
        json!([{"kind": "upgrading", "seconds": -1}]),
    ] {
        let faults: Vec<FaultSpec> = serde_json::from_value(bad.clone()).unwrap();
        assert!(
            m.add_faults(
                AppFaults {
                    app_id: "app-1".into(),
                    faults
                },
                t0()
            )
            .is_err(),
            "{bad}"
        );
    }
    assert!(serde_json::from_value::<FaultSpec>(json!({"kind": "http500", "tims": 2})).is_err());
    assert!(serde_json::from_value::<FaultSpec>(json!({"kind": "meteor"})).is_err());
    let unknown_app = AppFaults {
        app_id: "nope".into(),
        faults: vec![],
    };
    assert!(m.add_faults(unknown_app, t0()).is_err());
}

fn signed(
    version: SignatureVersion,
    secret: &str,
    now: Timestamp,
    nonce: &str,
) -> (Authorization, Vec<(String, String)>) {
    let creds = Credentials::new("AK1", secret, None);
    let query = q(&[("AppId", "app-1")]);
    let input = SignInput {
        method: "GET",
        host: "127.0.0.1:9300",
        path: Operation::DescribeApplicationGroups.path(),
        query: &query,
        action: "DescribeApplicationGroups",
        api_version: "2019-05-06",
        body: b"",
        now,
        nonce,
    };
    let headers = sign::signed_headers(version, &creds, &input);
    let auth = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    (auth::parse_authorization(auth).unwrap(), headers)
}

fn authenticate(
    m: &mut Model,
    signed: &(Authorization, Vec<(String, String)>),
    now: Timestamp,
) -> Result<(), ApiError> {
    let query = q(&[("AppId", "app-1")]);
    let req = ReceivedRequest {
        method: "GET",
        path: Operation::DescribeApplicationGroups.path(),
        query: &query,
        headers: &signed.1,
        body: b"",
    };
    m.authenticate(&signed.0, &req, now)
}

#[test]
fn authentication_checks_key_date_signature_and_nonce() {
    for version in [SignatureVersion::V1, SignatureVersion::V3] {
        let mut m = model();
        let unknown = signed(version, "s3cret", t0(), "n0");
        assert_eq!(
            authenticate(&mut m, &unknown, t0()).unwrap_err().code,
            "InvalidAccessKeyId.NotFound"
        );
        m.upsert_access_key(AccessKeySpec::parse_pair("AK1:s3cret").unwrap())
            .unwrap();
        let good = signed(version, "s3cret", t0(), "n1");
        authenticate(&mut m, &good, t0() + secs(30)).unwrap();
        assert_eq!(
            authenticate(&mut m, &good, t0() + secs(31))
                .unwrap_err()
                .code,
            "SignatureNonceUsed"
        );
        let wrong = signed(version, "guess", t0(), "n2");
        assert_eq!(
            authenticate(&mut m, &wrong, t0()).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        // A refused request does not burn its nonce.
        authenticate(&mut m, &signed(version, "s3cret", t0(), "n2"), t0()).unwrap();
        let old = signed(version, "s3cret", t0(), "n3");
        let err = authenticate(&mut m, &old, t0() + secs(16 * 60)).unwrap_err();
        assert_eq!(err.code, "InvalidTimeStamp.Expired", "{version}");
    }
}

#[test]
fn security_token_must_match_the_key() {
    let mut m = model();
    m.upsert_access_key(AccessKeySpec {
        access_key_id: "AK1".into(),
        access_key_secret: "s3cret".into(),
        security_token: Some("tok".into()),
    })
    .unwrap();
    let no_token = signed(SignatureVersion::V3, "s3cret", t0(), "n1");
    let err = authenticate(&mut m, &no_token, t0()).unwrap_err();
    assert_eq!(err.code, "InvalidSecurityToken.MismatchWithAccessKey");
    for (version, nonce) in [(SignatureVersion::V1, "n2"), (SignatureVersion::V3, "n3")] {
        let creds = Credentials::new("AK1", "s3cret", Some("tok".into()));
        let query = q(&[("AppId", "app-1")]);
        let input = SignInput {
            method: "GET",
            host: "h",
            path: Operation::DescribeApplicationGroups.path(),
            query: &query,
            action: "DescribeApplicationGroups",
            api_version: "2019-05-06",
            body: b"",
            now: t0(),
            nonce,
        };
        let headers = sign::signed_headers(version, &creds, &input);
        let auth = auth::parse_authorization(
            headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.as_str()),
        )
        .unwrap();
        authenticate(&mut m, &(auth, headers), t0()).unwrap();
    }
}

#[test]
fn reset_keeps_keys_only() {
    let mut m = model();
    m.upsert_access_key(AccessKeySpec::parse_pair("AK1:s").unwrap())
        .unwrap();
    delete(&mut m, "i-a", t0()).unwrap();
    m.reset();
    assert_eq!(m.access_key_ids(), ["AK1"]);
    assert!(m.app_view("app-1", t0()).is_none());
    assert!(m.ledger(t0()).deletions.is_empty());
}

#[test]
fn access_key_debug_is_redacted() {
    let key = AccessKeySpec {
        access_key_id: "AK1".into(),
        access_key_secret: "topsecret".into(),
        security_token: Some("tok123".into()),
    };
    let shown = format!("{key:?}");
    assert!(
        shown.contains("AK1") && !shown.contains("topsecret") && !shown.contains("tok123"),
        "{shown}"
    );
}

fn console(m: &mut Model, spec: Value, now: Timestamp) -> Result<String, String> {
    let spec: ConsoleChangeOrderSpec = serde_json::from_value(spec).unwrap();
    m.schedule_console_change_order("app-1", &spec, now)
}

fn rows(m: &mut Model, now: Timestamp) -> Vec<Value> {
    let data = m
        .execute(Operation::ListChangeOrders, &q(&[("AppId", "app-1")]), now)
        .unwrap()
        .data;
    data["ChangeOrderList"].as_array().unwrap().clone()
}

#[test]
fn console_change_orders_queue_behind_the_running_one_and_chain() {
    let mut m = model();
    // API deletion t0..t0+2; console deploy due at t0+1 waits until t0+2 and runs 3 s; a
    // console deletion due at t0+1 too waits for that, until t0+5, and runs 2 s.
    let api = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
    let deploy = console(
        &mut m,
        json!({"coTypeCode": "CoDeploy", "afterSeconds": 1, "seconds": 3}),
        t0(),
    )
    .unwrap();
    let removal = console(
        &mut m,
        json!({"instanceIds": ["i-b"], "at": "2024-05-01T10:00:01Z"}),
        t0(),
    )
    .unwrap();
    // Nothing is looked at until t0+10: the model catches up in one go.
    let rows = rows(&mut m, t0() + secs(10));
    let seen: Vec<(&str, i64, &str, Option<&str>)> = rows
        .iter()
        .map(|r| {
            (
                r["ChangeOrderId"].as_str().unwrap(),
                r["Status"].as_i64().unwrap(),
                r["CreateTime"].as_str().unwrap(),
                r["FinishTime"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                removal.as_str(),
                2,
                "2024-05-01 18:00:05",
                Some("2024-05-01 18:00:07")
            ),
            (
                deploy.as_str(),
                2,
                "2024-05-01 18:00:02",
                Some("2024-05-01 18:00:05")
            ),
            (
                api.as_str(),
                2,
                "2024-05-01 18:00:00",
                Some("2024-05-01 18:00:02")
            ),
        ]
    );
    assert_eq!(instances(&mut m, t0() + secs(10)), ["i-c"]);
    let ledger = m.ledger(t0() + secs(10));
    let sources: Vec<ChangeOrderSource> = ledger.deletions.iter().map(|d| d.source).collect();
    assert_eq!(
        sources,
        [ChangeOrderSource::Api, ChangeOrderSource::Console]
    );
    assert_eq!(ledger.deletions[1].time, t0() + secs(5));
    assert!(
        ledger.requests.is_empty(),
        "the model records no request for the console"
    );
}

#[test]
fn a_console_change_order_due_now_occupies_the_app_at_once() {
    let mut m = model();
    let co = console(&mut m, json!({"instanceIds": ["i-a"], "seconds": 0}), t0()).unwrap();
    assert_eq!(
        status(&mut m, &co, t0()),
        2,
        "zero seconds: done as it is made"
    );
    assert_eq!(instances(&mut m, t0()), ["i-b", "i-c"]);
    console(
        &mut m,
        json!({"coTypeCode": "CoRestartInstances", "approvalSeconds": 5}),
        t0(),
    )
    .unwrap();
    let err = delete(&mut m, "i-b", t0() + secs(4)).unwrap_err();
    assert_eq!(err.code, "Application.ChangerOrderRunning");
    assert_eq!(rows(&mut m, t0() + secs(4))[0]["Status"], 11);
    // Faults script API change orders only: this one ends as its spec says.
    faults(&mut m, json!([{"kind": "changeOrderResult", "status": 3}]));
    console(
        &mut m,
        json!({"coTypeCode": "CoDeploy", "seconds": 0}),
        t0() + secs(8),
    )
    .unwrap();
    assert_eq!(rows(&mut m, t0() + secs(8))[0]["Status"], 2);
    assert!(
        console(&mut m, json!({"instanceIds": ["i-a"]}), t0() + secs(8))
            .unwrap_err()
            .contains("i-a")
    );
    assert!(
        m.schedule_console_change_order(
            "nope",
            &serde_json::from_value(json!({"coTypeCode": "CoDeploy"})).unwrap(),
            t0()
        )
        .is_err()
    );
}

#[test]
fn slow_start_and_result_faults_script_api_change_orders() {
    let mut m = model();
    faults(
        &mut m,
        json!([
            {"kind": "slowStart", "preparingSeconds": 3, "times": 2},
            {"kind": "changeOrderResult", "status": 6, "removedInstances": 5},
        ]),
    );
    let co = delete(&mut m, "i-a,i-b", t0()).unwrap().committed.unwrap();
    assert_eq!(
        [0, 2, 3, 4].map(|s| status(&mut m, &co, t0() + secs(s))),
        [0, 0, 1, 1]
    );
    assert_eq!(status(&mut m, &co, t0() + secs(5)), 6);
    assert_eq!(
        instances(&mut m, t0() + secs(5)),
        ["i-c"],
        "removedInstances beyond the count takes all"
    );
    let next = delete(&mut m, "i-c", t0() + secs(5))
        .unwrap()
        .committed
        .unwrap();
    assert_eq!(
        status(&mut m, &next, t0() + secs(7)),
        0,
        "the second slow start"
    );
    assert_eq!(status(&mut m, &next, t0() + secs(10)), 2);
    let view = m.app_view("app-1", t0() + secs(10)).unwrap();
    assert_eq!(view["faults"], json!([]));
}

#[test]
fn repeated_deletions_name_instances_api_deletions_shared() {
    let d = |co: &str, ids: &[&str], source| DeletionRecord {
        app_id: "app-1".into(),
        change_order_id: co.into(),
        instance_ids: ids.iter().map(|i| i.to_string()).collect(),
        time: t0(),
        source,
        final_status: Some(3),
        finished_time: None,
    };
    let other_app = DeletionRecord {
        app_id: "app-2".into(),
        ..d("co-5", &["i-a"], ChangeOrderSource::Api)
    };
    let ledger = [
        d("co-1", &["i-a", "i-b"], ChangeOrderSource::Api),
        d("co-2", &["i-b"], ChangeOrderSource::Console),
        d("co-3", &["i-c"], ChangeOrderSource::Api),
        d("co-4", &["i-b", "i-a"], ChangeOrderSource::Api),
        other_app,
    ];
    let repeated = repeated_deletions(&ledger);
    let seen: Vec<(&str, Vec<&str>)> = repeated
        .iter()
        .map(|r| {
            (
                r.instance_id.as_str(),
                r.change_order_ids.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("i-a", vec!["co-1", "co-4"]), ("i-b", vec!["co-1", "co-4"])]
    );
}

#[test]
fn time_style_and_co_type_code_follow_the_config() {
    let mut m = model();
    delete(&mut m, "i-a", t0()).unwrap();
    m.config_mut().time_style = TimeStyle {
        zone: jiff::tz::Offset::UTC,
        form: crate::simulator::TimeForm::Iso8601,
    };
    m.config_mut().omit_co_type_code = true;
    let row = &rows(&mut m, t0() + secs(1))[0];
    assert_eq!(row["CreateTime"], "2024-05-01T10:00:00Z");
    assert!(row.get("CoTypeCode").is_none() && row.get("FinishTime").is_none());
    m.config_mut().deleting_instances = DeletingView::Hidden;
    assert_eq!(instances(&mut m, t0() + secs(1)), ["i-b", "i-c"]);
    assert_eq!(instances(&mut m, t0() + secs(2)), ["i-b", "i-c"]);
}

mod lag;
