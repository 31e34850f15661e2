//! What sae-controller knows about SAE's error codes, in one table: for each code (or family of
//! codes sharing a prefix), whether SAE can have executed the call ([`ErrorClass`]), what kind of
//! refusal it is ([`Refusal`], which the CRD names as a status reason) and what to tell the user.
//!
//! A new code goes here and nowhere else: [`classify`](super::error::classify), the decisions'
//! reasons and advice, and the table in `docs/sae-codes.md` (kept equal to [`CODES`] by a test)
//! all read it. The HTTP status can override the class (5xx is always Ambiguous; any other 429
//! is Retryable, whatever its code); that rule lives in `classify`. No Kubernetes types here: the CRD maps
//! each [`Refusal`] to its `Reason`.

use super::error::ErrorClass;

/// Which codes an entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Exactly this code.
    Exact(&'static str),
    /// This code and every `<prefix>.<more>`.
    Family(&'static str),
}

impl Pattern {
    fn matches(self, code: &str) -> bool {
        match self {
            Pattern::Exact(exact) => code == exact,
            Pattern::Family(prefix) => {
                code == prefix
                    || code
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('.'))
            }
        }
    }

    /// How the docs write it: `Code` or `Prefix.*`.
    pub fn shown(self) -> String {
        match self {
            Pattern::Exact(code) => format!("`{code}`"),
            Pattern::Family(prefix) => format!("`{prefix}`, `{prefix}.*`"),
        }
    }
}

/// Why SAE refused a call for good (the Terminal class), as the CRD's reasons tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The app does not exist in that region.
    ApplicationNotFound,
    /// The request is invalid as it is (typically instance ids the app does not have).
    InvalidParameter,
    /// Not enough compute resource quota.
    QuotaExceeded,
    /// Signature, AccessKey or timestamp rejected.
    AuthenticationFailed,
    /// Any other refusal.
    Rejected,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct CodeInfo {
    pub pattern: Pattern,
    pub class: ErrorClass,
    /// For Terminal codes: the kind of refusal. Retryable codes refuse only for now.
    pub refusal: Refusal,
    /// Whether it says the caller exceeded its quota (slow down, not only retry).
    pub throttling: bool,
    /// What the user should know or do, with `{app}`, `{region}`, `{instances}` and
    /// `{credentials}` filled in by [`CodeInfo::advice`].
    pub advice: &'static str,
}

/// What fills the advice's blanks.
#[derive(Clone, Copy, Debug)]
pub struct AdviceContext<'a> {
    pub app: &'a str,
    pub region: &'a str,
    /// The instance ids as the message lists them.
    pub instances: &'a str,
    /// Where the credentials came from (a Secret's name, or the controller's own).
    pub credentials: &'a str,
}

