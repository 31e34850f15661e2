use super::wire::{MAX_QUERY_BYTES, decode_query};

#[test]
fn query_decoding_is_strict_about_escapes() {
    assert_eq!(
        decode_query("AppId=a&InstanceIds=i-1%2Ci-2&Empty=&Flag&x=a+b").unwrap(),
        vec![
            ("AppId".to_string(), "a".to_string()),
            ("InstanceIds".into(), "i-1,i-2".into()),
            ("Empty".into(), "".into()),
            ("Flag".into(), "".into()),
            ("x".into(), "a b".into()),
        ]
    );
    assert_eq!(decode_query("%E4%B8%AD=1").unwrap()[0].0, "中");
    for bad in ["a=%zz", "a=%4", "a=%", "a=%ff%fe"] {
        assert_eq!(
            decode_query(bad).unwrap_err().code,
            "InvalidParameter",
            "{bad}"
        );
    }
    assert!(decode_query(&"a".repeat(MAX_QUERY_BYTES + 1)).is_err());
}

mod outages {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::simulator::{ManualClock, Simulator, SimulatorConfig};

    fn simulator() -> Arc<Simulator> {
        let clock = Arc::new(ManualClock::new("2025-03-01T12:00:00Z".parse().unwrap()));
        Arc::new(
            Simulator::new(SimulatorConfig {
                clock,
                ..SimulatorConfig::default()
            })
            .unwrap(),
        )
    }

    async fn refused(addr: std::net::SocketAddr) -> bool {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => false,
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                true
            }
        }
    }

    #[tokio::test]
    async fn an_outage_ordered_while_offline_moves_its_end() {
        let sim = simulator();
        let addr = crate::simulator::spawn(sim.clone()).await.unwrap();
        assert!(!refused(addr).await);
        let started = tokio::time::Instant::now();
        assert!(sim.go_offline(Duration::from_millis(200)).await);
        assert!(refused(addr).await);
        // Ordered while offline: acknowledged at once (the listener is already closed), and the
        // port stays closed until the later end.
        assert!(sim.go_offline(Duration::from_millis(400)).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(refused(addr).await, "the second outage still holds");
        while refused(addr).await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(400));
        // Served again, by the same simulator.
        let body = reqwest::get(format!("http://{addr}/_sim/healthz"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, r#"{"status":"ok"}"#);
    }

    #[tokio::test(start_paused = true)]
    async fn going_offline_with_nothing_serving_says_so() {
        // Paused time: the one-second wait for an accept loop passes without waiting.
        assert!(!simulator().go_offline(Duration::from_secs(1)).await);
    }
}
