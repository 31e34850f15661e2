//! Signature verification as SAE's gateway does it: recompute the signature from what was received
//! and compare. Pure functions; the caller supplies the secret and the current time.
//!
//! Depends on `api_error` and on `crate::sae::sign` for the signing arithmetic the client shares
//! (an independent check of it is `tests/sdk_compat.rs`, against Alibaba's own SDK); no model
//! state, no I/O, and nothing of the controller's reading of SAE's answers.

use jiff::{SignedDuration, Timestamp};

use super::api_error::ApiError;
use crate::sae::SignatureVersion;
use crate::sae::sign;

/// A request as it arrived, in the shapes the signers need.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedRequest<'a> {
    pub method: &'a str,
    /// Percent-decoded path.
    pub path: &'a str,
    /// Percent-decoded query pairs, in wire order.
    pub query: &'a [(String, String)],
    /// Header names lower-cased, in wire order (repeated names kept).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl ReceivedRequest<'_> {
    /// The first value of a header, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the `Authorization` header claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    V1 {
        access_key_id: String,
        signature: String,
    },
    V3 {
        access_key_id: String,
        /// Lower-cased names, as listed.
        signed_headers: Vec<String>,
        signature: String,
    },
}

impl Authorization {
    pub fn access_key_id(&self) -> &str {
        match self {
            Authorization::V1 { access_key_id, .. } | Authorization::V3 { access_key_id, .. } => {
                access_key_id
            }
        }
    }

    pub fn version(&self) -> SignatureVersion {
        match self {
            Authorization::V1 { .. } => SignatureVersion::V1,
            Authorization::V3 { .. } => SignatureVersion::V3,
        }
    }
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::gateway("IncompleteSignature", message)
}

/// Parses `acs AK:SIG` (ROA v1) or `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..` (V3).
pub fn parse_authorization(value: Option<&str>) -> Result<Authorization, ApiError> {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err(ApiError::gateway(
            "InvalidParameter.NotEmpty",
            "The Authorization header is required.",
        ));
    }
    if let Some(rest) = value.strip_prefix("acs ") {
        let (ak, signature) = rest
            .trim()
            .split_once(':')
            .ok_or_else(|| incomplete("Authorization must be 'acs AccessKeyId:Signature'."))?;
        if ak.is_empty() || signature.is_empty() {
            return Err(incomplete(
                "Authorization must be 'acs AccessKeyId:Signature'.",
            ));
        }
        return Ok(Authorization::V1 {
            access_key_id: ak.to_string(),
            signature: signature.to_string(),
        });
    }
    if let Some(rest) = value.strip_prefix(sign::V3_ALGORITHM) {
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (key, val) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| incomplete("Authorization fields must be 'Name=value'."))?;
            let slot = match key {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                other => {
                    return Err(incomplete(format!(
                        "Unknown Authorization field {other:?}."
                    )));
                }
            };
            if slot.replace(val.to_string()).is_some() {
                return Err(incomplete(format!(
                    "Authorization field {key} appears twice."
                )));
            }
        }
        let missing = |name: &str| incomplete(format!("Authorization lacks {name}."));
        let access_key_id = credential
            .filter(|c| !c.is_empty())
            .ok_or_else(|| missing("Credential"))?;
        let signed = signed
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("SignedHeaders"))?;
        let signature = signature
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("Signature"))?;
        let signed_headers = signed
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        return Ok(Authorization::V3 {
            access_key_id,
            signed_headers,
            signature,
        });
    }
    Err(incomplete(
        "Unsupported Authorization scheme; expected 'acs' or 'ACS3-HMAC-SHA256'.",
    ))
}

/// The signing time the request claims: `Date` (RFC 1123) for v1, `x-acs-date` (ISO 8601) for V3.
pub fn request_time(
    auth: &Authorization,
    req: &ReceivedRequest<'_>,
) -> Result<Timestamp, ApiError> {
    let format_error = |what: &str| {
        ApiError::gateway(
            "InvalidTimeStamp.Format",
            format!("The {what} header is missing or not a valid time."),
        )
    };
    match auth {
        Authorization::V1 { .. } => {
            let raw = req.header("date").ok_or_else(|| format_error("Date"))?;
            jiff::fmt::rfc2822::DateTimeParser::new()
                .parse_timestamp(raw.trim())
                .map_err(|_| format_error("Date"))
        }
        Authorization::V3 { .. } => {
            let raw = req
                .header("x-acs-date")
                .ok_or_else(|| format_error("x-acs-date"))?;
            raw.trim()
                .parse::<Timestamp>()
                .map_err(|_| format_error("x-acs-date"))
        }
    }
}

