#!/usr/bin/env python3
"""The analyst's alternative: yibao's cap-and-ratio settlement as DuckDB SQL (issue 6).

Loads the policy TOML files into small DuckDB tables, runs settle.sql (window functions over each
person's year-to-date pools) and writes DIR/settlements.parquet. Prints one JSON line:

    {"engine":"duckdb","duckdb_version":...,"claims":N,"threads":N,"wall_seconds":...,
     "peak_rss_bytes":...,"rows_per_second":...}

wall_seconds runs from parsing the policy files to the output file being closed: policy TOML
parsing and the policy tables (policy_seconds, about 0.1 s), settle.sql's setup statements, which
include one pass over the claims for their distinct regions, levels and diagnoses
(setup_seconds), and the COPY. Python start-up and `import duckdb` are not timed. `claims` is the
number of input rows (as yibao counts them); `settlement_rows` the rows written (input rows with a
null key are not settlement rows, as in yibao). cpu_seconds is user + system time of the process
over the same span.

Usage:
    python benches/duckdb/settle.py --claims C.parquet --persons P.parquet \
        --registrations R.parquet --policies policies --out DIR --threads N [--memory-limit 20GB]
"""

from __future__ import annotations

import argparse
import json
import resource
import string
import sys
import time
import tomllib
from decimal import Decimal
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
LEVELS = ("primary", "secondary", "tertiary", "pharmacy")
SEVERITIES = ("normal", "severe")
VISITS = ("outpatient", "pharmacy", "inpatient")
# settle.sql: setup statements, this line, then the one COPY statement.
MARKER = "-- ==== statement ===="
# Ratio codes in the level columns: a ratio in basis points, or one of these.
NOT_COVERED = -1
PRESCRIBER_LEVEL = -2


def bp(value: Decimal) -> int:
    """A ratio as basis points (0.53 -> 5300), refusing anything finer than 0.0001."""
    scaled = Decimal(value) * 10_000
    if scaled != scaled.to_integral_value():
        raise ValueError(f"ratio {value} has more than 4 decimals")
    return int(scaled)


def fen(value: Decimal) -> int:
    """Yuan as fen (1000 -> 100000), refusing anything finer than 0.01."""
    scaled = Decimal(value) * 100
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {value} has more than 2 decimals")
    return int(scaled)


def ratio_code(entry) -> int:
    if isinstance(entry, str):
        return {"not_covered": NOT_COVERED, "prescriber_level": PRESCRIBER_LEVEL}[entry]
    return bp(entry)


