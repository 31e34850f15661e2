//! What SAE's gateway checks before an operation runs: the access keys it knows, each request's
//! key, date, signature, security token and nonce ([`Model::authenticate`]), and the per-key quota
//! with its throttle switch ([`Model::admit`]).
//!
//! Uses `auth` for the signature arithmetic and `nonces` for replay detection; nothing of apps or
//! change orders.

use jiff::{SignedDuration, Timestamp};

use super::Model;
use crate::simulator::api_error::{ApiError, throttling_user};
use crate::simulator::auth::{self, Authorization, ReceivedRequest};
use crate::simulator::seed::AccessKeySpec;

/// The quota window: SAE counts calls per minute.
pub const QUOTA_WINDOW: SignedDuration = SignedDuration::from_secs(60);

impl Model {
    /// Switches `Throttling.User` on (`Some(retry hint in milliseconds, if any)`) or off
    /// (`None`) for every call signed with this key, whatever its quota use.
    pub fn set_throttle(&mut self, access_key_id: &str, throttle: Option<Option<u64>>) {
        match throttle {
            Some(retry_after_millis) => {
                self.throttled
                    .insert(access_key_id.to_string(), retry_after_millis);
            }
            None => {
                self.throttled.remove(access_key_id);
            }
        }
    }

    /// Keys switched to throttling, sorted.
    pub fn throttled_access_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.throttled.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn upsert_access_key(&mut self, key: AccessKeySpec) -> Result<(), String> {
        if key.access_key_id.trim().is_empty() || key.access_key_secret.is_empty() {
            return Err("accessKeyId and accessKeySecret must not be empty".into());
        }
        let key = AccessKeySpec {
            security_token: key.security_token.filter(|t| !t.is_empty()),
            ..key
        };
        self.sts_expirations.remove(&key.access_key_id);
        self.access_keys.insert(key.access_key_id.clone(), key);
        Ok(())
    }

    pub fn access_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.access_keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Checks key, date, signature, security token and nonce, in that order.
    pub fn authenticate(
        &mut self,
        auth: &Authorization,
        req: &ReceivedRequest<'_>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let ak = auth.access_key_id();
        let key = self.access_keys.get(ak).ok_or_else(|| {
            ApiError::gateway(
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )
        })?;
        let claimed = auth::request_time(auth, req)?;
        auth::check_skew(claimed, now, self.config.max_skew)?;
        auth::verify_signature(auth, &key.access_key_secret, req)?;
        let sent_token = req.header("x-acs-security-token").unwrap_or("");
        let token_ok = match key.security_token.as_deref() {
            Some(want) => auth::constant_time_eq(want.as_bytes(), sent_token.as_bytes()),
            None => sent_token.is_empty(),
        };
        if !token_ok {
            return Err(ApiError::gateway(
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not belong to this access key.",
            ));
        }
        if self
            .sts_expirations
            .get(ak)
            .is_some_and(|expires| now >= *expires)
        {
            return Err(ApiError::gateway(
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            ));
        }
        if let Some(nonce) = req.header("x-acs-signature-nonce") {
            let window = self.config.max_skew;
            if !self
                .nonces
                .check_and_remember(format!("{ak}\n{nonce}"), now, window)
            {
                return Err(ApiError::gateway(
                    "SignatureNonceUsed",
                    "Specified signature nonce was used already.",
                ));
            }
        }
        Ok(())
    }

    /// Counts the call against the key's quota (sliding 60 s window), or refuses it with
    /// `Throttling.User` and the milliseconds until the oldest counted call leaves the window. A
    /// key switched to throttling ([`Model::set_throttle`]) is refused every call.
    pub fn admit(&mut self, access_key_id: &str, now: Timestamp) -> Result<(), ApiError> {
        if let Some(retry_after_millis) = self.throttled.get(access_key_id) {
            let mut err = throttling_user();
            err.retry_after_millis = *retry_after_millis;
            return Err(err);
        }
        let limit = self
            .config
            .key_requests_per_minute
            .get(access_key_id)
            .copied()
            .unwrap_or(self.config.requests_per_minute) as usize;
        if limit == 0 {
            return Ok(());
        }
        let calls = self.quota.entry(access_key_id.to_string()).or_default();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= QUOTA_WINDOW)
        {
            calls.pop_front();
        }
        if calls.len() >= limit {
            let frees_in = QUOTA_WINDOW - now.duration_since(calls[0]);
            let mut err = throttling_user();
            err.retry_after_millis = Some(frees_in.as_millis().max(1) as u64);
            return Err(err);
        }
        calls.push_back(now);
        Ok(())
    }
}
