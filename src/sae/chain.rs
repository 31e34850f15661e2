//! The controller's own credentials, from the sources the official SDKs' default chain reads, in
//! their order, plus the mounted Secret of `deploy/`:
//!
//! 1. the environment: `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` (/ `ALIBABA_CLOUD_SECURITY_TOKEN`);
//! 2. RRSA: `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`, `ALIBABA_CLOUD_OIDC_TOKEN_FILE`;
//! 3. a mounted Secret directory (`--credentials-dir`), re-read on every use;
//! 4. the credentials file with profiles (`ALIBABA_CLOUD_CREDENTIALS_FILE`, `ALIBABA_CLOUD_PROFILE`),
//!    re-read on every use;
//! 5. the ECS instance RAM role from the metadata service, when opted in
//!    (`ALIBABA_CLOUD_ECS_METADATA=<role>`).
//!
//! The first source that is *present* decides: set variables for 1 and 2 (fixed at start), an
//! `accessKeyId` file for 3, an existing file for 4 (or one named by the variable), the opt-in for
//! 5. A present source that fails is an error; the chain does not fall through to a later source,
//! so a broken Secret never silently turns into the node's role. Which source is used, and the
//! AccessKeyId, is logged when it changes (a rotation shows as one line).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::credentials_file::{Profile, ProfileFile, SecretDir};
use super::ecs_role::EcsRoleProvider;
use super::{Credentials, RrsaProvider};

/// An `ecs_ram_role` profile's role name and the provider built for it.
type ProfileEcs = (Option<String>, EcsRoleProvider);

/// The sources the controller was configured with.
#[derive(Clone, Debug, Default)]
pub struct CredentialChain {
    environment: Option<Credentials>,
    rrsa: Option<RrsaProvider>,
    secret_dir: Option<SecretDir>,
    profile: Option<ProfileFile>,
    ecs: Option<EcsRoleProvider>,
    /// Builds the provider an `ecs_ram_role` profile needs (endpoint, timeout).
    ecs_endpoint: Option<(String, Duration)>,
    /// The ECS provider of an `ecs_ram_role` profile, by role name, so its cache is kept.
    profile_ecs: Arc<Mutex<Option<ProfileEcs>>>,
    /// The last (source, AccessKeyId) handed out, to log changes.
    last: Arc<Mutex<Option<(String, String)>>>,
}

impl CredentialChain {
    pub fn with_environment(mut self, credentials: Option<Credentials>) -> Self {
        self.environment = credentials;
        self
    }

    pub fn with_rrsa(mut self, rrsa: Option<RrsaProvider>) -> Self {
        self.rrsa = rrsa;
        self
    }

    pub fn with_secret_dir(mut self, dir: Option<SecretDir>) -> Self {
        self.secret_dir = dir;
        self
    }

    pub fn with_profile_file(mut self, file: Option<ProfileFile>) -> Self {
        self.profile = file;
        self
    }

    /// The ECS role (opted in), and where an `ecs_ram_role` profile finds the metadata service.
    pub fn with_ecs(
        mut self,
        ecs: Option<EcsRoleProvider>,
        endpoint: impl Into<String>,
        timeout: Duration,
    ) -> Self {
        self.ecs = ecs;
        self.ecs_endpoint = Some((endpoint.into(), timeout));
        self
    }

    /// Whether any source is configured at all.
    pub fn is_empty(&self) -> bool {
        self.environment.is_none()
            && self.rrsa.is_none()
            && self.secret_dir.is_none()
            && self.profile.is_none()
            && self.ecs.is_none()
    }

