//! The HTTP plumbing under the SAE client and the credential providers: where an endpoint
//! template points, the signed headers as a `HeaderMap`, a body read with a size cap, and
//! reqwest errors on one line.
//!
//! Knows nothing of SAE's envelope or its operations; may depend on `error` only.

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};

use super::SaeError;
use super::error::invalid;

const REGION_PLACEHOLDER: &str = "{regionId}";
pub(super) const USER_AGENT_VALUE: &str = concat!("sae-controller/", env!("CARGO_PKG_VERSION"));

/// Where a resolved endpoint points: `base` is `scheme://host[:port]`, `host` what goes in `Host`.
pub(super) struct Target {
    pub(super) base: String,
    pub(super) host: String,
}

/// Substitutes the region and checks the endpoint is a bare `http(s)://host[:port]`: a path prefix
/// would not be part of what we sign, and userinfo would put a credential into error messages.
pub(super) fn resolve_endpoint(
    template: &str,
    region_id: &str,
    operation: &'static str,
) -> Result<Target, SaeError> {
    let text = if template.contains(REGION_PLACEHOLDER) {
        // The region becomes part of a host name; anything beyond a region's alphabet could
        // redirect the call elsewhere.
        let valid = !region_id.is_empty()
            && region_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(invalid(
                operation,
                &format!("region id {region_id:?} is not a valid region id"),
            ));
        }
        template.replace(REGION_PLACEHOLDER, region_id)
    } else {
        template.to_string()
    };
    let url = Url::parse(text.trim())
        .map_err(|e| invalid(operation, &format!("endpoint is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Deliberately not echoing the endpoint: it holds a credential.
        return Err(invalid(operation, "endpoint must not contain user info"));
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(
            operation,
            &format!("endpoint {text:?} must be http or https"),
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(invalid(
            operation,
            &format!("endpoint {text:?} has no host"),
        ));
    };
    if !(url.path().is_empty() || url.path() == "/")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid(
            operation,
            &format!("endpoint {text:?} must have no path, query or fragment"),
        ));
    }
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Ok(Target {
        base: format!("{}://{host}", url.scheme()),
        host,
    })
}

pub(super) fn header_map(
    operation: &'static str,
    signed: &[(String, String)],
) -> Result<HeaderMap, SaeError> {
    let mut map = HeaderMap::with_capacity(signed.len() + 1);
    for (name, value) in signed {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(operation, &format!("header name {name:?} is not valid")))?;
        // The value is not echoed: it may be the security token.
        let mut header_value = HeaderValue::from_str(value).map_err(|_| {
            invalid(
                operation,
                &format!("the value of header {name} cannot be sent in HTTP"),
            )
        })?;
        if name == "authorization" || name == "x-acs-security-token" {
            header_value.set_sensitive(true);
        }
        map.insert(header_name, header_value);
    }
    map.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    Ok(map)
}

pub(super) enum BodyProblem {
    TooLarge,
    Failed(reqwest::Error),
}

/// Reads at most `max` bytes; a longer body is abandoned (and its connection dropped) rather than
/// buffered, so a misbehaving peer cannot make us allocate without bound.
pub(super) async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyProblem> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(BodyProblem::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyProblem::Failed)? {
        if body.len() + chunk.len() > max {
            return Err(BodyProblem::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line: reqwest's own message alone ("error sending request")
/// hides the useful part ("Connection refused").
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests;
