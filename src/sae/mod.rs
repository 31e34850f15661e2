//! Everything sae-controller says to Alibaba Cloud SAE. No Kubernetes, Prometheus or controller
//! types in here; the rest of the crate depends on this module, never the other way round.
//!
//! A map, from the bottom up:
//!
//! - `operation`: the five SAE operations, each with its action name, HTTP method and path.
//! - `codes`: the one table of SAE's error codes (class, kind of refusal, advice);
//!   `change_order_status`: SAE's change-order status numbers, named.
//! - `error`: [`SaeError`] and [`ErrorClass`] (could SAE have executed the call?).
//! - `model`: the answer types ([`ChangeOrderDetail`], [`InstancePage`], ...).
//! - `throttle_hint`: the retry-after headers of a throttling answer.
//! - `transport`: endpoints, headers, capped body reads (shared with the credential providers).
//! - `envelope`: SAE's answer envelope sorted into success or error, with secrets redacted.
//! - `client`: [`SaeClient`] and the one path each request takes (sign, send, read, sort).
//! - `operations`: the five calls and their `Data`; `listing`: every instance of an app.
//! - `sign`, `time`: ROA v1 and V3 signatures and their clock; `clock`: SAE's clock against ours,
//!   from the `Date` of its answers.
//! - `credentials`, `chain`, `credentials_file`, `ecs_role`, `rrsa`: where credentials come from.

pub mod chain;
pub mod change_order_status;
pub mod client;
pub mod clock;
pub mod codes;
pub mod credentials;
pub mod credentials_file;
pub mod ecs_role;
pub mod envelope;
pub mod error;
pub mod listing;
pub mod model;
pub mod operation;
pub mod operations;
pub mod rrsa;
pub mod sign;
pub mod throttle_hint;
pub mod time;
pub mod transport;

#[cfg(test)]
mod test_support;

pub use chain::CredentialChain;
pub use change_order_status::ChangeOrderStatus;
pub use client::{RequestObserver, SaeClient, SaeClientConfig};
pub use credentials::Credentials;
pub use error::{ErrorClass, SaeError};
pub use listing::{MAX_INSTANCE_PAGES, no_gate};
pub use model::{
    AppInstances, ApplicationGroup, ChangeOrderDetail, ChangeOrderPage, ChangeOrderSummary,
    DeleteAccepted, InstancePage,
};
pub use operation::Operation;
pub use rrsa::{RrsaConfig, RrsaProvider};
pub use sign::SignatureVersion;
