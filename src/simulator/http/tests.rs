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