    /// The configured sources in order, for the start-up log line (no secrets).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.environment {
            parts.push(format!("environment AccessKey {}", c.access_key_id()));
        }
        if let Some(p) = &self.rrsa {
            parts.push(format!(
                "RRSA role {} via {}",
                p.config().role_arn,
                p.config().sts_endpoint
            ));
        }
        if let Some(d) = &self.secret_dir {
            parts.push(format!("Secret files in {}", d.dir().display()));
        }
        if let Some(f) = &self.profile {
            parts.push(format!(
                "credentials file {} profile {}",
                f.path().display(),
                f.profile()
            ));
        }
        if let Some(e) = &self.ecs {
            parts.push(e.describe());
        }
        if parts.is_empty() {
            "<none>".into()
        } else {
            parts.join(", then ")
        }
    }

    /// The RRSA provider, when configured (the binary exchanges once at start).
    pub fn rrsa(&self) -> Option<&RrsaProvider> {
        self.rrsa.as_ref()
    }

    /// Credentials from the first present source. Errors are messages fit for an object's status.
    pub async fn credentials(&self) -> Result<Credentials, String> {
        let (source, credentials) = self.resolve().await?;
        self.note(&source, &credentials);
        Ok(credentials)
    }

    async fn resolve(&self) -> Result<(String, Credentials), String> {
        if let Some(c) = &self.environment {
            return Ok(("environment".into(), c.clone()));
        }
        if let Some(p) = &self.rrsa {
            return p
                .credentials()
                .await
                .map(|c| ("RRSA".into(), c))
                .map_err(|why| format!("RRSA: {why}"));
        }
        if let Some(dir) = &self.secret_dir
            && let Some(c) = dir
                .read()
                .map_err(|why| format!("the controller's credentials Secret: {why}"))?
        {
            return Ok((format!("Secret files in {}", dir.dir().display()), c));
        }
        if let Some(file) = &self.profile
            && let Some(profile) = file.read()?
        {
            let source = format!(
                "credentials file {} profile {}",
                file.path().display(),
                file.profile()
            );
            return match profile {
                Profile::AccessKey(c) => Ok((source, c)),
                Profile::EcsRamRole { role_name } => self
                    .profile_ecs(role_name)?
                    .credentials()
                    .await
                    .map(|c| (format!("{source} (ECS RAM role)"), c))
                    .map_err(|why| format!("{source}: {why}")),
            };
        }
        if let Some(ecs) = &self.ecs {
            return ecs.credentials().await.map(|c| ("ECS RAM role".into(), c));
        }
        Err(self.nothing_found())
    }

    fn profile_ecs(&self, role_name: Option<String>) -> Result<EcsRoleProvider, String> {
        let mut slot = self.profile_ecs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((name, provider)) = slot.as_ref()
            && *name == role_name
        {
            return Ok(provider.clone());
        }
        let (endpoint, timeout) = self.ecs_endpoint.clone().unwrap_or_else(|| {
            (
                super::ecs_role::DEFAULT_ENDPOINT.into(),
                Duration::from_secs(5),
            )
        });
        let provider = EcsRoleProvider::new(&endpoint, role_name.clone(), timeout)?;
        *slot = Some((role_name, provider.clone()));
        Ok(provider)
    }

    fn nothing_found(&self) -> String {
        let mut places = Vec::new();
        if let Some(dir) = &self.secret_dir {
            places.push(format!(
                "the Secret mounted at {} has no accessKeyId (create the Secret sae-controller-credentials with accessKeyId and accessKeySecret; the kubelet puts it there within a minute)",
                dir.dir().display()
            ));
        }
        if let Some(file) = &self.profile {
            places.push(format!("there is no {}", file.path().display()));
        }
        format!(
            "spec.credentialsRef is not set and the controller has no credentials of its own: {}; \
             or set credentialsRef to a Secret with keys accessKeyId and accessKeySecret",
            if places.is_empty() {
                "none is configured".to_owned()
            } else {
                places.join(", ")
            }
        )
    }

    /// Logs the source and AccessKeyId when either changed since the last call.
    fn note(&self, source: &str, credentials: &Credentials) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = (source.to_owned(), credentials.access_key_id().to_owned());
        if last.as_ref() != Some(&now) {
            match last.as_ref() {
                None => {
                    tracing::info!(source, access_key_id = %now.1, "using the controller's default credentials")
                }
                Some((old_source, old_id)) => tracing::info!(
                    source,
                    access_key_id = %now.1,
                    previous_source = %old_source,
                    previous_access_key_id = %old_id,
                    "the controller's default credentials changed"
                ),
            }
            *last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> Credentials {
        Credentials::new(id, format!("{id}-secret"), None)
    }

    fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
        for (name, value) in files {
            std::fs::write(dir.join(name), value).unwrap();
        }
    }

    #[tokio::test]
    async fn the_first_present_source_wins_in_the_sdks_order() {
        let secret = tempfile::tempdir().unwrap();
        let profile_dir = tempfile::tempdir().unwrap();
        let profile_path = profile_dir.path().join("credentials");
        std::fs::write(
            &profile_path,
            "[default]\ntype = access_key\naccess_key_id = LTAIfile\naccess_key_secret = f\n",
        )
        .unwrap();
        let chain = |env: Option<Credentials>| {
            CredentialChain::default()
                .with_environment(env)
                .with_secret_dir(Some(SecretDir::new(secret.path())))
                .with_profile_file(Some(ProfileFile::new(&profile_path, "default", true)))
        };
        let id = |c: Result<Credentials, String>| c.unwrap().access_key_id().to_owned();
        assert_eq!(
            id(chain(Some(key("LTAIenv"))).credentials().await),
            "LTAIenv"
        );
        // The Secret volume is empty: the file is next.
        assert_eq!(id(chain(None).credentials().await), "LTAIfile");
        // The Secret appears (the kubelet fills the volume): it wins from the next call on.
        let c = chain(None);
        write(
            secret.path(),
            &[("accessKeyId", "LTAIsecret"), ("accessKeySecret", "s")],
        );
        assert_eq!(id(c.credentials().await), "LTAIsecret");
        // A present but broken Secret is an error, not a silent fall-through to the file.
        std::fs::remove_file(secret.path().join("accessKeySecret")).unwrap();
        let err = c.credentials().await.unwrap_err();
        assert!(err.contains("no accessKeySecret"), "{err}");
    }

    #[tokio::test]
    async fn nothing_present_says_where_it_looked() {
        let secret = tempfile::tempdir().unwrap();
        let chain = CredentialChain::default()
            .with_secret_dir(Some(SecretDir::new(secret.path())))
            .with_profile_file(Some(ProfileFile::new(
                secret.path().join("nope"),
                "default",
                false,
            )));
        assert!(!chain.is_empty());
        let err = chain.credentials().await.unwrap_err();
        assert!(
            err.contains("has no accessKeyId")
                && err.contains("there is no")
                && err.contains("credentialsRef"),
            "{err}"
        );
        assert!(CredentialChain::default().is_empty());
        assert_eq!(CredentialChain::default().describe(), "<none>");
    }
}
