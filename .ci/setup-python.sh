#!/usr/bin/env bash
# Creates (or refreshes) the Python venv holding the official SAE SDK for tests/sdk_compat.rs.
#
# The venv lives outside the work tree so it survives fresh clones on the same machine:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sae-controller/venv
# It is rebuilt only when tests/sdk/requirements.txt changes (its hash is kept in the venv), so a
# second run takes well under a second. Prints the venv's python path on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/tests/sdk/requirements.txt"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/sae-controller/venv"
STAMP="$VENV/.requirements.sha256"
PY="$VENV/bin/python"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$PY" -c 'import alibabacloud_sae20190506' 2>/dev/null; then
  echo "$PY"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || { echo "setup-python: $PYTHON not found; install python3 (with venv)" >&2; exit 1; }

# A half-built or outdated venv is thrown away rather than patched: pins may have been removed too.
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV" >&2
"$PY" -m pip install --quiet --disable-pip-version-check -r "$REQ" >&2
"$PY" -c 'import alibabacloud_sae20190506.client' >&2
echo "$want" >"$STAMP"
echo "$PY"
