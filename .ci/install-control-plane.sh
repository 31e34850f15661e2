#!/usr/bin/env bash
# Provides etcd and kube-apiserver v1.20.2 for the end-to-end tests.
#
# No container engine or envtest download works on our machines, so kube-apiserver is built from
# Debian bookworm's `kubernetes` source package and cached under ~/.cache. If KUBEBUILDER_ASSETS
# already names a folder with etcd and kube-apiserver, nothing is built.
# Prints the folder holding the binaries on its last line.
set -euo pipefail

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sae-controller/control-plane-v1.20.2"
BIN="$CACHE/bin"
mkdir -p "$BIN"

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
if [[ ! -x "$BIN/kube-apiserver" ]]; then
  command -v go >/dev/null || need_apt+=(golang-go)
  command -v rsync >/dev/null || need_apt+=(rsync)
  [[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] || need_apt+=(golang-github-modern-go-reflect2-dev)
fi
if ((${#need_apt[@]})); then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi
ln -sf "$(command -v etcd)" "$BIN/etcd"
ln -sf "$(command -v kubectl)" "$BIN/kubectl"

if [[ ! -x "$BIN/kube-apiserver" ]]; then
  SRC_LIST=/etc/apt/sources.list.d/bookworm-src.sources
  if [[ ! -f "$SRC_LIST" ]]; then
    cat >"$SRC_LIST" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq >&2
  fi
  WORK="$CACHE/build"
  rm -rf "$WORK"
  mkdir -p "$WORK"
  (
    cd "$WORK"
    apt-get source --download-only kubernetes=1.20.5+really1.20.2-1.1+deb12u1 >&2
    mkdir src
    tar -xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz -C src --strip-components=1
    # Go >= 1.18 miscompiles the vendored reflect2 (SIGSEGV in mapiterinit); Debian's 1.0.2 is fixed.
    R=src/vendor/github.com/modern-go/reflect2
    rm -rf "$R" && mkdir -p "$R"
    find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 -type f \
      \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$R/" \;
    SRC="$WORK/src"
    export GOPATH="$SRC/.go" CGO_ENABLED=0 HOME="$WORK/home"
    mkdir -p "$HOME" "$GOPATH/src/k8s.io"
    ln -s "$SRC" "$GOPATH/src/k8s.io/kubernetes"
    cd "$GOPATH/src/k8s.io/kubernetes"
    make WHAT=cmd/kube-apiserver >&2
    cp _output/bin/kube-apiserver "$BIN/kube-apiserver.tmp"
    mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
  )
  rm -rf "$WORK"
fi
echo "$BIN"
