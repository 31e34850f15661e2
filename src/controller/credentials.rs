//! Whose AccessKey signs an object's SAE calls: the Secret its `spec.credentialsRef` names, read
//! fresh by every reconcile that may call SAE, else the controller's own ([`DefaultCredentials`]).
//! Errors are messages for the object's status and never contain a secret value.
//!
//! Reads Secrets through the API server; knows nothing of the reconcile loop or of SAE calls.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::Context;
use crate::crd::SaeInstanceDeletion;
use crate::sae::{Credentials, RrsaProvider};

/// The controller's own credentials, used for objects without `spec.credentialsRef`. RRSA wins
/// over an AccessKey in the environment (see docs/credentials.md).
#[derive(Clone, Debug, Default)]
pub enum DefaultCredentials {
    #[default]
    None,
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` (/ `_SECURITY_TOKEN`).
    Static(Credentials),
    /// STS credentials from the pod's OIDC token, cached and refreshed.
    Rrsa(RrsaProvider),
    /// The SDKs' chain (environment, RRSA, mounted Secret, credentials file, ECS RAM role), see
    /// [`crate::sae::chain`].
    Chain(crate::sae::CredentialChain),
}

impl From<Option<Credentials>> for DefaultCredentials {
    fn from(credentials: Option<Credentials>) -> Self {
        credentials.map_or(Self::None, Self::Static)
    }
}

impl DefaultCredentials {
    /// Credentials to sign with; errors are messages for the object's status.
    pub async fn get(&self) -> Result<Credentials, String> {
        match self {
            Self::Static(credentials) => Ok(credentials.clone()),
            Self::Rrsa(provider) => provider.credentials().await.map_err(|why| format!("RRSA: {why}")),
            Self::Chain(chain) => chain.credentials().await,
            Self::None => Err("spec.credentialsRef is not set and the controller has no credentials of its own: \
                 set credentialsRef to a Secret with keys accessKeyId and accessKeySecret, or give the controller \
                 RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE) or \
                 ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET"
                .to_string()),
        }
    }
}

impl Context {
    /// Credentials for one object: its `credentialsRef` Secret when set (then the controller's own
    /// RRSA or environment credentials are never used), else those. The Secret is read fresh by
    /// every reconcile that may call SAE, so a rotated or newly created one is used by the next
    /// attempt. Errors are messages for the status (never a value).
    pub(super) async fn credentials_for(
        &self,
        obj: &SaeInstanceDeletion,
    ) -> Result<Credentials, String> {
        let namespace = obj.namespace().unwrap_or_default();
        let Some(reference) = obj.pinned().credentials_ref else {
            return self.default_credentials.get().await;
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        match secrets.get_opt(&reference.name).await {
            Ok(Some(secret)) => credentials_from_secret(&secret, &namespace),
            Ok(None) => Err(format!(
                "Secret {namespace}/{} not found: create it with keys accessKeyId and accessKeySecret \
                 (and securityToken for STS credentials)",
                reference.name
            )),
            Err(kube::Error::Api(status)) if status.code == 403 => Err(format!(
                "the controller may not read Secret {namespace}/{}: grant its ServiceAccount `get` on secrets",
                reference.name
            )),
            Err(err) => Err(format!(
                "cannot read Secret {namespace}/{}: {err}",
                reference.name
            )),
        }
    }
}

/// Reads `accessKeyId`, `accessKeySecret` and the optional `securityToken` from a Secret. Values are
/// trimmed (a trailing newline from `echo` is the common mistake); errors name keys, never values.
pub fn credentials_from_secret(secret: &Secret, namespace: &str) -> Result<Credentials, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let read = |key: &str| -> Result<Option<String>, String> {
        let from_data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone());
        let from_string = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.clone().into_bytes());
        match from_data.or(from_string) {
            None => Ok(None),
            Some(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    format!("Secret {namespace}/{name} key {key} is not UTF-8 text")
                })?;
                let text = text.trim().to_string();
                Ok((!text.is_empty()).then_some(text))
            }
        }
    };
    let missing = |key: &str| {
        format!(
            "Secret {namespace}/{name} has no non-empty key {key}: it needs accessKeyId and accessKeySecret"
        )
    };
    let id = read("accessKeyId")?.ok_or_else(|| missing("accessKeyId"))?;
    let secret_value = read("accessKeySecret")?.ok_or_else(|| missing("accessKeySecret"))?;
    Ok(Credentials::new(id, secret_value, read("securityToken")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("creds".into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        );
        s
    }

    #[test]
    fn secret_with_both_keys_gives_trimmed_credentials() {
        let c = credentials_from_secret(
            &secret(&[("accessKeyId", "AK\n"), ("accessKeySecret", "SK\n")]),
            "ns",
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id(), c.access_key_secret(), c.security_token()),
            ("AK", "SK", None)
        );
        let c = credentials_from_secret(
            &secret(&[
                ("accessKeyId", "STS.x"),
                ("accessKeySecret", "SK"),
                ("securityToken", "tok"),
            ]),
            "ns",
        )
        .unwrap();
        assert_eq!(c.security_token(), Some("tok"));
    }

    #[test]
    fn incomplete_secret_names_the_missing_key_and_never_a_value() {
        let err =
            credentials_from_secret(&secret(&[("accessKeyId", "AK-VALUE")]), "ns").unwrap_err();
        assert!(
            err.contains("ns/creds") && err.contains("accessKeySecret"),
            "{err}"
        );
        assert!(!err.contains("AK-VALUE"), "{err}");
        let err = credentials_from_secret(
            &secret(&[("accessKeyId", "AK"), ("accessKeySecret", "   ")]),
            "ns",
        )
        .unwrap_err();
        assert!(err.contains("accessKeySecret"), "{err}");
        let mut bad = secret(&[("accessKeySecret", "SK-VALUE")]);
        bad.data
            .as_mut()
            .unwrap()
            .insert("accessKeyId".into(), ByteString(vec![0xff, 0xfe]));
        let err = credentials_from_secret(&bad, "ns").unwrap_err();
        assert!(
            err.contains("not UTF-8") && !err.contains("SK-VALUE"),
            "{err}"
        );
    }
}
