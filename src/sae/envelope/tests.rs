use crate::sae::test_support::*;

// ---- SAE error answers ---------------------------------------------------------------------

#[tokio::test]
async fn sae_error_body_becomes_api_error_with_code_and_request_id() {
    let body = r#"{"RequestId":"req-e","Code":"Application.ChangerOrderRunning","Message":"a change order is running",
        "Success":false,"ErrorCode":"Application.ChangerOrderRunning","TraceId":"t"}"#;
    let (addr, _) = canned(400, &[], body).await;
    let err = delete_via(addr).await.unwrap_err();
    match &err {
        SaeError::Api {
            operation,
            http_status,
            code,
            message,
            request_id,
            retry_after,
        } => {
            assert_eq!(*operation, "DeleteInstances");
            assert_eq!(*http_status, 400);
            assert_eq!(code, "Application.ChangerOrderRunning");
            assert_eq!(message, "a change order is running");
            assert_eq!(request_id.as_deref(), Some("req-e"));
            assert_eq!(*retry_after, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Retryable);
}

#[tokio::test]
async fn numeric_code_defers_to_error_code_even_on_http_200() {
    let body = r#"{"RequestId":"req-f","Code":"400","Message":"bad","Success":false,"ErrorCode":"InvalidParameter.NotEmpty"}"#;
    let (addr, _) = canned(200, &[], body).await;
    let err = delete_via(addr).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameter.NotEmpty"));
    assert_eq!(err.request_id(), Some("req-f"));
    assert_eq!(err.class(), ErrorClass::Terminal);
}

#[tokio::test]
async fn retry_after_header_is_read() {
    let body =
        r#"{"RequestId":"req-t","Code":"Throttling.User","Message":"slow down","Success":false}"#;
    let (addr, _) = canned(400, &[("x-acs-retry-after", "7000")], body).await;
    let err = delete_via(addr).await.unwrap_err();
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(7)),
        "milliseconds"
    );
    assert!(err.is_throttling());
    assert_eq!(err.class(), ErrorClass::Retryable);

    let (addr, _) = canned(400, &[("x-acs-retry-after", "18446744073709551615")], body).await;
    let err = delete_via(addr).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER));

    let (addr, _) = canned(
        400,
        &[(
            "x-ratelimit-user-api",
            "Limit:60,Remain:0,TimeLeft:1500,Reset:1",
        )],
        body,
    )
    .await;
    let err = delete_via(addr).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));

    // A client configured with a lower cap applies it.
    let (addr, _) = canned(400, &[("x-acs-retry-after", "60000")], body).await;
    let err = client_with(addr, |c| c.max_retry_after = Duration::from_secs(10))
        .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["i-1"]))
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
}

#[tokio::test]
async fn gateway_error_without_success_field_is_api() {
    let body = r#"{"RequestId":"req-g","HostId":"sae.cn-hangzhou.aliyuncs.com","Code":"SignatureDoesNotMatch",
        "Message":"Specified signature is not matched with our calculation.","Recommend":"https://..."}"#;
    let (addr, _) = canned(400, &[], body).await;
    let err = delete_via(addr).await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(err.class(), ErrorClass::Terminal);
}

