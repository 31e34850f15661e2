//! Alibaba Cloud credentials: an AccessKey pair, optionally with an STS security token.
//!
//! The secret and the token are what an attacker wants, so this type never prints them: `Debug` and
//! `Display` show the AccessKeyId only. Reading the secret takes an explicit call.

use std::fmt;

/// An AccessKey pair, optionally with an STS security token (then the key id is a temporary `STS.` one).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: security_token.filter(|t| !t.is_empty()),
        }
    }

    /// Reads `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and the optional
    /// `ALIBABA_CLOUD_SECURITY_TOKEN`, the convention of Alibaba's credential libraries.
    /// `None` unless both key id and secret are set and non-empty.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Some(Self::new(
            var("ALIBABA_CLOUD_ACCESS_KEY_ID")?,
            var("ALIBABA_CLOUD_ACCESS_KEY_SECRET")?,
            var("ALIBABA_CLOUD_SECURITY_TOKEN"),
        ))
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The signing key. Only the signer should need this.
    pub fn access_key_secret(&self) -> &str {
        &self.access_key_secret
    }

    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_access_key(
            f,
            "Credentials",
            &self.access_key_id,
            self.security_token.is_some(),
        )
    }
}

/// The one `Debug` shape for anything holding an AccessKey: the id, and placeholders for the secret
/// and (when present) the token.
pub(crate) fn debug_access_key(
    f: &mut fmt::Formatter<'_>,
    type_name: &str,
    access_key_id: &str,
    has_token: bool,
) -> fmt::Result {
    f.debug_struct(type_name)
        .field("access_key_id", &access_key_id)
        .field("access_key_secret", &"<redacted>")
        .field("security_token", &has_token.then_some("<redacted>"))
        .finish()
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessKeyId {}", self.access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_secret_or_token() {
        let c = Credentials::new("LTAIkeyid", "s3cr3t-value", Some("tok3n-value".into()));
        for shown in [format!("{c:?}"), format!("{c:#?}"), c.to_string()] {
            assert!(shown.contains("LTAIkeyid"), "{shown}");
            assert!(!shown.contains("s3cr3t-value"), "secret leaked: {shown}");
            assert!(!shown.contains("tok3n-value"), "token leaked: {shown}");
        }
    }

    #[test]
    fn empty_token_counts_as_none() {
        assert_eq!(
            Credentials::new("a", "b", Some(String::new())).security_token(),
            None
        );
    }
}
