//! Records the git commit the binary is built from, for `--version`, the start-up log line and the
//! `sae_build_info` metric. `SAE_CONTROLLER_GIT_COMMIT` wins when set (the Docker build passes it,
//! because the build context has no .git); else `git rev-parse HEAD`; else "unknown" (a source
//! tarball). Uncommitted changes are not marked: cargo reruns this script only when HEAD moves, so
//! a dirty flag would go stale.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SAE_CONTROLLER_GIT_COMMIT");
    let commit = match std::env::var("SAE_CONTROLLER_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
            if let Some(file) = git(&["rev-parse", "--git-path", "HEAD"]) {
                println!("cargo:rerun-if-changed={file}");
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(file) = git(&["rev-parse", "--git-path", &branch])
            {
                println!("cargo:rerun-if-changed={file}");
            }
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=SAE_CONTROLLER_GIT_COMMIT={commit}");
}
