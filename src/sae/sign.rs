//! Request signing for Alibaba Cloud ROA APIs, as pure functions.
//!
//! Two schemes are implemented, both as SAE's gateway checks them:
//! - ROA v1 (`acs AK:SIG`, HMAC-SHA1 over a newline-joined StringToSign), what the SAE docs describe;
//! - V3 (`ACS3-HMAC-SHA256`), what the official SDKs send by default.
//!
//! Nothing here reads a clock or a random source: the date and the nonce are inputs, so the same
//! functions serve the client (signing) and the simulator (verifying by recomputing).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::Credentials;

/// The signature scheme the client uses. Both are accepted by SAE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureVersion {
    /// ROA v1: `Authorization: acs <AccessKeyId>:<Base64(HMAC-SHA1)>`.
    #[default]
    V1,
    /// V3: `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=<hex>`.
    V3,
}

impl FromStr for SignatureVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "v1" => Ok(Self::V1),
            "v3" => Ok(Self::V3),
            other => Err(format!(
                "unknown signature version {other:?}: expected v1 or v3"
            )),
        }
    }
}

impl fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V3 => "v3",
        })
    }
}

/// `Authorization` scheme prefix of V3.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// SHA-256 of the empty body, the `x-acs-content-sha256` of every bodiless SAE call.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (space is `%20`).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query name or value as Alibaba's gateways expect (`a,b` becomes `a%2Cb`).
pub fn encode_rfc3986(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// Encodes a path segment by segment, keeping the `/` separators.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_rfc3986)
        .collect::<Vec<_>>()
        .join("/")
}

/// The query as it goes on the wire: sorted by name, names and values RFC 3986-encoded, `k=` for empty.
/// Sorting makes the wire form equal to V3's canonical query string.
pub fn encode_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode_rfc3986(k), encode_rfc3986(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Base64 of HMAC-SHA1: the ROA v1 signature of a StringToSign.
pub fn roa_v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The ROA v1 StringToSign. Query values are RAW here (the wire form is percent-encoded); a
/// parameter whose value is empty or whitespace appears as its name alone.
pub fn roa_v1_string_to_sign(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
) -> String {
    let mut out = String::new();
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    for name in ["accept", "content-md5", "content-type", "date"] {
        out.push_str(header(headers, name));
        out.push('\n');
    }
    let mut acs: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| k.starts_with("x-acs-"))
        .collect();
    acs.sort();
    for (k, v) in acs {
        out.push_str(&k);
        out.push(':');
        out.push_str(v);
        out.push('\n');
    }
    out.push_str(path);
    if !query.is_empty() {
        let mut params: Vec<&(String, String)> = query.iter().collect();
        params.sort();
        let joined: Vec<String> = params
            .iter()
            .map(|(k, v)| {
                if v.trim().is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        out.push('?');
        out.push_str(&joined.join("&"));
    }
    out
}

/// Hex SHA-256, as V3 uses for payloads and canonical requests.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The V3 CanonicalRequest over exactly the given headers (pass only the ones to sign; the
/// verifier passes those named in SignedHeaders). Returns (CanonicalRequest, SignedHeaders).
/// Headers with the same lower-cased name are joined with `,` in the order given.
pub fn v3_canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    hashed_payload: &str,
) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        match merged.iter_mut().find(|(name, _)| *name == k) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(v.trim());
            }
            None => merged.push((k, v.trim().to_string())),
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical_headers: String = merged.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        encode_path(path),
        encode_query(query),
        canonical_headers,
        signed_headers,
        hashed_payload
    );
    (canonical, signed_headers)
}

