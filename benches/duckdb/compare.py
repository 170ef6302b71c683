#!/usr/bin/env python3
"""Compares the DuckDB settlement with yibao's, claim by claim.

    python benches/duckdb/compare.py YIBAO_OUT/settlements.parquet DUCK_OUT/settlements.parquet

Prints per-status totals of both, then, over claim ids that are unique in both files, how many
rows agree on every contract column and which columns differ where they do not.
"""

import sys

import duckdb

COLUMNS = ["policy_id", "benefit", "status", "reason", "eligible_amount", "deductible_amount",
           "ratio", "fund_paid", "copay_amount", "over_cap_amount", "self_funded_amount",
           "cap_remaining", "critical_illness_base", "assistance_base"]


def show(con, title, sql):
    print(f"\n## {title}")
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    widths = [max(len(str(x)) for x in [n] + [r[i] for r in rows]) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths)))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def main(yibao, duck):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW y AS SELECT * FROM '{yibao}'")
    con.execute(f"CREATE VIEW d AS SELECT * FROM '{duck}'")
    show(con, "rows", "SELECT (SELECT count(*) FROM y) AS yibao, (SELECT count(*) FROM d) AS duckdb")
    for name in ("y", "d"):
        show(con, f"{'yibao' if name == 'y' else 'duckdb'}: per status",
             f"""SELECT status, reason, count(*) AS n, sum(fund_paid) AS fund_paid,
                        sum(eligible_amount) AS eligible, sum(over_cap_amount) AS over_cap
                 FROM {name} GROUP BY ALL ORDER BY ALL""")
    same = " AND ".join(f"y.{c} IS NOT DISTINCT FROM d.{c}" for c in COLUMNS)
    con.execute(f"""CREATE TEMP TABLE cmp AS
        SELECT y.status AS y_status, d.status AS d_status, y.benefit AS y_benefit,
               {same} AS all_same,
               {", ".join(f"y.{c} IS NOT DISTINCT FROM d.{c} AS same_{c}" for c in COLUMNS)},
               y.fund_paid - d.fund_paid AS fund_diff
        FROM (SELECT * FROM y QUALIFY count(*) OVER (PARTITION BY claim_id) = 1) y
        JOIN (SELECT * FROM d QUALIFY count(*) OVER (PARTITION BY claim_id) = 1) d
          USING (claim_id)""")
    show(con, "claim by claim (ids unique in both): rows identical on every contract column",
         """SELECT y_status, d_status, count(*) AS n, count(*) FILTER (WHERE all_same) AS identical,
                   count(*) FILTER (WHERE same_fund_paid) AS same_fund_paid,
                   sum(fund_diff) AS fund_paid_yibao_minus_duckdb
            FROM cmp GROUP BY ALL ORDER BY ALL""")
    show(con, "columns that differ (rows not identical)",
         "SELECT " + ", ".join(f"count(*) FILTER (WHERE NOT same_{c}) AS {c}" for c in COLUMNS)
         + " FROM cmp WHERE NOT all_same")
    show(con, "differing rows by yibao benefit",
         """SELECT y_benefit, y_status, d_status, count(*) AS n,
                   count(*) FILTER (WHERE NOT same_fund_paid) AS fund_differs
            FROM cmp WHERE NOT all_same GROUP BY ALL ORDER BY n DESC LIMIT 30""")


if __name__ == "__main__":
    main(*sys.argv[1:3])
