#!/usr/bin/env bash
# Provides what `make lint` needs beyond rustup's rustfmt and clippy:
#
# - cargo-deny, built once with `cargo install --locked` into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sae-controller/tools and rebuilt only when the pinned version
#   below changes. 0.20.2 builds with rustc >= 1.88. It is built unoptimised and without debug
#   info (`--debug`, CARGO_PROFILE_DEV_DEBUG=0): on this 2-core machine that cold build takes about
#   3 minutes instead of 11 for its release profile (fat LTO, one codegen unit), and the check
#   itself takes about 6 s instead of 2.
# - The RustSec advisory snapshot from shared/ (beside the clone, read-only), extracted into the
#   folder cargo-deny derives from the default database URL under deny.toml's `db-path`
#   (~/.cache/sae-controller/advisory-dbs/advisory-db-3157b0e258782691), so that
#   `cargo deny --offline` reads it without a fetch. Re-extracted only when the tarball changes.
#   Should a later cargo-deny name that folder differently, its check fails loudly ("failed to
#   load advisory database"); it never passes on a missing database.
#
# Quiet when all goes well; a failed install prints its log. Prints the folder holding the tools on
# its last line (put it on PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DENY_VERSION=0.20.2
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sae-controller"
TOOLS="$CACHE/tools"
# Must match deny.toml's [advisories] db-path, which can only expand `~`, not XDG_CACHE_HOME.
DB_ROOT="$HOME/.cache/sae-controller/advisory-dbs"
DB="$DB_ROOT/advisory-db-3157b0e258782691"
TARBALL="${ADVISORY_DB_TARBALL:-$ROOT/../shared/advisory-db/advisory-db.tar.gz}"

cargo fmt --version >/dev/null 2>&1 ||
  { echo "install-lint-tools: cargo fmt missing: rustup component add rustfmt" >&2; exit 1; }
cargo clippy --version >/dev/null 2>&1 ||
  { echo "install-lint-tools: cargo clippy missing: rustup component add clippy" >&2; exit 1; }
[[ -f "$TARBALL" ]] || {
  echo "install-lint-tools: no advisory snapshot at $TARBALL (set ADVISORY_DB_TARBALL)" >&2
  exit 1
}

mkdir -p "$TOOLS" "$DB_ROOT"
# Several work trees on one machine share these caches: one install or extraction at a time.
exec 9>"$CACHE/.lint-tools.lock"
flock 9

if [[ "$("$TOOLS/bin/cargo-deny" --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]]; then
  log="$(mktemp)"
  # A CARGO_TARGET_DIR of the project's (CI sets one) would keep the tool's build artifacts in the
  # project's cache; without it cargo install builds in a temporary folder and removes it.
  if ! env -u CARGO_TARGET_DIR CARGO_PROFILE_DEV_DEBUG=0 \
    cargo install --debug --locked --force --root "$TOOLS" "cargo-deny@$DENY_VERSION" >"$log" 2>&1; then
    echo "install-lint-tools: cargo install cargo-deny@$DENY_VERSION failed:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi

want="$(sha256sum "$TARBALL" | cut -d' ' -f1)"
if [[ ! -d "$DB/.git" || "$(cat "$DB_ROOT/.snapshot.sha256" 2>/dev/null)" != "$want" ]]; then
  # Extract beside the final folder and swap, so an interrupted run never leaves half a database.
  tmp="$(mktemp -d "$DB_ROOT/.extract.XXXXXX")"
  tar -xzf "$TARBALL" -C "$tmp"
  rm -rf "$DB"
  mv "$tmp" "$DB"
  echo "$want" >"$DB_ROOT/.snapshot.sha256"
fi

echo "$TOOLS/bin"
