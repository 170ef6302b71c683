#!/usr/bin/env bash
# Creates target/bench-venv (repo-relative, git-ignored) with a pinned DuckDB from the Python package index and prints
# the venv's python. Idempotent: a venv that already has the pinned version is left as it is.
set -euo pipefail

DUCKDB_VERSION="2.0.0"
PYTHON="${PYTHON:-python3.11}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$repo/target/bench-venv"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
    mkdir -p "$repo/target"
    "$PYTHON" -m venv "$venv" >&2
fi
have="$("$py" -c 'import duckdb; print(duckdb.__version__)' 2>/dev/null || true)"
if [ "$have" != "$DUCKDB_VERSION" ]; then
    "$py" -m pip install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" >&2
fi
echo "$py"
