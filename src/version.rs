//! What this build is: the crate version (also the image tag in deploy/) and the git commit it was
//! built from (set by build.rs). `--version`, the start-up log line and `sae_build_info` all read
//! these, so the three cannot disagree.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The full git commit id, or `unknown` when built outside a git checkout without
/// `SAE_CONTROLLER_GIT_COMMIT`.
pub const COMMIT: &str = env!("SAE_CONTROLLER_GIT_COMMIT");

/// What `sae-controller --version` prints after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SAE_CONTROLLER_GIT_COMMIT"),
    ")"
);