def load_policies(directory: Path):
    """Reads every *.toml into rows for the policy tables (see CREATE TABLE in create_tables)."""
    versions, conditions, slots, general = [], [], [], []
    for path in sorted(directory.glob("*.toml")):
        with open(path, "rb") as f:
            doc = tomllib.load(f, parse_float=Decimal)  # exact decimals, never binary floats
        region = doc["region"]
        for name, cond in doc.get("conditions", {}).items():
            for prefix in cond["icd10"]:
                conditions.append((region, prefix.replace(".", "").upper(), name))
        for v in doc["versions"]:
            tier = {str(k): bp(r) for k, r in v.get("tier_reduction", {}).items()}
            versions.append((
                region,
                v["id"],
                v["effective_from"],
                v.get("effective_to"),
                1 if v.get("benefit_start", "approval_day") == "next_day" else 0,
                bool(v.get("family_doctor_required", False)),
                tier.get("80", 0),
                tier.get("60", 0),
            ))
            secondary_factor = bp(v["secondary_factor"]) if "secondary_factor" in v else 10_000
            cond_rows, general_rows = {}, {}
            for b in v.get("benefits", []):
                cov = b["coverage"]
                per = b.get("deductible_per", "year")
                d = b.get("deductible", 0)
                ded = [fen(d.get(lv, 0)) for lv in LEVELS] if isinstance(d, dict) else [fen(d)] * 4
                waiver = b.get("referral_waiver") or {}
                shared = b.get("deductible_shared")
                ratios = [ratio_code(b["ratio"][lv]) for lv in LEVELS]
                cap = fen(b["annual_cap"]) if "annual_cap" in b else None
                common = dict(
                    r=ratios,
                    visits=[vt in b.get("visit_types", ["outpatient", "pharmacy"]) for vt in VISITS],
                    ded_per=per,
                    ded=ded,
                    cap=cap,
                    cap_cost=b.get("cap_basis", "fund") == "cost",
                    tier_reduction=bool(b.get("tier_reduction", False)),
                    sf=secondary_factor if b.get("secondary_factor", False) else 10_000,
                    waive_downward=bool(waiver.get("downward", False)),
                )
                if b.get("scope", "registered_conditions") == "general":
                    pool = f"{cov}:{b['name']}"
                    for i, vt in enumerate(VISITS):
                        if common["visits"][i]:
                            general_rows[(cov, vt)] = dict(common, label=b["name"], pool=pool,
                                                           ded_pool=f"{cov}:deductible.{shared}" if shared else pool)
                else:
                    for cond in b["conditions"]:
                        if b.get("cap_per", "benefit") == "condition":
                            pool = f"{cov}:{b['name']}.{cond}"
                        else:
                            pool = f"{cov}:{b['name']}"
                        for sev in ([b["severity"]] if "severity" in b else SEVERITIES):
                            cond_rows[(cov, sev, cond)] = dict(
                                common, label=f"{b['name']}.{cond}", pool=pool,
                                ded_pool=f"{cov}:deductible.{shared}" if shared else pool)
            # Employee-supplementary members fall back to the employee table (every region but
            # Ezhou has no supplementary benefits of its own).
            for (cov, sev, cond), row in list(cond_rows.items()):
                if cov == "employee":
                    cond_rows.setdefault(("employee_supplementary", sev, cond), row)
            for (cov, vt), row in list(general_rows.items()):
                if cov == "employee":
                    general_rows.setdefault(("employee_supplementary", vt), row)
            for (cov, sev, cond), row in cond_rows.items():
                slots.append((v["id"], cov, sev, cond, *flatten(row)))
            for (cov, vt), row in general_rows.items():
                general.append((v["id"], cov, vt, *flatten(row)))
    offsets = {}
    for v in versions:
        offsets.setdefault(v[0], set()).add(v[4])
    for region, values in offsets.items():
        if len(values) > 1:
            # settle.sql cuts overlapping registrations with one offset per region
            raise SystemExit(f"region {region}: versions differ in benefit_start; not supported")
    return versions, conditions, slots, general


def flatten(row):
    return (row["label"], row["pool"], row["ded_pool"], *row["r"], *row["visits"],
            row["ded_per"], *row["ded"], row["cap"], row["cap_cost"], row["tier_reduction"],
            row["sf"], row["waive_downward"])


BENEFIT_COLUMNS = """
    label label_t, pool_id SMALLINT, ded_pool_id SMALLINT,
    r_primary INTEGER, r_secondary INTEGER, r_tertiary INTEGER, r_pharmacy INTEGER,
    pays_outpatient BOOLEAN, pays_pharmacy BOOLEAN, pays_inpatient BOOLEAN,
    ded_per VARCHAR, d_primary BIGINT, d_secondary BIGINT, d_tertiary BIGINT, d_pharmacy BIGINT,
    cap_fen BIGINT, cap_cost BOOLEAN, tier_reduction BOOLEAN, secondary_factor_bp INTEGER,
    waive_downward BOOLEAN"""


def enum(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(set(values)))


