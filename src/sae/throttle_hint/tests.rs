use crate::sae::test_support::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn retry_after_is_milliseconds_and_only_positive_integers_count() {
    let ms = Duration::from_millis;
    for (value, want) in [
        ("1000", Some(ms(1000))),
        ("7", Some(ms(7))),
        (" 12 ", Some(ms(12))),
        ("000250", Some(ms(250))),
        ("0", None),
        ("", None),
        ("   ", None),
        ("-3", None),
        ("+5", None),
        ("soon", None),
        ("1.5", None),
        ("1e3", None),
        ("10 s", None),
    ] {
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER_HEADER, value)]), MAX_RETRY_AFTER),
            want,
            "{value:?}"
        );
    }
    assert_eq!(retry_after(&HeaderMap::new(), MAX_RETRY_AFTER), None);
}

#[test]
fn retry_after_is_capped_at_two_minutes_or_the_configured_cap() {
    let cap = MAX_RETRY_AFTER;
    for huge in [
        "120001",
        "18446744073709551615",
        // Beyond u64: still just "long".
        "99999999999999999999999999999999",
    ] {
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER_HEADER, huge)]), cap),
            Some(Duration::from_secs(120)),
            "{huge}"
        );
    }
    assert_eq!(
        retry_after(&headers(&[(RETRY_AFTER_HEADER, "120000")]), cap),
        Some(Duration::from_secs(120))
    );
    // A lower configured cap applies; a higher one cannot raise the ceiling.
    let h = headers(&[(RETRY_AFTER_HEADER, "90000")]);
    assert_eq!(
        retry_after(&h, Duration::from_secs(30)),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        retry_after(&h, Duration::from_secs(3600)),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        retry_after(&headers(&[(RETRY_AFTER_HEADER, "u64::MAX")]), cap),
        None
    );
    assert_eq!(
        retry_after(
            &headers(&[(RETRY_AFTER_HEADER, "18446744073709551615")]),
            Duration::MAX
        ),
        Some(MAX_RETRY_AFTER)
    );
}

#[test]
fn older_rate_limit_headers_give_time_left_in_milliseconds() {
    let ms = Duration::from_millis;
    let read = |pairs: &[(&str, &str)]| retry_after(&headers(pairs), MAX_RETRY_AFTER);
    let full = "Limit:60,Remain:0,TimeLeft:2000,Reset:1234";
    assert_eq!(read(&[("x-ratelimit-user", full)]), Some(ms(2000)));
    assert_eq!(read(&[("x-ratelimit-user-api", full)]), Some(ms(2000)));
    // Both: the longer wait; spaces around keys and values are allowed.
    assert_eq!(
        read(&[
            ("x-ratelimit-user-api", "Remain:0, TimeLeft : 3500 "),
            ("x-ratelimit-user", "TimeLeft:1500"),
        ]),
        Some(ms(3500))
    );
    // One unusable, the other counts.
    assert_eq!(
        read(&[
            ("x-ratelimit-user-api", "TimeLeft:-1"),
            ("x-ratelimit-user", "TimeLeft:800"),
        ]),
        Some(ms(800))
    );
    for useless in [
        "",
        "Limit:60,Remain:0",
        "TimeLeft:0",
        "TimeLeft:",
        "TimeLeft:soon",
        "TimeLeft:1.5",
        "timeleft:100",
        "TimeLeft",
        ",,,:::",
    ] {
        assert_eq!(read(&[("x-ratelimit-user", useless)]), None, "{useless:?}");
    }
    assert_eq!(
        read(&[("x-ratelimit-user", "TimeLeft:18446744073709551615")]),
        Some(MAX_RETRY_AFTER)
    );
    // x-acs-retry-after, when usable, is the answer's word; the older headers are a fallback.
    assert_eq!(
        read(&[
            (RETRY_AFTER_HEADER, "400"),
            ("x-ratelimit-user", "TimeLeft:9000")
        ]),
        Some(ms(400))
    );
    assert_eq!(
        read(&[
            (RETRY_AFTER_HEADER, "0"),
            ("x-ratelimit-user", "TimeLeft:9000")
        ]),
        Some(ms(9000))
    );
}
