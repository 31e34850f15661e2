//! The simulated STS: the OIDC tokens it accepts and `AssumeRoleWithOIDC`, which turns one into a
//! fresh `STS.` access key that the gateway ([`Model::authenticate`]) then accepts until it
//! expires.
//!
//! Knows nothing of apps or change orders.

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::Model;
use crate::simulator::api_error::ApiError;
use crate::simulator::auth;
use crate::simulator::routing::Params;
use crate::simulator::seed::{
    AccessKeySpec, OidcTokenSpec, STS_DEFAULT_DURATION_SECONDS, STS_KEY_RETENTION,
    STS_MAX_DURATION_SECONDS, STS_MIN_DURATION_SECONDS, StsIssued,
};

impl Model {
    /// Adds an OIDC token STS accepts, or replaces the role restriction of a known one.
    pub fn register_oidc_token(&mut self, spec: OidcTokenSpec) -> Result<(), String> {
        if spec.token.trim().is_empty() {
            return Err("token must not be empty".into());
        }
        let spec = OidcTokenSpec {
            token: spec.token.trim().to_string(),
            role_arn: spec.role_arn.filter(|r| !r.trim().is_empty()),
        };
        self.oidc_tokens.retain(|t| t.token != spec.token);
        self.oidc_tokens.push(spec);
        Ok(())
    }

    /// STS `AssumeRoleWithOIDC`: checks the parameters and the token, then issues a fresh STS key
    /// (`STS.` id, secret, security token) that SAE calls may sign with until `Expiration`.
    /// The secret and token carry recognisable prefixes (`simSTSsecret`, `CAISsimSTStoken`) so tests
    /// can search logs for them.
    pub fn assume_role_with_oidc(
        &mut self,
        params: &[(String, String)],
        now: Timestamp,
    ) -> Result<StsIssued, ApiError> {
        let params = Params(params);
        let missing = |name: &str| {
            ApiError::gateway(
                "MissingParameter",
                format!(
                    "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
                ),
            )
        };
        let role_arn = params.get("RoleArn").ok_or_else(|| missing("RoleArn"))?;
        params
            .get("OIDCProviderArn")
            .ok_or_else(|| missing("OIDCProviderArn"))?;
        let token = params
            .get("OIDCToken")
            .ok_or_else(|| missing("OIDCToken"))?;
        let duration = match params.get("DurationSeconds") {
            None => STS_DEFAULT_DURATION_SECONDS,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|d| (STS_MIN_DURATION_SECONDS..=STS_MAX_DURATION_SECONDS).contains(d))
                .ok_or_else(|| {
                    ApiError::gateway(
                        "InvalidParameter.DurationSeconds",
                        format!(
                            "DurationSeconds must be an integer from {STS_MIN_DURATION_SECONDS} to {STS_MAX_DURATION_SECONDS}, got {raw:?}."
                        ),
                    )
                })?,
        };
        let session = params
            .get("RoleSessionName")
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "session-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                )
            });
        // Compared in constant time: the simulator checks credentials the way a gateway should.
        let known = self
            .oidc_tokens
            .iter()
            .find(|t| auth::constant_time_eq(t.token.as_bytes(), token.as_bytes()))
            .ok_or_else(|| {
                ApiError::gateway(
                    "InvalidParameter.OIDCToken",
                    "The OIDC token is invalid or was not registered with the simulator.",
                )
            })?;
        if let Some(allowed) = known.role_arn.as_deref()
            && allowed != role_arn
        {
            return Err(ApiError::gateway(
                "AuthenticationFail.NoPermission",
                format!("The OIDC token may not assume the role {role_arn}."),
            ));
        }

        // Forget long-expired STS keys so a long run does not accumulate them.
        let stale: Vec<String> = self
            .sts_expirations
            .iter()
            .filter(|(_, expires)| now.duration_since(**expires) > STS_KEY_RETENTION)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.sts_expirations.remove(&id);
            self.access_keys.remove(&id);
        }

        let access_key_id = format!("STS.{}", uuid::Uuid::new_v4().simple());
        let secret = format!("simSTSsecret{}", uuid::Uuid::new_v4().simple());
        let security_token = format!(
            "CAISsimSTStoken{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let expiration = now
            .saturating_add(SignedDuration::from_secs(duration.into()))
            .unwrap_or(now);
        self.access_keys.insert(
            access_key_id.clone(),
            AccessKeySpec {
                access_key_id: access_key_id.clone(),
                access_key_secret: secret.clone(),
                security_token: Some(security_token.clone()),
            },
        );
        self.sts_expirations
            .insert(access_key_id.clone(), expiration);
        let body = json!({
            "AssumedRoleUser": {
                "AssumedRoleId": format!("3{}:{session}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
                "Arn": format!("{role_arn}/{session}"),
            },
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret,
                "SecurityToken": security_token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
        });
        Ok(StsIssued {
            access_key_id,
            body,
        })
    }
}