impl CodeInfo {
    /// The advice with its blanks filled.
    /// One pass over the template: a value is never read as a blank itself (an appId may hold
    /// `{region}`; the CRD does not forbid braces).
    pub fn advice(&self, context: &AdviceContext<'_>) -> String {
        let blanks = [
            ("{app}", context.app),
            ("{region}", context.region),
            ("{instances}", context.instances),
            ("{credentials}", context.credentials),
        ];
        let mut out = String::new();
        let mut rest = self.advice;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let tail = &rest[start..];
            match blanks.iter().find(|(blank, _)| tail.starts_with(blank)) {
                Some((blank, value)) => {
                    out.push_str(value);
                    rest = &tail[blank.len()..];
                }
                None => {
                    out.push('{');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

const fn row(
    pattern: Pattern,
    class: ErrorClass,
    refusal: Refusal,
    advice: &'static str,
) -> CodeInfo {
    CodeInfo {
        pattern,
        class,
        refusal,
        throttling: false,
        advice,
    }
}

const fn retryable(pattern: Pattern, throttling: bool, advice: &'static str) -> CodeInfo {
    CodeInfo {
        pattern,
        class: ErrorClass::Retryable,
        refusal: Refusal::Rejected,
        throttling,
        advice,
    }
}

use ErrorClass::Terminal;
use Pattern::{Exact, Family};

/// Every code SAE's reference documents that changes what the controller does, first match wins.
pub const CODES: &[CodeInfo] = &[
    retryable(
        Exact("Application.ChangerOrderRunning"),
        false,
        "another change order runs on the app; sent again when it has ended",
    ),
    retryable(
        Exact("System.Upgrading"),
        false,
        "SAE is being upgraded; sent again later",
    ),
    retryable(
        Exact("Application.InvalidStatus"),
        false,
        "the app is in a state that accepts no change now; sent again later",
    ),
    // Temporary (STS) credentials expired between signing and checking: refused, not executed;
    // the next attempt signs with refreshed ones.
    retryable(
        Exact("InvalidSecurityToken.Expired"),
        false,
        "the temporary credentials expired in flight; sent again with fresh ones",
    ),
    retryable(
        Family("Throttling"),
        true,
        "SAE's quota for the AccessKey was exceeded; the key's calls pause for SAE's retry hint",
    ),
    row(
        Exact("InvalidApplication.NotFound"),
        Terminal,
        Refusal::ApplicationNotFound,
        "SAE has no application {app} in region {region}: check spec.appId and spec.regionId and create a new object",
    ),
    row(
        Exact("InvalidAppId.NotFound"),
        Terminal,
        Refusal::ApplicationNotFound,
        "SAE has no application {app} in region {region}: check spec.appId and spec.regionId and create a new object",
    ),
    row(
        Family("InvalidParameter"),
        Terminal,
        Refusal::InvalidParameter,
        "SAE rejected the request as invalid: check that instances {instances} belong to app {app}",
    ),
    row(
        Family("NoComputeResourceQuota"),
        Terminal,
        Refusal::QuotaExceeded,
        "SAE refused the change for lack of compute resource quota",
    ),
    row(
        Family("InvalidTimeStamp"),
        Terminal,
        Refusal::AuthenticationFailed,
        "SAE rejected the request's timestamp: check the clock of the controller's host",
    ),
    row(
        Exact("SignatureDoesNotMatch"),
        Terminal,
        Refusal::AuthenticationFailed,
        "SAE rejected the credentials: check the AccessKey in {credentials}",
    ),
    row(
        Exact("SignatureNonceUsed"),
        Terminal,
        Refusal::AuthenticationFailed,
        "SAE rejected the credentials: check the AccessKey in {credentials}",
    ),
    row(
        Family("InvalidAccessKeyId"),
        Terminal,
        Refusal::AuthenticationFailed,
        "SAE rejected the credentials: check the AccessKey in {credentials}",
    ),
];

/// What applies to a code nobody listed: refused for good, said as it is.
pub const UNLISTED: CodeInfo = row(
    Exact("(any other code)"),
    Terminal,
    Refusal::Rejected,
    "SAE refused the request and will not accept it as it is",
);

/// The row for `code` (the first that matches), or [`UNLISTED`].
pub fn lookup(code: &str) -> &'static CodeInfo {
    CODES
        .iter()
        .find(|info| info.pattern.matches(code))
        .unwrap_or(&UNLISTED)
}

/// The table as `docs/sae-codes.md` shows it.
pub fn markdown() -> String {
    let mut out = String::from(
        "# SAE error codes\n\n\
         Generated from `src/sae/codes.rs` (a test keeps this file equal to it: run\n\
         `SAE_WRITE_DOCS=1 cargo test --lib sae::codes` after changing the table). The class says\n\
         whether SAE can have executed the call: Retryable (surely not; sent again later), Terminal\n\
         (not, and never will for this input) or Ambiguous (maybe; resolved from SAE's change\n\
         orders, never by sending again). Any 5xx answer is Ambiguous whatever its code; a 429\n\
         is Retryable whatever its code.\n\n\
         | code | class | status reason (when Terminal) | what the status message says |\n\
         |---|---|---|---|\n",
    );
    for info in CODES.iter().chain(std::iter::once(&UNLISTED)) {
        let shown = match info.pattern {
            Exact("(any other code)") => "any other code".to_string(),
            pattern => pattern.shown(),
        };
        let reason = match info.class {
            Terminal => format!("`{:?}`", info.refusal),
            _ => "—".to_string(),
        };
        out.push_str(&format!(
            "| {shown} | {:?} | {reason} | {} |\n",
            info.class, info.advice
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_covers_its_prefix_and_dotted_children_only() {
        assert!(Family("Throttling").matches("Throttling"));
        assert!(Family("Throttling").matches("Throttling.User"));
        assert!(!Family("Throttling").matches("ThrottlingX"));
        assert!(!Exact("System.Upgrading").matches("System.Upgrading.Now"));
        assert_eq!(lookup("Nope").refusal, Refusal::Rejected);
        assert_eq!(
            lookup("InvalidParameter.WithMessage").refusal,
            Refusal::InvalidParameter
        );
    }

    #[test]
    fn the_advice_fills_its_blanks() {
        let context = AdviceContext {
            app: "app-1",
            region: "cn-hangzhou",
            instances: "i-1, i-2",
            credentials: "Secret ns/creds",
        };
        assert_eq!(
            lookup("InvalidAppId.NotFound").advice(&context),
            "SAE has no application app-1 in region cn-hangzhou: check spec.appId and spec.regionId and create a new object"
        );
        for info in CODES {
            assert!(!info.advice(&context).contains('{'), "{:?}", info.pattern);
        }
        // A value is not read as a blank.
        let braces = AdviceContext {
            app: "x{region}",
            ..context
        };
        assert!(
            lookup("InvalidAppId.NotFound")
                .advice(&braces)
                .starts_with("SAE has no application x{region} in region cn-hangzhou:")
        );
    }

    #[test]
    fn docs_sae_codes_md_is_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sae-codes.md");
        let want = markdown();
        if std::env::var_os("SAE_WRITE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/sae-codes.md differs from src/sae/codes.rs; run SAE_WRITE_DOCS=1 cargo test --lib sae::codes"
        );
    }
}