#[tokio::test]
async fn server_error_with_sae_body_is_ambiguous_api() {
    let body = r#"{"RequestId":"req-5xx","Code":"InternalError","Message":"oops","Success":false}"#;
    let (addr, _) = canned(500, &[], body).await;
    let err = delete_via(addr).await.unwrap_err();
    assert!(
        matches!(
            err,
            SaeError::Api {
                http_status: 500,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("InternalError"));
    assert_eq!(err.class(), ErrorClass::Ambiguous);
}

#[tokio::test]
async fn service_unavailable_html_is_no_answer() {
    let (addr, _) = canned(
        503,
        &[("content-type", "text/html")],
        "<html>\n<body>503 Service\tUnavailable</body></html>",
    )
    .await;
    let err = assert_ambiguous(delete_via(addr).await, "HTTP 503");
    // The excerpt is on one line and shows what came back.
    let shown = err.to_string();
    assert!(
        shown.contains("<html> <body>503 Service Unavailable"),
        "{shown}"
    );
    assert!(!shown.contains('\n'));
}

#[tokio::test]
async fn client_error_without_json_is_terminal_http_code() {
    let (addr, _) = canned(400, &[], "Bad Request").await;
    let err = delete_via(addr).await.unwrap_err();
    assert_eq!(err.code(), Some("HTTP400"));
    assert_eq!(err.class(), ErrorClass::Terminal);
    assert!(err.to_string().contains("Bad Request"), "{err}");
}

#[tokio::test]
async fn success_false_without_code_is_no_answer() {
    let (addr, _) = canned(200, &[], r#"{"Success":false}"#).await;
    assert_ambiguous(delete_via(addr).await, "no error code");
}

// ---- unusable 2xx answers ------------------------------------------------------------------

#[tokio::test]
async fn success_status_with_non_json_body_is_no_answer() {
    let (addr, _) = canned(200, &[], "OK, deleted!").await;
    assert_ambiguous(delete_via(addr).await, "OK, deleted!");
}

#[tokio::test]
async fn truncated_json_is_no_answer() {
    let (addr, _) = canned(200, &[], r#"{"RequestId":"r","Data":{"ChangeOrderId":"co-"#).await;
    assert_ambiguous(delete_via(addr).await, "not an SAE JSON object");
}

#[tokio::test]
async fn success_without_change_order_id_is_no_answer() {
    let (addr, _) = canned(
        200,
        &[],
        r#"{"RequestId":"r-nd","Code":"200","Success":true,"Data":{}}"#,
    )
    .await;
    let err = assert_ambiguous(delete_via(addr).await, "ChangeOrderId is missing");
    assert!(err.to_string().contains("r-nd"), "{err}");
}

#[tokio::test]
async fn read_only_operation_with_garbled_data_is_no_answer() {
    let (addr, _) = canned(
        200,
        &[],
        r#"{"Code":200,"Success":true,"Data":{"ChangeOrderId":"co","Status":"running"}}"#,
    )
    .await;
    let result = client_for(addr)
        .describe_change_order(&creds(), "cn-hangzhou", "co")
        .await;
    assert_ambiguous(result, "Data.Status");
    let (addr, _) = canned(
        200,
        &[],
        r#"{"Code":200,"Success":true,"Data":{"TotalSize":3}}"#,
    )
    .await;
    let result = client_for(addr)
        .describe_application_instances(&creds(), "cn-hangzhou", "app", "g", 1, 10)
        .await;
    assert_ambiguous(result, "Data.Instances");
    let (addr, _) = canned(
        200,
        &[],
        r#"{"Code":200,"Success":true,"Data":{"GroupId":"g"}}"#,
    )
    .await;
    let result = client_for(addr)
        .describe_application_groups(&creds(), "cn-hangzhou", "app")
        .await;
    assert_ambiguous(result, "not a list");
}

#[tokio::test]
async fn declared_huge_body_is_refused_before_reading() {
    let router = Router::new().fallback(|| async {
        // Five MiB, declared up front, built from one static chunk so nothing is allocated.
        static CHUNK: [u8; 64 * 1024] = [b' '; 64 * 1024];
        let stream = futures::stream::iter(
            (0..80).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK))),
        );
        Response::builder()
            .header("content-length", (80 * CHUNK.len()).to_string())
            .body(Body::from_stream(stream))
            .unwrap()
    });
    let addr = serve(router).await;
    assert_ambiguous(delete_via(addr).await, "larger than 1048576 bytes");
}

#[tokio::test]
async fn endless_chunked_body_stops_at_the_cap() {
    // No length announced: the client must count while reading, and stop well before the end.
    static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    const TOTAL_CHUNKS: usize = 1024; // 64 MiB if anyone read it all
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let router = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            let stream = futures::stream::iter(0..TOTAL_CHUNKS).map(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK))
            });
            Response::new(Body::from_stream(stream))
        }
    });
    let addr = serve(router).await;
    let result = client_with(addr, |c| c.max_body_bytes = 1024 * 1024)
        .describe_change_order(&creds(), "cn-hangzhou", "co")
        .await;
    assert_ambiguous(result, "stopped reading");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let produced = produced.load(Ordering::SeqCst);
    assert!(
        produced < TOTAL_CHUNKS / 2,
        "server produced {produced} chunks: the client kept reading"
    );
}

