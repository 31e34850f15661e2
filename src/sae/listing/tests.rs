use crate::sae::test_support::*;

#[tokio::test]
async fn list_all_instance_ids_walks_groups_and_pages() {
    let log: Log = Arc::default();
    let seen = log.clone();
    let router = Router::new().fallback(move |req: Request| {
        let seen = seen.clone();
        async move {
            record(&seen, &req);
            let last = seen.lock().unwrap().last().unwrap().clone();
            let q: std::collections::HashMap<_, _> = last.decoded_query().into_iter().collect();
            let body = if last.path.ends_with("describeApplicationGroups") {
                r#"{"Code":200,"Success":true,"Data":[{"GroupId":"g-1"},{"GroupId":"g-2"}]}"#.to_string()
            } else {
                // g-1 holds 60 instances (two pages of 50), g-2 holds one, also listed in g-1.
                let page: usize = q["CurrentPage"].parse().unwrap();
                let size: usize = q["PageSize"].parse().unwrap();
                let all: Vec<String> = if q["GroupId"] == "g-1" {
                    (0..60).map(|i| format!("i-{i}")).collect()
                } else {
                    vec!["i-7".to_string(), "i-x".to_string()]
                };
                let rows: Vec<_> = all
                    .iter()
                    .skip((page - 1) * size)
                    .take(size)
                    .map(|id| serde_json::json!({ "InstanceId": id }))
                    .collect();
                serde_json::json!({"Code": 200, "Success": true, "Data": {
                    "CurrentPage": page, "PageSize": size, "TotalSize": all.len(), "Instances": rows}})
                .to_string()
            };
            Response::new(Body::from(body))
        }
    });
    let addr = serve(router).await;
    // The gate sees each request before it is sent: it records how many were sent by then.
    let gated = Arc::new(Mutex::new(Vec::new()));
    let gate = || {
        let (gated, log) = (gated.clone(), log.clone());
        async move {
            gated.lock().unwrap().push(log.lock().unwrap().len());
            Ok::<(), ()>(())
        }
    };
    // The observer hears of each request under its own operation, not of "a listing".
    let observed = Arc::new(Mutex::new(Vec::new()));
    let observer: RequestObserver = {
        let observed = observed.clone();
        Arc::new(move |op, outcome, _| observed.lock().unwrap().push((op, outcome.is_ok())))
    };
    let all = client_for(addr)
        .with_observer(observer)
        .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", gate)
        .await
        .unwrap()
        .unwrap();
    let mut want: Vec<String> = (0..60).map(|i| format!("i-{i}")).collect();
    want.push("i-x".into());
    assert_eq!(all, want);
    // groups + two pages of g-1 + one page of g-2, each behind the gate once
    assert_eq!(log.lock().unwrap().len(), 4);
    assert_eq!(*gated.lock().unwrap(), [0, 1, 2, 3]);
    assert_eq!(
        *observed.lock().unwrap(),
        [
            (Operation::DescribeApplicationGroups, true),
            (Operation::DescribeApplicationInstances, true),
            (Operation::DescribeApplicationInstances, true),
            (Operation::DescribeApplicationInstances, true),
        ]
    );

    // A gate that refuses the third request stops the listing there.
    let before = log.lock().unwrap().len();
    let passes = Arc::new(Mutex::new(0));
    let gate = || {
        let passes = passes.clone();
        async move {
            let mut passes = passes.lock().unwrap();
            *passes += 1;
            if *passes > 2 { Err("deadline") } else { Ok(()) }
        }
    };
    let refused = client_for(addr)
        .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", gate)
        .await;
    assert_eq!(refused, Err("deadline"));
    assert_eq!(
        log.lock().unwrap().len() - before,
        2,
        "nothing sent after the refusal"
    );
}

/// A server answering every instance page with `total` and 50 fresh rows (its totals may grow).
async fn paging_server(total: impl Fn(usize) -> u64 + Send + Sync + 'static) -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let total = Arc::new(total);
    let router = Router::new().fallback(move |req: Request| {
        let (seen, total) = (seen.clone(), total.clone());
        async move {
            record(&seen, &req);
            let last = seen.lock().unwrap().last().unwrap().clone();
            let q: std::collections::HashMap<_, _> = last.decoded_query().into_iter().collect();
            let body = if last.path.ends_with("describeApplicationGroups") {
                r#"{"Code":200,"Success":true,"Data":[{"GroupId":"g-1"}]}"#.to_string()
            } else {
                let page: usize = q["CurrentPage"].parse().unwrap();
                let rows: Vec<_> = (0..50)
                    .map(|i| serde_json::json!({ "InstanceId": format!("i-{page}-{i}") }))
                    .collect();
                serde_json::json!({"Code": 200, "Success": true, "Data": {
                    "CurrentPage": page, "PageSize": 50, "TotalSize": total(page), "Instances": rows}})
                .to_string()
            };
            Response::new(Body::from(body))
        }
    });
    (serve(router).await, log)
}

#[tokio::test]
async fn a_garbled_total_is_refused_after_one_page_not_followed() {
    let (addr, log) = paging_server(|_| 10_000_000).await;
    let gates = Arc::new(Mutex::new(0));
    let gate = || {
        let gates = gates.clone();
        async move {
            *gates.lock().unwrap() += 1;
            Ok::<(), ()>(())
        }
    };
    let err = client_for(addr)
        .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", gate)
        .await
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("TotalSize 10000000")
            && text.contains("200000 pages")
            && text.contains(&format!("more than {MAX_INSTANCE_PAGES} pages")),
        "{text}"
    );
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "groups and the first page only"
    );
    assert_eq!(*gates.lock().unwrap(), 2);
}

#[tokio::test]
async fn paging_stops_where_the_first_page_said_even_if_totals_grow() {
    // The first page says 120 instances (3 pages); later pages claim ever more.
    let (addr, log) = paging_server(|page| match page {
        1 => 120,
        later => 1000 * later as u64,
    })
    .await;
    let ids = client_for(addr)
        .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", no_gate)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids.len(), 150);
    assert_eq!(log.lock().unwrap().len(), 4, "groups + 3 pages");

    // The most a group may announce is still read in full.
    let most = MAX_INSTANCE_PAGES * 50;
    let (addr, log) = paging_server(move |_| most).await;
    let ids = client_for(addr)
        .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", no_gate)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids.len() as u64, most);
    assert_eq!(log.lock().unwrap().len() as u64, 1 + MAX_INSTANCE_PAGES);
}
