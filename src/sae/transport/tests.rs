use crate::sae::test_support::*;

// ---- transport failures --------------------------------------------------------------------

#[tokio::test]
async fn answer_slower_than_timeout_is_no_answer() {
    let router = Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    });
    let addr = serve(router).await;
    let client = client_with(addr, |c| c.timeout = Duration::from_millis(300));
    let started = Instant::now();
    let err = assert_ambiguous(
        client
            .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["a"]))
            .await,
        "no answer within",
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
}

#[tokio::test]
async fn refused_connection_is_not_sent() {
    // Bound but never listening: connections are refused, and no other test can take the port
    // (a dropped listener's port could be taken again). This case is tested here only; the
    // simulator plays no part in it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let err = delete_via(addr).await.unwrap_err();
    assert!(matches!(err, SaeError::NotSent { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn unresolvable_host_is_not_sent() {
    let config = SaeClientConfig {
        endpoint: "http://sae.{regionId}.invalid".into(),
        connect_timeout: Duration::from_secs(3),
        ..SaeClientConfig::default()
    };
    let err = SaeClient::new(config)
        .unwrap()
        .delete_instances(&creds(), "cn-hangzhou", "app", &ids(&["a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::NotSent { .. }), "{err:?}");
}

/// A raw server: reads the request head, writes `answer`, then closes the connection.
async fn raw_server(answer: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = socket.write_all(answer).await;
            let _ = socket.shutdown().await;
        }
    });
    addr
}

#[tokio::test]
async fn connection_closed_without_answer_is_no_answer() {
    let addr = raw_server(b"").await;
    assert_ambiguous(delete_via(addr).await, "connection lost");
}

#[tokio::test]
async fn connection_closed_mid_body_is_no_answer() {
    let addr =
        raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n{\"RequestId\":\"r\",\"Data\":")
            .await;
    assert_ambiguous(delete_via(addr).await, "body read failed");
}

/// A server that answers the first request of each connection with a refusal (HTTP 400) and
/// drops any later request on the same connection unanswered, as a server closing an idle
/// keep-alive connection just as a request is written does. Counts connections.
async fn one_answer_per_connection_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let body = br#"{"RequestId":"r-1","Code":"InvalidParameter.NotEmpty","Message":"x","Success":false}"#;
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut buf = [0u8; 4096];
                for round in 0..2 {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if round == 1 {
                        return;
                    }
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.write_all(body).await;
                }
            });
        }
    });
    (addr, connections)
}