// ---- secrets -------------------------------------------------------------------------------

#[tokio::test]
async fn no_error_shows_the_secret_or_token() {
    let mut errors = Vec::new();
    // Servers that echo the credentials back in every place we might copy from.
    let echo = format!(
        r#"{{"RequestId":"{TOKEN}","Code":"Bad{SECRET}","Message":"you sent {SECRET} and {TOKEN}","Success":false}}"#
    );
    let (addr, _) = canned(400, &[], echo.clone()).await;
    errors.push(
        client_for(addr)
            .delete_instances(&sts_creds(), "r", "app", &ids(&["a"]))
            .await
            .unwrap_err(),
    );
    let (addr, _) = canned(200, &[], format!("not json {SECRET} {TOKEN}")).await;
    errors.push(
        client_for(addr)
            .delete_instances(&sts_creds(), "r", "app", &ids(&["a"]))
            .await
            .unwrap_err(),
    );
    let (addr, _) = canned(
        403,
        &[("x-acs-request-id", TOKEN)],
        format!("<html>{SECRET}</html>"),
    )
    .await;
    errors.push(
        client_for(addr)
            .delete_instances(&sts_creds(), "r", "app", &ids(&["a"]))
            .await
            .unwrap_err(),
    );
    let (addr, _) = canned(
        200,
        &[],
        format!(r#"{{"Success":true,"Data":{{"Status":"{SECRET}"}}}}"#),
    )
    .await;
    errors.push(
        client_for(addr)
            .describe_change_order(&sts_creds(), "r", "co")
            .await
            .unwrap_err(),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    errors.push(delete_via(closed).await.unwrap_err());
    errors.push(
        client_for(closed)
            .delete_instances(&sts_creds(), "r", "", &ids(&["a"]))
            .await
            .unwrap_err(),
    );

    assert_eq!(errors.len(), 6);
    for err in &errors {
        for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            assert!(!shown.contains(SECRET), "secret leaked: {shown}");
            assert!(!shown.contains(TOKEN), "token leaked: {shown}");
        }
    }
    // The echo was still reported, redacted.
    assert!(
        errors[0].to_string().contains("<redacted>"),
        "{}",
        errors[0]
    );
    // The client itself prints no credential either.
    let client = client_for(closed);
    assert!(!format!("{client:?}").contains(SECRET));
}

#[test]
fn interpret_never_panics_on_odd_bodies() {
    let creds = creds();
    let secrets = Secrets::of(&creds);
    let bodies: &[&[u8]] = &[
        b"",
        b"null",
        b"[]",
        b"42",
        b"\xff\xfe\x00garbage",
        br#"{"Code":null,"Success":"maybe"}"#,
        br#"{"Code":{"nested":1},"ErrorCode":[1]}"#,
        "{\"Message\":\"\u{1F600}\u{1F600}\"}".as_bytes(),
    ];
    for status in [100, 200, 204, 301, 400, 404, 429, 500, 599] {
        for body in bodies {
            let outcome = interpret("DeleteInstances", status, None, None, body, &secrets);
            if let Err(err) = outcome {
                assert!(!err.to_string().contains('\n'));
            }
        }
    }
}

#[test]
fn excerpt_is_cut_on_a_character_boundary() {
    let creds = creds();
    let secrets = Secrets::of(&creds);
    let long = "é".repeat(1000);
    let shown = secrets.excerpt(long.as_bytes());
    assert_eq!(shown.chars().filter(|c| *c == 'é').count(), EXCERPT_CHARS);
    assert!(shown.ends_with('…'));
}
