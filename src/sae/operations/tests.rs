use crate::sae::test_support::*;

// ---- success envelopes -------------------------------------------------------------------

#[tokio::test]
async fn delete_instances_parses_change_order_with_numeric_code() {
    let body = r#"{"RequestId":"req-1","TraceId":"tr-1","Code":200,"Message":"success","Success":true,
        "Data":{"ChangeOrderId":"co-123"},"Extra":{"ignored":[1,2]}}"#;
    let (addr, log) = canned(200, &[], body).await;
    let accepted = delete_via(addr).await.unwrap();
    assert_eq!(
        accepted,
        DeleteAccepted {
            change_order_id: "co-123".into(),
            request_id: Some("req-1".into()),
            trace_id: Some("tr-1".into()),
        }
    );
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.path, "/pop/v1/sam/app/deleteInstances");
    assert!(
        seen.raw_query.contains("InstanceIds=a%2Cb"),
        "{}",
        seen.raw_query
    );
    assert!(seen.raw_query.contains("AppId=app-1"), "{}", seen.raw_query);
}

#[tokio::test]
async fn describe_change_order_parses_fields_with_string_code_and_string_numbers() {
    let body = r#"{"RequestId":"req-2","Code":"200","Success":"true","Data":{"ChangeOrderId":"co-9",
        "Status":"1","SubStatus":0,"CoTypeCode":"CoDeleteInstances","ErrorMessage":"",
        "CreateTime":"2020-12-17 21:06:45","Pipelines":[{"PipelineId":"p"}]}}"#;
    let (addr, log) = canned(200, &[], body).await;
    let co = client_for(addr)
        .describe_change_order(&creds(), "cn-hangzhou", "co-9")
        .await
        .unwrap();
    assert_eq!(
        co,
        ChangeOrderDetail {
            change_order_id: "co-9".into(),
            status: 1,
            sub_status: Some(0),
            co_type_code: Some("CoDeleteInstances".into()),
            error_message: None,
            create_time: Some("2020-12-17 21:06:45".into()),
            request_id: Some("req-2".into()),
        }
    );
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/pop/v1/sam/changeorder/DescribeChangeOrder");
    assert_eq!(seen.raw_query, "ChangeOrderId=co-9");
}

#[tokio::test]
async fn list_change_orders_parses_page() {
    let body = r#"{"RequestId":"req-3","Code":"200","Success":true,"Data":{"CurrentPage":2,"PageSize":"10",
        "TotalSize":12,"ChangeOrderList":[
          {"ChangeOrderId":"co-a","Status":2,"CoTypeCode":"CoDeleteInstances","CreateTime":"2020-12-17 21:06:45","FinishTime":"2020-12-17 21:07:02","AppId":"x"},
          {"ChangeOrderId":"co-b","Status":"3"}]}}"#;
    let (addr, log) = canned(200, &[], body).await;
    let page = client_for(addr)
        .list_change_orders(
            &creds(),
            "cn-hangzhou",
            "app-1",
            Some("CoDeleteInstances"),
            2,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        page,
        ChangeOrderPage {
            total: 12,
            current_page: 2,
            page_size: 10,
            change_orders: vec![
                ChangeOrderSummary {
                    change_order_id: "co-a".into(),
                    status: 2,
                    co_type_code: Some("CoDeleteInstances".into()),
                    create_time: Some("2020-12-17 21:06:45".into()),
                    finish_time: Some("2020-12-17 21:07:02".into()),
                },
                ChangeOrderSummary {
                    change_order_id: "co-b".into(),
                    status: 3,
                    co_type_code: None,
                    create_time: None,
                    finish_time: None,
                },
            ],
        }
    );
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/pop/v1/sam/changeorder/ListChangeOrders");
    assert_eq!(
        seen.raw_query,
        "AppId=app-1&CoType=CoDeleteInstances&CurrentPage=2&PageSize=10"
    );
}

#[tokio::test]
async fn list_change_orders_without_rows_is_an_empty_page() {
    let body = r#"{"Code":200,"Success":true,"Data":{"CurrentPage":1,"PageSize":10,"TotalSize":0,"ChangeOrderList":null}}"#;
    let (addr, log) = canned(200, &[], body).await;
    let page = client_for(addr)
        .list_change_orders(&creds(), "cn-hangzhou", "app-1", None, 1, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    assert!(page.change_orders.is_empty());
    assert!(!log.lock().unwrap()[0].raw_query.contains("CoType"));
}

#[tokio::test]
async fn describe_application_groups_parses_list() {
    let body = r#"{"RequestId":"req-4","Code":200,"Success":true,"Data":[
        {"GroupId":"g-1","GroupName":"default","GroupType":0},{"GroupId":"g-2"}]}"#;
    let (addr, log) = canned(200, &[], body).await;
    let groups = client_for(addr)
        .describe_application_groups(&creds(), "cn-hangzhou", "app-1")
        .await
        .unwrap();
    assert_eq!(
        groups,
        vec![
            ApplicationGroup {
                group_id: "g-1".into(),
                group_name: Some("default".into())
            },
            ApplicationGroup {
                group_id: "g-2".into(),
                group_name: None
            },
        ]
    );
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/pop/v1/sam/app/describeApplicationGroups");
    assert_eq!(seen.raw_query, "AppId=app-1");
}

#[tokio::test]
async fn describe_application_instances_parses_page() {
    let body = r#"{"RequestId":"req-5","Code":"200","Success":true,"Data":{"CurrentPage":1,"PageSize":2,
        "TotalSize":4,"Instances":[{"InstanceId":"i-1","GroupId":"g-1","InstanceContainerStatus":"Running"},
          {"InstanceId":"i-2","InstanceContainerStatus":"Terminating"},{"InstanceId":"i-3"},
          {"InstanceId":"i-4","InstanceContainerStatus":"Pending"}]}}"#;
    let (addr, log) = canned(200, &[], body).await;
    let page = client_for(addr)
        .describe_application_instances(&creds(), "cn-hangzhou", "app-1", "g-1", 1, 2)
        .await
        .unwrap();
    assert_eq!(
        page,
        InstancePage {
            total: 4,
            current_page: 1,
            page_size: 2,
            instance_ids: ids(&["i-1", "i-2", "i-3", "i-4"]),
            terminating: ids(&["i-2"]),
            running: ids(&["i-1"]),
        }
    );
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/pop/v1/sam/app/describeApplicationInstances");
    assert_eq!(
        seen.raw_query,
        "AppId=app-1&CurrentPage=1&GroupId=g-1&PageSize=2"
    );
}
