#!/usr/bin/env bash
# End-to-end benchmark (issue 6): generate a month (cached under target/bench-data), then in one
# sitting measure the I/O floor (`yibao bench-floor`), the nightly job (`yibao adjudicate`) and,
# unless NO_DUCKDB=1, the DuckDB SQL settlement of benches/duckdb/; print one table.
#
#   benches/end_to_end.sh [CLAIMS] [PERSONS]        # default 10,000,000 claims, CLAIMS/5 persons
#   THREADS=1 benches/end_to_end.sh                 # another thread count (default: every core)
#   REPEAT=3 benches/end_to_end.sh                  # best of N for each engine
#   MEMORY_LIMIT=1GiB benches/end_to_end.sh         # yibao with --memory-limit (spills when over)
#   PROFILE=skewed benches/end_to_end.sh            # a month where most claims are flagged
#
# Each step runs after `sync` and a pause, so one step's writeback does not land in the next.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAIMS=${1:-10000000}
PERSONS=${2:-$((CLAIMS / 5))}
THREADS=${THREADS:-$(nproc)}
REPEAT=${REPEAT:-1}
PROFILE=${PROFILE:-clean}
DATA=target/bench-data/${CLAIMS}x${PERSONS}
# A clean month keeps the cache directory it always had.
if [ "$PROFILE" != clean ]; then
  DATA=$DATA-$PROFILE
fi
OUT=target/bench-out
mkdir -p "$OUT"
# A table is of this sitting only: no engine's figures from an earlier one.
rm -f "$OUT"/floor.*.json "$OUT"/yibao.*.json "$OUT"/duckdb.*.json

cargo build --quiet --profile dist
BIN=target/dist/yibao
if [ ! -f "$DATA/claims.parquet" ]; then
  "$BIN" generate --persons "$PERSONS" --claims "$CLAIMS" --month 2024-03 --seed 7 \
    --profile "$PROFILE" --out "$DATA"
fi

settle() { sync; sleep 2; }

for i in $(seq "$REPEAT"); do
  settle
  "$BIN" bench-floor --claims "$DATA/claims.parquet" --out "$OUT/floor" --threads "$THREADS" \
    > "$OUT/floor.$i.json"
  settle
  rm -rf "$OUT/yibao"
  "$BIN" adjudicate --claims "$DATA/claims.parquet" --persons "$DATA/persons.parquet" \
    --registrations "$DATA/registrations.parquet" --policies policies --out "$OUT/yibao" \
    --threads "$THREADS" ${MEMORY_LIMIT:+--memory-limit "$MEMORY_LIMIT"} > /dev/null
  cp "$OUT/yibao/summary.json" "$OUT/yibao.$i.json"
  if [ "${NO_DUCKDB:-0}" != 1 ]; then
    PY=$(benches/duckdb/setup.sh)
    settle
    "$PY" benches/duckdb/settle.py --claims "$DATA/claims.parquet" --persons "$DATA/persons.parquet" \
      --registrations "$DATA/registrations.parquet" --policies policies --out "$OUT/duckdb" \
      --threads "$THREADS" > "$OUT/duckdb.$i.json"
  fi
done

python3 - "$OUT" "$REPEAT" "$CLAIMS" "$THREADS" <<'EOF'
import json, os, sys
out, repeat, claims, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def best(name):
    runs = []
    for i in range(1, repeat + 1):
        path = os.path.join(out, f"{name}.{i}.json")
        if os.path.exists(path):
            with open(path) as f:
                runs.append(json.load(f))
    return min(runs, key=lambda r: r["wall_seconds"]) if runs else None
floor, yibao, duck = best("floor"), best("yibao"), best("duckdb")
gib = lambda b: f"{b / 2**30:.2f} GiB" if b else "—"
print(f"\n{claims:,} claims, {threads} threads, best of {repeat}\n")
print("| engine | wall | rows/s | peak RSS | × floor |")
print("|---|---|---|---|---|")
for name, r in (("floor (read + write, no settlement)", floor), ("yibao adjudicate", yibao), ("DuckDB SQL", duck)):
    if r:
        print(f"| {name} | {r['wall_seconds']:.2f} s | {claims / r['wall_seconds'] / 1e6:.2f} M | "
              f"{gib(r.get('peak_rss_bytes'))} | {r['wall_seconds'] / floor['wall_seconds']:.2f} |")
if yibao:
    st = yibao["stage_seconds"]
    print("\nyibao stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in st.items()))
    print("yibao outputs: " + ", ".join(f"{k} {v:.2f} s" for k, v in yibao["outputs"]["seconds"].items()))
    if yibao.get("spill"):
        sp = yibao["spill"]
        print(f"yibao spilled: {sp['partitions']} partitions, {sp['bytes'] / 1e9:.2f} GB "
              f"(--memory-limit {yibao['memory_limit_bytes'] / 2**30:.2f} GiB)")
if yibao and duck:
    print(f"\nDuckDB / yibao wall: {duck['wall_seconds'] / yibao['wall_seconds']:.2f}×")
EOF