/// `InvalidTimeStamp.Expired` when the claimed time is further than `max_skew` from `now`, either way.
pub fn check_skew(
    claimed: Timestamp,
    now: Timestamp,
    max_skew: SignedDuration,
) -> Result<(), ApiError> {
    if now.duration_since(claimed).abs() > max_skew {
        return Err(ApiError::gateway(
            "InvalidTimeStamp.Expired",
            format!(
                "Specified time stamp or date value is expired (server time {now}, request time {claimed})."
            ),
        ));
    }
    Ok(())
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mismatch(detail: &str) -> ApiError {
    ApiError::gateway(
        "SignatureDoesNotMatch",
        format!("Specified signature does not match our calculation ({detail})."),
    )
}

/// Recomputes the signature with `secret` and compares it with the claimed one.
pub fn verify_signature(
    auth: &Authorization,
    secret: &str,
    req: &ReceivedRequest<'_>,
) -> Result<(), ApiError> {
    match auth {
        Authorization::V1 { signature, .. } => {
            let string_to_sign =
                sign::roa_v1_string_to_sign(req.method, req.path, req.query, req.headers);
            let expected = sign::roa_v1_signature(secret, &string_to_sign);
            if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                Ok(())
            } else {
                Err(mismatch("ROA HMAC-SHA1"))
            }
        }
        Authorization::V3 {
            signed_headers,
            signature,
            ..
        } => {
            // Every header we rely on (time, nonce, token) must be covered by the signature,
            // or it could be swapped on a captured request.
            for (name, _) in req.headers {
                if (name == "host" || name.starts_with("x-acs-")) && !signed_headers.contains(name)
                {
                    return Err(incomplete(format!(
                        "Header {name} must be listed in SignedHeaders."
                    )));
                }
            }
            let mut chosen: Vec<(String, String)> = Vec::new();
            for name in signed_headers {
                let before = chosen.len();
                chosen.extend(req.headers.iter().filter(|(k, _)| k == name).cloned());
                if chosen.len() == before {
                    return Err(mismatch(&format!("signed header {name} was not sent")));
                }
            }
            let payload_hash = sign::sha256_hex(req.body);
            let claimed_hash = req.header("x-acs-content-sha256").unwrap_or("");
            if !claimed_hash.trim().eq_ignore_ascii_case(&payload_hash) {
                return Err(mismatch(
                    "x-acs-content-sha256 is not the SHA-256 of the body",
                ));
            }
            let (canonical, _) =
                sign::v3_canonical_request(req.method, req.path, req.query, &chosen, &payload_hash);
            let expected = sign::v3_signature(secret, &sign::v3_string_to_sign(&canonical));
            if constant_time_eq(
                expected.as_bytes(),
                signature.to_ascii_lowercase().as_bytes(),
            ) {
                Ok(())
            } else {
                Err(mismatch("ACS3-HMAC-SHA256"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_refuses_garbage() {
        assert_eq!(
            parse_authorization(Some("acs AK:c2ln")).unwrap(),
            Authorization::V1 {
                access_key_id: "AK".into(),
                signature: "c2ln".into()
            }
        );
        let v3 = parse_authorization(Some(
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;X-Acs-Date,Signature=ab",
        ))
        .unwrap();
        assert_eq!(
            v3,
            Authorization::V3 {
                access_key_id: "AK".into(),
                signed_headers: vec!["host".into(), "x-acs-date".into()],
                signature: "ab".into()
            }
        );
        assert_eq!(
            parse_authorization(None).unwrap_err().code,
            "InvalidParameter.NotEmpty"
        );
        for bad in [
            "acs nocolon",
            "acs :sig",
            "Bearer x",
            "ACS3-HMAC-SHA256 Credential=AK",
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host,Signature=a,Signature=b",
            "ACS3-HMAC-SHA256 junk",
            "\u{0}\u{1}",
        ] {
            assert_eq!(
                parse_authorization(Some(bad)).unwrap_err().code,
                "IncompleteSignature",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn skew_is_checked_both_ways() {
        let now: Timestamp = "2024-01-01T12:00:00Z".parse().unwrap();
        let max = SignedDuration::from_mins(15);
        assert!(check_skew(now - SignedDuration::from_mins(15), now, max).is_ok());
        assert!(check_skew(now + SignedDuration::from_mins(14), now, max).is_ok());
        let late = check_skew(now - SignedDuration::from_secs(15 * 60 + 1), now, max).unwrap_err();
        assert_eq!(late.code, "InvalidTimeStamp.Expired");
        assert!(check_skew(now + SignedDuration::from_mins(16), now, max).is_err());
    }

    #[test]
    fn dates_parse_per_scheme() {
        let headers = vec![
            (
                "date".to_string(),
                "Mon, 26 Aug 2019 08:55:56 GMT".to_string(),
            ),
            ("x-acs-date".to_string(), "2019-08-26T08:55:57Z".to_string()),
        ];
        let req = ReceivedRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"",
        };
        let v1 = Authorization::V1 {
            access_key_id: "a".into(),
            signature: "s".into(),
        };
        let v3 = Authorization::V3 {
            access_key_id: "a".into(),
            signed_headers: vec![],
            signature: "s".into(),
        };
        assert_eq!(
            request_time(&v1, &req).unwrap().to_string(),
            "2019-08-26T08:55:56Z"
        );
        assert_eq!(
            request_time(&v3, &req).unwrap().to_string(),
            "2019-08-26T08:55:57Z"
        );
        let bad = vec![("date".to_string(), "yesterday".to_string())];
        let req = ReceivedRequest {
            headers: &bad,
            ..req
        };
        assert_eq!(
            request_time(&v1, &req).unwrap_err().code,
            "InvalidTimeStamp.Format"
        );
        assert_eq!(
            request_time(&v3, &req).unwrap_err().code,
            "InvalidTimeStamp.Format"
        );
    }
}