/// `ACS3-HMAC-SHA256\n` + hex(SHA-256(CanonicalRequest)).
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{V3_ALGORITHM}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Hex HMAC-SHA256 of the StringToSign: the V3 signature.
pub fn v3_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The full V3 `Authorization` value for the given (already filtered) headers.
pub fn v3_authorization(
    access_key_id: &str,
    secret: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    signed: &[(String, String)],
    hashed_payload: &str,
) -> String {
    let (canonical, signed_headers) =
        v3_canonical_request(method, path, query, signed, hashed_payload);
    let signature = v3_signature(secret, &v3_string_to_sign(&canonical));
    format!(
        "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// One SAE call to sign.
#[derive(Debug, Clone)]
pub struct SignInput<'a> {
    pub method: &'a str,
    /// `host[:port]` exactly as sent in the Host header.
    pub host: &'a str,
    pub path: &'a str,
    /// Raw (not encoded) query parameters.
    pub query: &'a [(String, String)],
    /// The API name, e.g. `DeleteInstances`.
    pub action: &'a str,
    /// The API version, `2019-05-06` for SAE.
    pub api_version: &'a str,
    pub body: &'a [u8],
    pub now: Timestamp,
    /// Unique per request; the gateway refuses a nonce it has seen (`SignatureNonceUsed`).
    pub nonce: &'a str,
}

/// RFC 1123 date in GMT, the `Date` header of ROA v1 (`Mon, 26 Aug 2019 08:55:56 GMT`).
pub fn http_date(now: Timestamp) -> String {
    now.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// V3's `x-acs-date`, ISO 8601 in UTC with seconds (`2023-10-26T10:22:32Z`).
pub fn iso_date(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Every header to send (lower-case names), `authorization` included. The caller adds
/// `user-agent`, which neither scheme signs.
pub fn signed_headers(
    version: SignatureVersion,
    creds: &Credentials,
    req: &SignInput<'_>,
) -> Vec<(String, String)> {
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    match version {
        SignatureVersion::V1 => {
            let mut headers = vec![
                h("date", &http_date(req.now)),
                h("host", req.host),
                h("accept", "application/json"),
                h("x-acs-signature-nonce", req.nonce),
                h("x-acs-signature-method", "HMAC-SHA1"),
                h("x-acs-signature-version", "1.0"),
                h("x-acs-version", req.api_version),
                h("x-acs-action", req.action),
            ];
            if let Some(token) = creds.security_token() {
                headers.push(h("x-acs-accesskey-id", creds.access_key_id()));
                headers.push(h("x-acs-security-token", token));
            }
            let sts = roa_v1_string_to_sign(req.method, req.path, req.query, &headers);
            let signature = roa_v1_signature(creds.access_key_secret(), &sts);
            headers.push(h(
                "authorization",
                &format!("acs {}:{signature}", creds.access_key_id()),
            ));
            headers
        }
        SignatureVersion::V3 => {
            let payload = sha256_hex(req.body);
            let mut headers = vec![
                h("host", req.host),
                h("x-acs-action", req.action),
                h("x-acs-version", req.api_version),
                h("x-acs-date", &iso_date(req.now)),
                h("x-acs-signature-nonce", req.nonce),
                h("x-acs-content-sha256", &payload),
            ];
            if let Some(token) = creds.security_token() {
                headers.push(h("x-acs-security-token", token));
            }
            let auth = v3_authorization(
                creds.access_key_id(),
                creds.access_key_secret(),
                req.method,
                req.path,
                req.query,
                &headers,
                &payload,
            );
            headers.push(h("authorization", &auth));
            headers.push(h("accept", "application/json"));
            headers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn roa_v1_hmac_vectors_from_official_sdks() {
        let cases = [
            (
                "R1",
                "GET\n\n\n\n\n",
                "secret",
                "XGXDWA78AEvx/wmfxKoVCq/afWw=",
            ),
            (
                "R4",
                "stringtosign",
                "secret",
                "OmuTAr79tpI6CRoAdmzKRq5lHs0=",
            ),
            ("R5", "source", "secret", "Jv4yi8SobFhg5t1C7nWLbhBSFZQ="),
            (
                "R6",
                "中文unicode",
                "secret",
                "szlfHs3WVaO/HgY3Cg7/uyXDaRw=",
            ),
        ];
        for (name, sts, secret, want) in cases {
            assert_eq!(roa_v1_signature(secret, sts), want, "vector {name}");
        }
    }

    #[test]
    fn roa_v1_r1_empty_get_string_to_sign() {
        // R1's StringToSign is a bare GET with no headers; our builder yields it for path "" and no query.
        assert_eq!(roa_v1_string_to_sign("GET", "", &[], &[]), "GET\n\n\n\n\n");
    }

    #[test]
    fn roa_v1_r8_headers_and_query_canonicalisation() {
        let both = pairs(&[
            ("x-acs-security-token", "test"),
            ("x-acs-security-test", "test"),
            ("accept", "accept"),
            ("content-md5", "content-md5"),
            ("content-type", "content-type"),
            ("date", "date"),
            ("emptyTest", ""),
            ("spaceTest", "   "),
        ]);
        let sts = roa_v1_string_to_sign("GET", "/test", &both, &both);
        assert_eq!(
            sts,
            "GET\naccept\ncontent-md5\ncontent-type\ndate\nx-acs-security-test:test\nx-acs-security-token:test\n/test?accept=accept&content-md5=content-md5&content-type=content-type&date=date&emptyTest&spaceTest&x-acs-security-test=test&x-acs-security-token=test"
        );
        assert_eq!(
            roa_v1_signature("test", &sts),
            "4dyyuoOuu7iED5+vhBNcmflgq24="
        );
    }

    #[test]
    fn roa_v1_r9_python_core_composer() {
        let headers = pairs(&[
            ("Accept", "application/octet-stream"),
            ("Date", "2018-12-04T03:55:31Z"),
            ("x-acs-signature-method", "HMAC-SHA1"),
            ("x-acs-signature-version", "1.0"),
        ]);
        let sts = roa_v1_string_to_sign("GET", "/", &[], &headers);
        assert_eq!(
            sts,
            "GET\napplication/octet-stream\n\n\n2018-12-04T03:55:31Z\nx-acs-signature-method:HMAC-SHA1\nx-acs-signature-version:1.0\n/"
        );
        assert_eq!(
            roa_v1_signature("access_key_secret", &sts),
            "HKCpm41tJg6b3EYdtGMbNuwALZU="
        );
    }

    #[test]
    fn roa_v1_r10_go_composer() {
        let headers = pairs(&[
            ("Accept", "application/json"),
            ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
            ("Content-Type", "application/octet-stream"),
            ("Date", "mock date"),
            ("x-acs-credentials-provider", "static_ak"),
            ("x-acs-signature-method", "HMAC-SHA1"),
            ("x-acs-signature-version", "1.0"),
            ("x-acs-version", ""),
        ]);
        let sts = roa_v1_string_to_sign("GET", "/users/:user", &[], &headers);
        assert_eq!(
            sts,
            "GET\napplication/json\n1B2M2Y8AsgTpgAmY7PhCfg==\napplication/octet-stream\nmock date\nx-acs-credentials-provider:static_ak\nx-acs-signature-method:HMAC-SHA1\nx-acs-signature-version:1.0\nx-acs-version:\n/users/:user"
        );
        assert_eq!(
            roa_v1_signature("accessKeySecret", &sts),
            "PPPSwv0LPoLvg6rGxp7dd4uPESo="
        );
    }

    #[test]
    fn v3_v1_official_documentation_vector() {
        let query = pairs(&[
            (
                "ImageId",
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
            ),
            ("RegionId", "cn-shanghai"),
        ]);
        let headers = pairs(&[
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            ("x-acs-content-sha256", EMPTY_SHA256),
        ]);
        let (canonical, signed) = v3_canonical_request("POST", "/", &query, &headers, EMPTY_SHA256);
        assert_eq!(
            signed,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            v3_signature("YourAccessKeySecret", &v3_string_to_sign(&canonical)),
            "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    #[test]
    fn v3_v2_openapi_util_vector_joins_duplicate_headers() {
        let query = pairs(&[("test", "ok"), ("empty", "")]);
        let headers = pairs(&[("x-acs-test", "http"), ("x-acs-TEST", "https")]);
        let auth = v3_authorization(
            "acesskey",
            "secret",
            "GET",
            "/",
            &query,
            &headers,
            "55e12e91650d2fec56ec74e1d3e4ddbfce2ef3a65890c2a19ecf88a307e76a23",
        );
        assert_eq!(
            auth,
            "ACS3-HMAC-SHA256 Credential=acesskey,SignedHeaders=x-acs-test,Signature=d16b30a7699ae9e43875b13195b2f81bcc3ed10c14a9b5eb780e51619aa50be1"
        );
    }

    #[test]
    fn delete_instances_comma_is_raw_when_signed_and_encoded_on_the_wire() {
        let query = pairs(&[("AppId", "app-1"), ("InstanceIds", "i-a,i-b")]);
        let sts = roa_v1_string_to_sign("PUT", "/pop/v1/sam/app/deleteInstances", &query, &[]);
        assert!(
            sts.ends_with("/pop/v1/sam/app/deleteInstances?AppId=app-1&InstanceIds=i-a,i-b"),
            "{sts}"
        );
        assert_eq!(encode_query(&query), "AppId=app-1&InstanceIds=i-a%2Ci-b");
        assert_eq!(encode_rfc3986("a b*~"), "a%20b%2A~");
    }

    #[test]
    fn signed_headers_cover_sts_token_and_dates() {
        let now: Timestamp = "2019-08-26T08:55:56Z".parse().unwrap();
        let creds = Credentials::new("STS.id", "sk", Some("tok".into()));
        let query = pairs(&[("AppId", "a")]);
        let input = SignInput {
            method: "GET",
            host: "sae.cn-hangzhou.aliyuncs.com",
            path: "/pop/v1/sam/app/describeApplicationGroups",
            query: &query,
            action: "DescribeApplicationGroups",
            api_version: "2019-05-06",
            body: b"",
            now,
            nonce: "n1",
        };
        let v1 = signed_headers(SignatureVersion::V1, &creds, &input);
        assert!(v1.contains(&("date".into(), "Mon, 26 Aug 2019 08:55:56 GMT".into())));
        assert!(v1.contains(&("x-acs-security-token".into(), "tok".into())));
        let auth = &v1.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.starts_with("acs STS.id:"), "{auth}");

        let v3 = signed_headers(SignatureVersion::V3, &creds, &input);
        assert!(v3.contains(&("x-acs-date".into(), "2019-08-26T08:55:56Z".into())));
        assert!(v3.contains(&("x-acs-content-sha256".into(), EMPTY_SHA256.into())));
        let auth = &v3.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(auth.contains("SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,"), "{auth}");
    }

    #[test]
    fn signature_version_parses() {
        assert_eq!(
            "V3".parse::<SignatureVersion>().unwrap(),
            SignatureVersion::V3
        );
        assert!("v2".parse::<SignatureVersion>().is_err());
    }
}