def create_tables(con, versions, conditions, slots, general):
    # Pools (yibao's names, e.g. `resident:two_diseases.hypertension`) as small integers: cheaper
    # window partition keys than strings. Labels and policy ids as ENUMs: one byte in the windows'
    # payload, and a ready-made dictionary for the Parquet writer.
    names = sorted({r[i] for r in slots for i in (5, 6)} | {r[i] for r in general for i in (4, 5)})
    pool_id = {name: i for i, name in enumerate(names)}
    slots = [(*r[:5], pool_id[r[5]], pool_id[r[6]], *r[7:]) for r in slots]
    general = [(*r[:4], pool_id[r[4]], pool_id[r[5]], *r[6:]) for r in general]
    con.execute(f"CREATE TYPE label_t AS ENUM ({enum([r[4] for r in slots] + [r[3] for r in general])})")
    con.execute(f"CREATE TYPE policy_t AS ENUM ({enum([v[1] for v in versions])})")
    con.execute("""CREATE TEMP TABLE pol_version (region VARCHAR, policy_id policy_t,
        effective_from DATE, effective_to DATE, start_offset INTEGER,
        family_doctor_required BOOLEAN, tier_red_80 INTEGER, tier_red_60 INTEGER)""")
    con.execute("CREATE TEMP TABLE pol_condition (region VARCHAR, prefix VARCHAR, condition VARCHAR)")
    con.execute(f"""CREATE TEMP TABLE pol_slot (policy_id policy_t, coverage VARCHAR,
        severity VARCHAR, condition VARCHAR, {BENEFIT_COLUMNS})""")
    con.execute(f"""CREATE TEMP TABLE pol_general (policy_id policy_t, coverage VARCHAR,
        visit VARCHAR, {BENEFIT_COLUMNS})""")
    for table, rows in (("pol_version", versions), ("pol_condition", conditions),
                        ("pol_slot", slots), ("pol_general", general)):
        if rows:
            # One INSERT per table: executemany would run a statement per row.
            marks = "(" + ", ".join("?" * len(rows[0])) + ")"
            con.execute(f"INSERT INTO {table} VALUES " + ", ".join([marks] * len(rows)),
                        [value for row in rows for value in row])


DUPLICATES = """SELECT claim_id, min(file_row_number) AS first_row
    FROM read_parquet('${claims}', file_row_number = true)
    WHERE claim_id IS NOT NULL GROUP BY claim_id HAVING count(*) > 1"""
NO_DUPLICATES = "SELECT NULL::VARCHAR AS claim_id, NULL::BIGINT AS first_row WHERE false"


def sql_path(p: str) -> str:
    return p.replace("'", "''")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--claims", required=True)
    ap.add_argument("--persons", required=True)
    ap.add_argument("--registrations", required=True)
    ap.add_argument("--policies", default="policies")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 20GB")
    ap.add_argument("--reject-duplicates", action="store_true",
                    help="reject repeated claim ids as yibao does (a GROUP BY over every id)")
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE to stderr")
    args = ap.parse_args(argv)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / "settlements.parquet"

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(args.threads)}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    # Output order is not part of the contract: let the COPY run without re-ordering.
    con.execute("SET preserve_insertion_order = false")

    start = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    tables = load_policies(Path(args.policies))
    create_tables(con, *tables)
    t1 = time.perf_counter()
    regions = sorted({v[0] for v in tables[0]})
    claims_path = sql_path(args.claims)
    sql = string.Template((HERE / "settle.sql").read_text()).substitute(
        claims=claims_path,
        persons=sql_path(args.persons),
        registrations=sql_path(args.registrations),
        out=sql_path(str(out_file)),
        policy_regions=", ".join(f"'{r}'" for r in regions) or "NULL",
        duplicates=(string.Template(DUPLICATES).substitute(claims=claims_path)
                    if args.reject_duplicates else NO_DUPLICATES),
    )
    setup, statement = sql.split(MARKER)
    con.execute(setup)
    t2 = time.perf_counter()
    if args.explain:
        plan = con.execute("EXPLAIN ANALYZE " + statement).fetchall()
        print(plan[0][1], file=sys.stderr)
        written = con.execute(f"SELECT count(*) FROM '{sql_path(str(out_file))}'").fetchone()[0]
    else:
        written = con.execute(statement).fetchone()[0]
    t3 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)

    claims = con.execute(
        f"SELECT sum(num_rows) FROM parquet_file_metadata('{sql_path(args.claims)}')").fetchone()[0]
    wall = t3 - t0
    print(json.dumps({
        "engine": "duckdb",
        "duckdb_version": duckdb.__version__,
        "claims": int(claims),
        "settlement_rows": int(written),
        "threads": args.threads,
        "wall_seconds": round(wall, 3),
        "policy_seconds": round(t1 - t0, 3),
        "setup_seconds": round(t2 - t1, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime - start.ru_utime - start.ru_stime,
                             3),
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "rows_per_second": round(claims / wall),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
