//! Reads that lag their writes (`list_lag`, `describe_lag`) and the preparing phase every API-made
//! change order can be given (`preparing_seconds`). Time is passed in by hand, so nothing here
//! waits.

use super::*;

fn lagging(list: i64, describe: i64) -> Model {
    let mut m = model();
    m.config_mut().list_lag = secs(list);
    m.config_mut().describe_lag = secs(describe);
    m
}

fn list_page(m: &mut Model, page: &str, size: &str, now: Timestamp) -> Value {
    let query = q(&[
        ("AppId", "app-1"),
        ("CurrentPage", page),
        ("PageSize", size),
    ]);
    m.execute(Operation::ListChangeOrders, &query, now)
        .unwrap()
        .data
}

fn ids(data: &Value) -> Vec<String> {
    data["ChangeOrderList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["ChangeOrderId"].as_str().unwrap().to_string())
        .collect()
}

fn describe(m: &mut Model, co: &str, now: Timestamp) -> Outcome {
    m.execute(
        Operation::DescribeChangeOrder,
        &q(&[("ChangeOrderId", co)]),
        now,
    )
}

#[test]
fn the_list_shows_a_change_order_only_once_the_lag_has_passed() {
    let mut m = lagging(5, 0);
    let first = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
    assert!(rows(&mut m, t0()).is_empty(), "hidden right after creation");
    assert!(rows(&mut m, t0() + secs(4)).is_empty());
    // Visible at exactly the lag, with its status of that moment (it ended at 2 s).
    let shown = rows(&mut m, t0() + secs(5));
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["ChangeOrderId"], first.as_str());
    assert_eq!(shown[0]["Status"], 2);
    assert!(shown[0].get("FinishTime").is_some());

    // A second one, made at 10 s, is hidden until 15 s: TotalSize and paging count only the
    // visible rows, so page 2 of size 1 is empty rather than holding the older row twice.
    let second = delete(&mut m, "i-b", t0() + secs(10))
        .unwrap()
        .committed
        .unwrap();
    let during = list_page(&mut m, "1", "1", t0() + secs(12));
    assert_eq!(during["TotalSize"], 1);
    assert_eq!(ids(&during), [first.as_str()]);
    assert_eq!(ids(&list_page(&mut m, "2", "1", t0() + secs(12))).len(), 0);
    let after = list_page(&mut m, "2", "1", t0() + secs(15));
    assert_eq!(after["TotalSize"], 2);
    assert_eq!(ids(&after), [first.as_str()]);
    assert_eq!(
        ids(&list_page(&mut m, "1", "1", t0() + secs(15))),
        [second.as_str()]
    );

    // The lag hides; it does not undo. The hidden change order held the app and the ledger has
    // it from the start.
    let third = delete(&mut m, "i-c", t0() + secs(20))
        .unwrap()
        .committed
        .unwrap();
    let err = delete(&mut m, "i-c", t0() + secs(21)).unwrap_err();
    assert_eq!(err.code, "Application.ChangerOrderRunning");
    assert_eq!(rows(&mut m, t0() + secs(21)).len(), 2);
    let ledger = m.ledger(t0() + secs(21));
    let recorded: Vec<&str> = ledger
        .deletions
        .iter()
        .map(|d| d.change_order_id.as_str())
        .collect();
    assert_eq!(recorded, [&first, &second, &third]);
    // DescribeChangeOrder has no lag of its own here.
    assert!(describe(&mut m, &third, t0() + secs(20)).is_ok());
}

#[test]
fn console_change_orders_lag_in_the_list_too() {
    let mut m = lagging(3, 3);
    let co = console(&mut m, json!({"instanceIds": ["i-a"]}), t0()).unwrap();
    assert!(rows(&mut m, t0() + secs(2)).is_empty());
    assert!(describe(&mut m, &co, t0() + secs(2)).is_err());
    assert_eq!(
        rows(&mut m, t0() + secs(3))[0]["ChangeOrderId"],
        co.as_str()
    );
    assert!(describe(&mut m, &co, t0() + secs(3)).is_ok());
}