/// An outage must never be mistaken for a lost answer's opposite: a request written on a pooled
/// keep-alive connection that the server then drops may have reached SAE, so it is `NoAnswer`
/// (resolved from SAE's state, or asked again for a read), never `NotSent`.
#[tokio::test]
async fn a_pooled_connection_dropped_after_the_request_is_no_answer_not_unsent() {
    let (addr, connections) = one_answer_per_connection_server().await;
    let (client, creds) = (client_for(addr), creds());
    let first = client
        .describe_change_order(&creds, "cn-hangzhou", "co-1")
        .await
        .expect_err("a refusal");
    assert!(matches!(first, SaeError::Api { .. }), "{first:?}");
    // Reads reuse the kept-alive connection: this one is dropped unanswered.
    let second = client
        .describe_change_order(&creds, "cn-hangzhou", "co-1")
        .await;
    assert_ambiguous(second, "connection");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// DeleteInstances never rides a pooled connection, so a server closing idle connections cannot
/// turn its answer into a lost one (an attempt to resolve from SAE's lists): each goes out on a
/// connection of its own and is answered.
#[tokio::test]
async fn delete_instances_opens_a_connection_of_its_own_each_time() {
    let (addr, connections) = one_answer_per_connection_server().await;
    let (client, creds, ids) = (client_for(addr), creds(), ids(&["a"]));
    let read = client
        .describe_change_order(&creds, "cn-hangzhou", "co-1")
        .await
        .expect_err("a refusal");
    assert!(matches!(read, SaeError::Api { .. }), "{read:?}");
    for round in 0..3 {
        let sent = client
            .delete_instances(&creds, "cn-hangzhou", "app-1", &ids)
            .await
            .expect_err("a refusal");
        assert!(
            matches!(sent, SaeError::Api { .. }),
            "DeleteInstances {round} was not answered: {sent:?}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        4,
        "one for the read, one per send"
    );
}

// ---- requests that cannot be built ---------------------------------------------------------

#[test]
fn bad_endpoints_are_invalid_requests() {
    for endpoint in [
        "not a url",
        "ftp://sae.example.com",
        "http://sae.example.com/prefix",
        "http://u:pw@sae.example.com",
    ] {
        let err = SaeClient::new(SaeClientConfig {
            endpoint: endpoint.into(),
            ..SaeClientConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, SaeError::InvalidRequest { .. }),
            "{endpoint}: {err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Terminal);
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
    assert!(SaeClient::new(SaeClientConfig::default()).is_ok());
    assert!(
        SaeClient::new(SaeClientConfig {
            endpoint: "http://127.0.0.1:8080/".into(),
            ..Default::default()
        })
        .is_ok()
    );
}

#[tokio::test]
async fn bad_inputs_are_refused_before_sending() {
    let (addr, log) = canned(200, &[], "{}").await;
    let client = client_for(addr);
    let regional = SaeClient::new(SaeClientConfig {
        endpoint: "http://{regionId}.sae.test:1".into(),
        ..SaeClientConfig::default()
    });
    // The template is valid; only the region given at call time is not.
    let err = regional
        .unwrap()
        .describe_change_order(&creds(), "cn/../evil", "co")
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");
    let sae = SaeClient::new(SaeClientConfig::default()).unwrap();
    let err = sae
        .describe_change_order(&creds(), "evil.com/x?", "co")
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");

    for bad in [ids(&[]), ids(&["a,b"]), ids(&["a", " "])] {
        let err = client
            .delete_instances(&creds(), "r", "app", &bad)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SaeError::InvalidRequest { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let err = client
        .delete_instances(&creds(), "r", "", &ids(&["a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");

    // A token that cannot travel in a header: refused without echoing it.
    let odd = Credentials::new(AK, SECRET, Some(format!("{TOKEN}\nInjected: yes")));
    let err = client
        .delete_instances(&odd, "r", "app", &ids(&["a"]))
        .await
        .unwrap_err();
    assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN), "{err}");

    assert!(log.lock().unwrap().is_empty(), "a request was sent");
}

// ---- what goes on the wire -----------------------------------------------------------------

const SUCCESS: &str =
    r#"{"RequestId":"r","Code":"200","Success":true,"Data":{"ChangeOrderId":"co-1"}}"#;

fn check_common_headers(seen: &Seen, addr: SocketAddr) {
    assert!(
        seen.header("user-agent")
            .unwrap()
            .starts_with("sae-controller/"),
        "{seen:?}"
    );
    assert_eq!(seen.header("host"), Some(addr.to_string().as_str()));
    assert_eq!(seen.header("x-acs-action"), Some("DeleteInstances"));
    assert_eq!(seen.header("x-acs-version"), Some("2019-05-06"));
    let nonce = seen.header("x-acs-signature-nonce").unwrap();
    assert_eq!(nonce.len(), 32, "{nonce}");
    assert!(
        seen.raw_query.contains("InstanceIds=a%2Cb"),
        "{}",
        seen.raw_query
    );
}

#[tokio::test]
async fn v1_request_carries_a_valid_signature() {
    let (addr, log) = canned(200, &[], SUCCESS).await;
    client_for(addr)
        .delete_instances(&sts_creds(), "cn-hangzhou", "app-1", &ids(&["a", "b"]))
        .await
        .unwrap();
    let seen = log.lock().unwrap()[0].clone();
    check_common_headers(&seen, addr);
    assert_eq!(seen.header("x-acs-security-token"), Some(TOKEN));
    assert_eq!(seen.header("x-acs-signature-method"), Some("HMAC-SHA1"));

    let query = seen.decoded_query();
    assert!(query.contains(&("InstanceIds".into(), "a,b".into())));
    let string_to_sign =
        sign::roa_v1_string_to_sign(&seen.method, &seen.path, &query, &seen.headers);
    let expected = format!(
        "acs STS.tempkeyid:{}",
        sign::roa_v1_signature(SECRET, &string_to_sign)
    );
    assert_eq!(seen.header("authorization"), Some(expected.as_str()));
    let forged = sign::roa_v1_signature("wrong-secret", &string_to_sign);
    assert!(!seen.header("authorization").unwrap().ends_with(&forged));

    // Exactly the signed headers, user-agent, and the framing hyper adds for a bodiless PUT.
    let input = SignInput {
        method: "PUT",
        host: "h",
        path: "/",
        query: &[],
        action: "DeleteInstances",
        api_version: API_VERSION,
        body: b"",
        now: jiff::Timestamp::now(),
        nonce: "n",
    };
    let signed_names: Vec<String> =
        sign::signed_headers(SignatureVersion::V1, &sts_creds(), &input)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
    for (name, _) in &seen.headers {
        assert!(
            signed_names.contains(name) || name == "user-agent" || name == "content-length",
            "unexpected header {name}"
        );
    }
    for name in &signed_names {
        assert!(seen.header(name).is_some(), "missing header {name}");
    }
}

#[tokio::test]
async fn v3_request_carries_a_valid_signature() {
    let (addr, log) = canned(200, &[], SUCCESS).await;
    let client = client_with(addr, |c| c.signature_version = SignatureVersion::V3);
    client
        .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["a", "b"]))
        .await
        .unwrap();
    let seen = log.lock().unwrap()[0].clone();
    check_common_headers(&seen, addr);

    let authorization = seen.header("authorization").unwrap();
    let signed_list = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    let names: Vec<&str> = signed_list.split(';').collect();
    assert!(
        names.contains(&"host") && names.contains(&"x-acs-date"),
        "{signed_list}"
    );
    let signed: Vec<(String, String)> = seen
        .headers
        .iter()
        .filter(|(k, _)| names.contains(&k.as_str()))
        .cloned()
        .collect();
    let expected = sign::v3_authorization(
        AK,
        SECRET,
        &seen.method,
        &seen.path,
        &seen.decoded_query(),
        &signed,
        seen.header("x-acs-content-sha256").unwrap(),
    );
    assert_eq!(authorization, expected);
}

#[tokio::test]
async fn each_request_has_a_fresh_nonce() {
    let (addr, log) = canned(200, &[], SUCCESS).await;
    let client = client_for(addr);
    for _ in 0..3 {
        client
            .delete_instances(&creds(), "r", "app", &ids(&["a"]))
            .await
            .unwrap();
    }
    let nonces: HashSet<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.header("x-acs-signature-nonce").unwrap().to_string())
        .collect();
    assert_eq!(nonces.len(), 3);
}
