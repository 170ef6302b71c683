#!/usr/bin/env bash
# Fuzzes the policy loader and the claims reader (cargo-fuzz, nightly toolchain), each for
# SECONDS (default 300), starting from the repository's policies and sample claims file.
#
#   fuzz/run.sh            # both targets, 5 minutes each
#   SECONDS_EACH=3600 fuzz/run.sh
#
# A crash leaves its input under fuzz/artifacts/TARGET/; make it a regression test.
set -euo pipefail
cd "$(dirname "$0")"
EACH=${SECONDS_EACH:-300}
cargo +nightly fuzz --help >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p corpus/policy_file corpus/claims_file
cp ../policies/*.toml corpus/policy_file/
cp ../data-samples/claims.parquet corpus/claims_file/
for target in policy_file claims_file; do
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$EACH" -rss_limit_mb=4096
done