#[test]
fn a_young_change_order_is_not_found_exactly_like_an_unknown_id() {
    let mut m = lagging(0, 2);
    // A fault is waiting on the app: an unknown id does not use it up, so neither may a hidden
    // change order (the call never reaches the app).
    faults(
        &mut m,
        json!([{"kind": "error", "code": "System.Upgrading", "operation": "DescribeChangeOrder"}]),
    );
    let co = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
    let unknown = "00000000-0000-0000-0000-000000000000";
    for at in [0, 1] {
        let hidden = describe(&mut m, &co, t0() + secs(at)).unwrap_err();
        let never = describe(&mut m, unknown, t0() + secs(at)).unwrap_err();
        assert_eq!(
            (hidden.code.as_str(), hidden.http_status),
            (never.code.as_str(), never.http_status)
        );
        assert_eq!(
            hidden.message,
            never.message.replace(unknown, &co),
            "the same words, naming the id asked for"
        );
        let plan = m.call(
            Operation::DescribeChangeOrder,
            &q(&[("ChangeOrderId", &co)]),
            t0() + secs(at),
        );
        assert_eq!(
            plan,
            CallPlan::Answer {
                outcome: Err(hidden),
                fault: None
            }
        );
    }
    // From the lag on it is found, and shows its current status; the list never lagged.
    assert_eq!(rows(&mut m, t0())[0]["ChangeOrderId"], co.as_str());
    assert_eq!(status(&mut m, &co, t0() + secs(2)), 2);
    let plan = m.call(
        Operation::DescribeChangeOrder,
        &q(&[("ChangeOrderId", &co)]),
        t0() + secs(2),
    );
    assert!(
        matches!(
            plan,
            CallPlan::Answer {
                fault: Some("error"),
                ..
            }
        ),
        "the fault was still there: {plan:?}"
    );
}

#[test]
fn every_api_change_order_prepares_first_unless_a_slow_start_says_otherwise() {
    let mut m = model();
    m.config_mut().preparing_seconds = secs(4);
    let co = delete(&mut m, "i-a", t0()).unwrap().committed.unwrap();
    // 0 for 4 s with the instance untouched and the app busy, then 1 for the usual 2 s.
    assert_eq!(
        [0, 3, 4, 5, 6].map(|s| status(&mut m, &co, t0() + secs(s))),
        [0, 0, 1, 1, 2]
    );
    m.config_mut().deleting_instances = DeletingView::Hidden;
    let co = delete(&mut m, "i-b", t0() + secs(6))
        .unwrap()
        .committed
        .unwrap();
    assert_eq!(instances(&mut m, t0() + secs(9)), ["i-b", "i-c"]);
    assert_eq!(
        delete(&mut m, "i-c", t0() + secs(9)).unwrap_err().code,
        "Application.ChangerOrderRunning"
    );
    assert_eq!(instances(&mut m, t0() + secs(10)), ["i-c"], "executing");
    assert_eq!(status(&mut m, &co, t0() + secs(12)), 2);

    // A slowStart fault scripts its change order instead (here: approval only, no preparing),
    // and a changeOrderResult fault still decides the end.
    faults(
        &mut m,
        json!([
            {"kind": "slowStart", "approvalSeconds": 1},
            {"kind": "changeOrderResult", "status": 3},
        ]),
    );
    let co = delete(&mut m, "i-c", t0() + secs(12))
        .unwrap()
        .committed
        .unwrap();
    assert_eq!(
        [12, 13, 14, 15].map(|s| status(&mut m, &co, t0() + secs(s))),
        [11, 1, 1, 3]
    );

    // Console change orders keep their own phases.
    let console_co = console(&mut m, json!({"instanceIds": ["i-c"]}), t0() + secs(15)).unwrap();
    assert_eq!(status(&mut m, &console_co, t0() + secs(15)), 1);
}
