#!/usr/bin/env bash
# Builds a fully static sae-controller, and the kubectl plugin kubectl-sae shipped beside it, for
# this machine's architecture (x86_64 or aarch64) and proves both are static. The Dockerfile runs
# this same script, so the binaries checked here are the binaries shipped.
#
# Why glibc and not musl: the musl target would need `rustup target add`, which needs the network;
# glibc's libc.a ships with libc6-dev, so `+crt-static` on the host target gives a static binary with
# the toolchain already installed. Name resolution still works without shared libraries because
# glibc >= 2.34 builds its `files` and `dns` NSS modules into libc itself (Debian 12 has 2.36).
#
# `--target` is passed explicitly so RUSTFLAGS reach only the final artifacts: build scripts and
# proc-macro crates must stay dynamic (a proc macro is a shared object loaded by rustc).
#
# Usage: hack/check-static.sh [--build-only | --check-only]
#   STATIC_TARGET_DIR  cargo target dir for this build (default: target/static, kept apart from the
#                      shared debug target dir so the two builds do not invalidate each other)
#   CARGO_FEATURES     optional cargo features for the binary, e.g. `otel` (default: none)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode="${1:-all}"
case "$mode" in
  all | --build-only | --check-only) ;;
  *) echo "usage: $0 [--build-only | --check-only]" >&2; exit 2 ;;
esac

arch="$(uname -m)" # x86_64 or aarch64; Debian's libc6-dev ships libc.a for both
target="$arch-unknown-linux-gnu"
target_dir="${STATIC_TARGET_DIR:-target/static}"
bin="$target_dir/$target/release/sae-controller"
plugin="$target_dir/$target/release/kubectl-sae"

if [[ "$mode" != "--check-only" ]]; then
  [[ -f "/usr/lib/$arch-linux-gnu/libc.a" ]] || { echo "libc.a missing: apt-get install libc6-dev" >&2; exit 1; }
  start=$SECONDS
  RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" --target-dir "$target_dir" \
      --bin sae-controller --bin kubectl-sae \
      ${CARGO_FEATURES:+--features "$CARGO_FEATURES"}
  echo "static build took $((SECONDS - start))s"
fi

[[ "$mode" == "--build-only" ]] && exit 0

fail() { echo "check-static: $*" >&2; exit 1; }

# Proves one binary static: `file`, `ldd` and the ELF program headers.
check_static() {
  local bin="$1"
  [[ -x "$bin" ]] || fail "$bin not found; run without --check-only first"
  # `file` says "statically linked" for a plain static executable and "static-pie linked" for a
  # position-independent one (what rustc produces with crt-static on glibc).
  local description
  description="$(file -b "$bin")"
  echo "file: $description"
  [[ "$description" == *"statically linked"* || "$description" == *"static-pie linked"* ]] \
    || fail "$bin: not a static executable"
  case "$arch" in
    x86_64) [[ "$description" == *"x86-64"* ]] || fail "$bin: not an x86-64 executable" ;;
    aarch64) [[ "$description" == *"aarch64"* ]] || fail "$bin: not an aarch64 executable" ;;
  esac
  # ldd exits non-zero for a static binary; its message is what matters.
  local ldd_out
  ldd_out="$(ldd "$bin" 2>&1 || true)"
  echo "ldd: $ldd_out"
  [[ "$ldd_out" == *"not a dynamic executable"* || "$ldd_out" == *"statically linked"* ]] \
    || fail "$bin: ldd lists shared libraries"
  # No PT_INTERP program header means the kernel loads it without ld.so.
  if command -v readelf >/dev/null; then
    # Captured first: `grep -q` quitting early under pipefail would make the pipeline's status lie.
    local program_headers
    program_headers="$(readelf -l "$bin")"
    [[ "$program_headers" != *INTERP* ]] || fail "$bin: binary requests a dynamic loader"
  fi
}

check_static "$bin"
check_static "$plugin"
plugin_version="$("$plugin" --version)"
echo "plugin version: $plugin_version"
[[ "$plugin_version" == kubectl-sae* ]] || fail "kubectl-sae --version printed: $plugin_version"

version="$("$bin" --version)"
echo "version: $version"
[[ "$version" == sae-controller* ]] || fail "--version printed: $version"
crd="$("$bin" crd)"
[[ "$crd" == *"kind: CustomResourceDefinition"* ]] || fail "'crd' did not print a CRD"

# Strongest proof: run it where no shared library exists at all, as in a scratch/distroless image.
# Some image builders (rootless, kaniko) forbid chroot; say so instead of failing there.
if [[ $(id -u) -eq 0 ]] && command -v chroot >/dev/null && chroot / true 2>/dev/null; then
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  chmod 755 "$root" # mktemp's 0700 would keep uid 65532 out
  cp "$bin" "$root/sae-controller"
  cp "$plugin" "$root/kubectl-sae"
  chroot --userspec=65532:65532 "$root" /kubectl-sae --help >/dev/null \
    || fail "kubectl-sae does not run in an empty root"
  chroot --userspec=65532:65532 "$root" /sae-controller --version >/dev/null \
    || fail "does not run in an empty root"
  crd="$(chroot --userspec=65532:65532 "$root" /sae-controller crd)" || fail "'crd' fails in an empty root"
  [[ "$crd" == *"kind: CustomResourceDefinition"* ]] || fail "'crd' prints no CRD in an empty root"
  echo "runs in an empty root as uid 65532"
else
  echo "note: not root or chroot not permitted here; skipped the run in an empty root" >&2
fi

echo "check-static: OK ($(du -h "$bin" | cut -f1) $bin, $(du -h "$plugin" | cut -f1) $plugin)"
