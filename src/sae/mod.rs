//! Everything sae-controller says to Alibaba Cloud SAE. No Kubernetes types in here.

pub mod chain;
pub mod client;
pub mod credentials;
pub mod credentials_file;
pub mod ecs_role;
pub mod error;
pub mod operation;
pub mod rrsa;
pub mod sign;
pub mod time;

pub use chain::CredentialChain;
pub use client::{
    AppInstances, ApplicationGroup, ChangeOrder, ChangeOrderPage, ChangeOrderSummary,
    DeleteAccepted, InstancePage, RequestObserver, SaeClient, SaeClientConfig,
};
pub use credentials::Credentials;
pub use error::{ErrorClass, SaeError};
pub use operation::Operation;
pub use rrsa::{RrsaConfig, RrsaProvider};
pub use sign::SignatureVersion;
