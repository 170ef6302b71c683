-- yibao's core cap-and-ratio settlement as DuckDB SQL (issue 6: the analyst's alternative).
-- See README.md beside this file for what it computes and what it leaves out.
--
-- Run by settle.py, which first creates the policy tables from policies/*.toml:
--   pol_version   (region, policy_id, effective_from, effective_to, start_offset,
--                  family_doctor_required, tier_red_80, tier_red_60)
--   pol_condition (region, prefix, condition)           ICD-10 prefixes, dots dropped
--   pol_slot      (policy_id, coverage, severity, condition, <benefit>)   condition benefits
--   pol_general   (policy_id, coverage, visit, <benefit>)                 general benefits
-- where <benefit> is: label (ENUM label_t, e.g. `two_diseases.hypertension`); pool_id and
-- ded_pool_id (yibao's cap and deductible pools, e.g. `resident:two_diseases.hypertension`, as
-- SMALLINT); r_primary .. r_pharmacy (ratio in basis points; -1 not covered, -2 the
-- prescriber's level); pays_outpatient / pays_pharmacy / pays_inpatient; ded_per ('year' or
-- 'admission'); d_primary .. d_pharmacy (deductible in fen); cap_fen (NULL: uncapped);
-- cap_cost (cap_basis = "cost"); tier_reduction; secondary_factor_bp; waive_downward.
-- Employee-supplementary rows already fall back to the employee ones, a benefit without
-- severity is listed for both.
--
-- $${claims}, $${persons}, $${registrations}, $${out}, $${policy_regions} and $${duplicates}
-- are substituted by settle.py (string.Template). Money is BIGINT fen inside (exact; for x, r >= 0,
-- `(x * r + 5000) // 10000` is round(x * r / 10000) half away from zero) and DECIMAL(18,2) on
-- output. settle.py runs the setup statements, then the COPY after the marker line; both are
-- timed.

CREATE TEMP MACRO level_ratio(lvl, presc, rp, rs, rt, rph) AS
    CASE lvl
        WHEN 'primary' THEN rp
        WHEN 'secondary' THEN rs
        WHEN 'tertiary' THEN rt
        ELSE CASE
            WHEN rph <> -2 THEN rph
            WHEN presc IS NULL THEN -3                 -- missing_prescriber_level
            ELSE CASE presc WHEN 'primary' THEN rp WHEN 'secondary' THEN rs ELSE rt END
        END
    END;

CREATE TEMP MACRO level_pick(lvl, p, s, t, ph) AS
    CASE lvl WHEN 'primary' THEN p WHEN 'secondary' THEN s WHEN 'tertiary' THEN t ELSE ph END;

CREATE TYPE status_t AS ENUM ('paid', 'capped', 'not_covered', 'reversal', 'rejected');
CREATE TYPE reason_t AS ENUM (
    'annual_cap_reached', 'reverses_claim', 'unknown_person', 'invalid_person_record',
    'no_policy_for_region', 'no_policy_in_force', 'diagnosis_not_covered', 'not_registered',
    'no_family_doctor', 'scheme_not_covered', 'level_not_covered', 'missing_prescriber_level',
    'visit_type_not_covered', 'null_amount', 'in_scope_exceeds_total', 'negative_amount',
    'unknown_level', 'unknown_visit_type', 'unknown_referral', 'duplicate_claim_id',
    'original_not_found', 'already_reversed', 'reversal_amount_mismatch',
    'original_not_reversible');

-- The claims' own vocabularies, from one pass over three dictionary-encoded columns: the claim
-- region and institution level are written back as ENUMs (1 byte through the plan, a ready-made
-- dictionary for the Parquet writer), the distinct diagnoses are matched to conditions once.
CREATE TEMP TABLE claim_vocabulary AS
    SELECT list(DISTINCT region) FILTER (WHERE region IS NOT NULL) AS regions,
           list(DISTINCT institution_level) FILTER (WHERE institution_level IS NOT NULL) AS levels,
           list(DISTINCT diagnosis) FILTER (WHERE diagnosis IS NOT NULL) AS diagnoses
    FROM read_parquet('${claims}');
CREATE TYPE region_t AS ENUM (SELECT unnest(regions) FROM claim_vocabulary);
CREATE TYPE level_t AS ENUM (SELECT unnest(levels) FROM claim_vocabulary);

-- Every join below is written with the side to hash on the right (the policy tables, the
-- registry, the few reversals, the narrow settlement rows); DuckDB's build-side swap would hash
-- the wide claim rows instead when its row estimates are close.
SET disabled_optimizers = 'build_side_probe_side';

CREATE TEMP MACRO yuan(f) AS CAST(CAST(f AS DECIMAL(18, 0)) * 0.01 AS DECIMAL(18, 2));

-- ==== statement ====
COPY (
WITH
-- Claim ids met more than once: every row after the first is rejected (yibao: the first row
-- keeps it). With --reject-duplicates this is a GROUP BY over every claim id; without it, an
-- empty table (the default: a lower bound, duplicates then settle like other claims).
duplicates AS (
    ${duplicates}
),
-- Claims as read. Rows with a null key are not settlement rows (yibao lists them only in
-- rejected.parquet); the other row checks of yibao's ingest become reject reasons.
claims AS (
    SELECT
        file_row_number AS rid,
        claim_id, person_id, region, settled_at, institution_level, prescriber_level,
        diagnosis, referral, reverses_claim_id, total_amount, in_scope_amount,
        -- a null amount counts as 0 here, as in yibao's rejected rows
        CAST(coalesce(total_amount, 0) - coalesce(in_scope_amount, 0) AS DECIMAL(18, 2))
            AS self_funded_amount,
        coalesce(service_date, CAST(settled_at AS DATE)) AS day,
        coalesce(visit_type, CASE WHEN institution_level = 'pharmacy' THEN 'pharmacy'
                                  ELSE 'outpatient' END) AS visit,
        CAST(in_scope_amount * 100 AS BIGINT) AS in_scope_fen,
        CASE
            WHEN institution_level NOT IN ('primary', 'secondary', 'tertiary', 'pharmacy')
                THEN 'unknown_level'
            WHEN prescriber_level NOT IN ('primary', 'secondary', 'tertiary') THEN 'unknown_level'
            WHEN visit_type NOT IN ('outpatient', 'pharmacy', 'inpatient') THEN 'unknown_visit_type'
            WHEN referral NOT IN ('upward', 'downward') THEN 'unknown_referral'
            WHEN total_amount IS NULL OR in_scope_amount IS NULL THEN 'null_amount'
            WHEN reverses_claim_id IS NULL AND (total_amount < 0 OR in_scope_amount < 0)
                THEN 'negative_amount'
            WHEN reverses_claim_id IS NULL AND in_scope_amount > total_amount
                THEN 'in_scope_exceeds_total'
            WHEN file_row_number > dup.first_row THEN 'duplicate_claim_id'
        END AS reject_reason
    FROM read_parquet('${claims}', file_row_number = true)
    LEFT JOIN duplicates dup USING (claim_id)
    WHERE claim_id IS NOT NULL AND person_id IS NOT NULL AND region IS NOT NULL
      AND settled_at IS NOT NULL AND institution_id IS NOT NULL
      AND institution_level IS NOT NULL AND diagnosis IS NOT NULL
),
-- Diagnosis -> condition per policy region, longest ICD-10 prefix first; matched once per
-- distinct code (a few dozen), not per claim.
diagnoses AS (
    SELECT unnest(diagnoses) AS diagnosis FROM claim_vocabulary
),
diag_map AS (
    SELECT pc.region, d.diagnosis, arg_max(pc.condition, length(pc.prefix)) AS condition
    FROM diagnoses d
    JOIN pol_condition pc
      ON starts_with(upper(replace(replace(d.diagnosis, '.', ''), ' ', '')), pc.prefix)
    GROUP BY ALL
),
-- Registrations as disjoint segments per (person, condition). A registration pays from its
-- approval day (or the next day, Rizhao's benefit_start) to ended_on; where two are active on
-- the same day the later approval rules (yibao's find_registration). A single registration per
-- (person, condition), every one in the generated data, is its own segment and takes the
-- version's start offset at the claim; several are cut into segments here, with the person's
-- region's offset.
reg AS (
    SELECT person_id, condition,
           coalesce(severity, 'normal') AS severity,
           coalesce("primary", true) AS is_primary,
           approved_on,
           coalesce(ended_on, DATE '9999-12-31') AS ended_on,
           file_row_number AS reg_row,
           count(*) OVER (PARTITION BY person_id, condition) AS n
    FROM read_parquet('${registrations}', file_row_number = true)
    WHERE person_id IS NOT NULL AND condition IS NOT NULL AND approved_on IS NOT NULL
),
reg_multi AS (
    SELECT r.*, r.approved_on + o.start_offset AS starts
    FROM read_parquet('${persons}') p
    JOIN (SELECT * FROM reg WHERE n > 1) r ON r.person_id = p.person_id
    JOIN (SELECT region, max(start_offset) AS start_offset FROM pol_version GROUP BY region) o
      ON o.region = p.region
),
reg_bounds AS (
    SELECT DISTINCT person_id, condition, d FROM (
        SELECT person_id, condition, starts AS d FROM reg_multi
        UNION ALL
        SELECT person_id, condition, ended_on + 1 FROM reg_multi
        WHERE ended_on < DATE '9999-12-31')
),
reg_segments AS (
    SELECT b.person_id, b.condition, b.seg_from, b.seg_to, r.severity, r.is_primary,
           true AS offset_applied
    FROM (SELECT person_id, condition, d AS seg_from,
                 coalesce(lead(d) OVER (PARTITION BY person_id, condition ORDER BY d) - 1,
                          DATE '9999-12-31') AS seg_to
          FROM reg_bounds) b
    JOIN reg_multi r
      ON r.person_id = b.person_id AND r.condition = b.condition
     AND r.starts <= b.seg_from AND b.seg_from <= r.ended_on
    QUALIFY row_number() OVER (PARTITION BY b.person_id, b.condition, b.seg_from
                               ORDER BY r.approved_on DESC, r.reg_row DESC) = 1
),
segments AS (
    SELECT person_id, condition, approved_on AS seg_from, ended_on AS seg_to,
           severity, is_primary, false AS offset_applied
    FROM reg WHERE n = 1
    UNION ALL
    SELECT * FROM reg_segments
),
-- Person, policy version, condition, registration, and both candidate benefits.
joined AS (
    SELECT
        c.*,
        p.person_id IS NOT NULL AS known_person,
        p.file_row_number AS person_key,
        p.scheme IN ('resident', 'employee')
            AND coalesce(p.contribution_tier, 100) IN (100, 80, 60)
            AND coalesce(p.assistance_category IN ('destitute', 'minimum_living',
                                                   'low_income_edge', 'poverty_monitoring'), true)
            AS valid_person,
        p.region AS insured_region,
        CASE WHEN p.scheme = 'employee' AND p.supplementary THEN 'employee_supplementary'
             ELSE p.scheme END AS coverage,
        p.assistance_category IS NOT NULL AS assisted,
        CASE p.contribution_tier WHEN 80 THEN v.tier_red_80 WHEN 60 THEN v.tier_red_60
             ELSE 0 END AS tier_red,
        v.policy_id,
        dm.condition,
        s.person_id IS NOT NULL AS registered,
        s.is_primary,
        NOT v.family_doctor_required OR coalesce(p.family_doctor_signed, false) AS doctor_ok,
        cs.label AS c_label, cs.pool_id AS c_pool, cs.ded_pool_id AS c_ded_pool,
        level_ratio(c.institution_level, c.prescriber_level,
                    cs.r_primary, cs.r_secondary, cs.r_tertiary, cs.r_pharmacy) AS c_lr,
        CASE c.visit WHEN 'outpatient' THEN cs.pays_outpatient WHEN 'pharmacy' THEN cs.pays_pharmacy
             ELSE cs.pays_inpatient END AS c_pays_visit,
        cs.ded_per AS c_ded_per,
        level_pick(c.institution_level, cs.d_primary, cs.d_secondary, cs.d_tertiary,
                   cs.d_pharmacy) AS c_ded,
        cs.cap_fen AS c_cap, cs.cap_cost AS c_cap_cost, cs.tier_reduction AS c_tier_reduction,
        cs.secondary_factor_bp AS c_sf, cs.waive_downward AS c_waive_downward,
        g.label AS g_label, g.pool_id AS g_pool, g.ded_pool_id AS g_ded_pool,
        level_ratio(c.institution_level, c.prescriber_level,
                    g.r_primary, g.r_secondary, g.r_tertiary, g.r_pharmacy) AS g_lr,
        g.ded_per AS g_ded_per,
        level_pick(c.institution_level, g.d_primary, g.d_secondary, g.d_tertiary,
                   g.d_pharmacy) AS g_ded,
        g.cap_fen AS g_cap, g.cap_cost AS g_cap_cost, g.tier_reduction AS g_tier_reduction,
        g.waive_downward AS g_waive_downward
    FROM claims c
    LEFT JOIN read_parquet('${persons}', file_row_number = true) p ON p.person_id = c.person_id
    LEFT JOIN pol_version v
           ON v.region = p.region AND c.day >= v.effective_from
          AND (v.effective_to IS NULL OR c.day <= v.effective_to)
    LEFT JOIN diag_map dm ON dm.region = p.region AND dm.diagnosis = c.diagnosis
    LEFT JOIN segments s
           ON s.person_id = c.person_id AND s.condition = dm.condition
          AND c.day >= s.seg_from + CASE WHEN s.offset_applied THEN 0 ELSE v.start_offset END
          AND c.day <= s.seg_to
    LEFT JOIN pol_slot cs
           ON cs.policy_id = v.policy_id AND cs.severity = s.severity
          AND cs.condition = dm.condition
          AND cs.coverage = CASE WHEN p.scheme = 'employee' AND p.supplementary
                                 THEN 'employee_supplementary' ELSE p.scheme END
    LEFT JOIN pol_general g
           ON g.policy_id = v.policy_id AND g.visit = c.visit
          AND g.coverage = CASE WHEN p.scheme = 'employee' AND p.supplementary
                                THEN 'employee_supplementary' ELSE p.scheme END
),
-- The benefit that pays: the registered condition's where it pays this claim, else the general
-- benefit of the visit type; the ratio after the tier reduction and the secondary factor.
chosen AS (
    SELECT *,
        CASE
            WHEN reject_reason IS NOT NULL THEN 'rejected'
            WHEN reverses_claim_id IS NOT NULL THEN 'reversal'
            WHEN NOT known_person OR NOT valid_person OR policy_id IS NULL THEN 'not_covered'
            WHEN cond_ok OR g_lr >= 0 THEN 'settle'
            ELSE 'not_covered'
        END AS kind,
        CASE
            WHEN reject_reason IS NOT NULL THEN reject_reason
            WHEN reverses_claim_id IS NOT NULL THEN 'reverses_claim'
            WHEN NOT known_person THEN 'unknown_person'
            WHEN NOT valid_person THEN 'invalid_person_record'
            WHEN policy_id IS NULL AND list_contains([${policy_regions}], insured_region)
                THEN 'no_policy_in_force'
            WHEN policy_id IS NULL THEN 'no_policy_for_region'
            WHEN g_lr = -1 THEN 'level_not_covered'
            WHEN g_lr = -3 THEN 'missing_prescriber_level'
            WHEN g_label IS NULL THEN CASE
                WHEN condition IS NULL THEN 'diagnosis_not_covered'
                WHEN NOT registered THEN 'not_registered'
                WHEN NOT doctor_ok THEN 'no_family_doctor'
                WHEN c_label IS NULL THEN 'scheme_not_covered'
                WHEN NOT c_pays_visit THEN 'visit_type_not_covered'
                WHEN c_lr = -1 THEN 'level_not_covered'
                ELSE 'missing_prescriber_level' END
        END AS pre_reason,
        CASE WHEN cond_ok THEN c_label ELSE g_label END AS label,
        CASE WHEN cond_ok THEN c_pool ELSE g_pool END AS pool_id,
        CASE WHEN cond_ok THEN c_ded_pool ELSE g_ded_pool END AS ded_pool_id,
        CASE WHEN cond_ok THEN c_ded_per ELSE g_ded_per END AS ded_per,
        CASE WHEN cond_ok THEN c_ded ELSE g_ded END AS ded_fen,
        CASE WHEN cond_ok THEN c_cap ELSE g_cap END AS cap,
        CASE WHEN cond_ok THEN c_cap_cost ELSE g_cap_cost END AS cap_cost,
        CASE WHEN cond_ok THEN c_waive_downward ELSE g_waive_downward END AS waive_downward,
        CASE WHEN cond_ok THEN c_lr ELSE g_lr END AS lr,
        CASE WHEN cond_ok THEN c_tier_reduction ELSE g_tier_reduction END AS tier_reduction,
        CASE WHEN cond_ok AND NOT is_primary THEN c_sf ELSE 10000 END AS sf
    FROM (SELECT *,
              coalesce(condition IS NOT NULL AND registered AND doctor_ok AND c_label IS NOT NULL
                       AND c_pays_visit AND c_lr >= 0, false) AS cond_ok
          FROM joined)
),
-- Everything known before the year-to-date state: the settlement's inputs per claim.
prepared AS MATERIALIZED (
    SELECT
        rid, claim_id, person_id, person_key, settled_at,
        CAST(region AS region_t) AS region, CAST(institution_level AS level_t) AS institution_level,
        reverses_claim_id, in_scope_fen, self_funded_amount, assisted, label,
        CASE WHEN known_person AND valid_person THEN policy_id END AS policy_id,
        kind, pre_reason, cap, cap_cost,
        pool_id, ded_pool_id,
        -- (person, year of the service date) in one BIGINT: a cheaper partition key than two
        -- columns, and an integer rather than the person_id string
        person_key * 16384 + year(day) AS person_year,
        CASE WHEN kind = 'settle' THEN
            CASE WHEN sf <> 10000 THEN (r1 * sf + 5000) // 10000 ELSE r1 END
        END AS ratio_bp,
        kind = 'settle' AND ded_per = 'year' AND ded_fen > 0 AS annual_deductible,
        -- the annual amount, or the claim's own deductible (per admission, unless waived)
        CASE WHEN ded_per = 'admission' AND waive_downward AND referral = 'downward' THEN 0
             ELSE coalesce(ded_fen, 0) END AS ded_fen
    FROM (SELECT *,
              CASE WHEN tier_reduction AND coverage = 'employee' THEN greatest(lr - tier_red, 0)
                   ELSE lr END AS r1
          FROM chosen)
),
-- The year-to-date part runs on narrow rows (the claims a benefit pays, a dozen columns): the
-- window operators sort their whole payload, so the wide columns wait in `prepared` and are
-- joined back by row id.
to_settle AS (
    SELECT rid, person_year, pool_id, ded_pool_id, settled_at, claim_id,
           in_scope_fen AS eligible_fen, ded_fen, annual_deductible, ratio_bp, cap, cap_cost
    FROM prepared
    WHERE kind = 'settle'
),
-- Annual deductible: absorbed once a year per deductible pool, in (settled_at, claim_id) order.
-- Only the claims under an annual deductible (employees' outpatient pooling) need the window.
deducted AS (
    SELECT * EXCLUDE (cum_eligible, annual_deductible),
        least(ded_fen, cum_eligible) - least(ded_fen, cum_eligible - eligible_fen)
            AS deductible_fen
    FROM (SELECT *,
              sum(eligible_fen) OVER (PARTITION BY person_year, ded_pool_id
                                      ORDER BY settled_at, claim_id
                                      ROWS UNBOUNDED PRECEDING) AS cum_eligible
          FROM to_settle WHERE annual_deductible)
    UNION ALL
    SELECT * EXCLUDE (annual_deductible), least(eligible_fen, ded_fen) AS deductible_fen
    FROM to_settle WHERE NOT annual_deductible
),
-- Annual cap, CONTRACT.md's arithmetic in cumulative form: with full = round(base × ratio) and
-- cum = the pool's running sum of full up to and including this claim,
-- fund = min(cap, cum) − min(cap, cum − full) is min(full, cap_left) claim by claim.
-- A cost-basis cap (cap_basis = "cost") runs the same sum over base.
capped AS (
    SELECT rid, eligible_fen, deductible_fen, ratio_bp, cap, cap_cost, base_fen, full_fen,
        sum(CASE WHEN cap_cost THEN base_fen ELSE full_fen END)
            OVER (PARTITION BY person_year, pool_id
                  ORDER BY settled_at, claim_id ROWS UNBOUNDED PRECEDING) AS cum
    FROM (SELECT *,
              eligible_fen - deductible_fen AS base_fen,
              ((eligible_fen - deductible_fen) * ratio_bp + 5000) // 10000 AS full_fen
          FROM deducted)
),
settled AS (
    SELECT rid, deductible_fen, fund_fen, is_capped, cap_left_fen,
        covered_fen - fund_fen AS copay_fen,
        base_fen - covered_fen AS over_cap_fen
    FROM (
        SELECT *,
            CASE
                WHEN cap IS NULL OR NOT is_capped THEN base_fen
                WHEN cap_cost THEN cov_fen
                WHEN ratio_bp = 0 THEN base_fen
                -- covered = min(base, round(fund / ratio))
                ELSE least(base_fen, (fund_fen * 20000 + ratio_bp) // (2 * ratio_bp))
            END AS covered_fen
        FROM (
            SELECT *,
                CASE WHEN cap IS NULL THEN full_fen
                     WHEN cap_cost THEN (cov_fen * ratio_bp + 5000) // 10000
                     ELSE least(cap, cum) - least(cap, cum - full_fen) END AS fund_fen,
                CASE WHEN cap IS NULL THEN false
                     WHEN cap_cost THEN cov_fen < base_fen
                     ELSE least(cap, cum) - least(cap, cum - full_fen) < full_fen END AS is_capped,
                cap - least(cap, cum) AS cap_left_fen
            FROM (SELECT *,
                      CASE WHEN cap_cost THEN least(cap, cum) - least(cap, cum - base_fen)
                      END AS cov_fen
                  FROM capped)
        )
    )
),
-- A reversal takes its original's settlement, negated. The original: same person, earlier in
-- (settled_at, claim_id) order, not itself a reversal or rejected, amounts the negatives of the
-- reversal's; a second reversal of it is rejected.
reversals AS (
    SELECT r.rid, o.rid AS original_rid,
        CASE
            WHEN o.rid IS NULL THEN 'original_not_found'
            WHEN row_number() OVER (PARTITION BY o.rid ORDER BY r.settled_at, r.claim_id) > 1
                THEN 'already_reversed'
            WHEN o.kind IN ('reversal', 'rejected') THEN 'original_not_reversible'
            WHEN r.in_scope_fen <> -o.in_scope_fen
                 OR r.self_funded_amount <> -o.self_funded_amount
                THEN 'reversal_amount_mismatch'
        END AS reversal_reject,
        o.policy_id AS o_policy_id,
        CASE WHEN o.kind = 'settle' THEN o.label END AS o_label,
        o.ratio_bp AS o_ratio_bp,
        CASE WHEN o.kind = 'settle' THEN o.in_scope_fen ELSE 0 END AS o_eligible_fen
    FROM prepared o
    RIGHT JOIN (SELECT * FROM prepared WHERE kind = 'reversal') r
           ON o.claim_id = r.reverses_claim_id AND o.person_id = r.person_id
          AND (o.settled_at < r.settled_at
               OR (o.settled_at = r.settled_at AND o.claim_id < r.claim_id))
),
reversed AS (
    SELECT rv.rid, rv.reversal_reject IS NULL AS ok, rv.reversal_reject,
           rv.o_policy_id, rv.o_label, rv.o_ratio_bp, rv.o_eligible_fen,
           coalesce(s.deductible_fen, 0) AS o_deductible_fen, coalesce(s.fund_fen, 0) AS o_fund_fen,
           coalesce(s.copay_fen, 0) AS o_copay_fen, coalesce(s.over_cap_fen, 0) AS o_over_cap_fen
    FROM settled s
    RIGHT JOIN reversals rv ON s.rid = rv.original_rid
),
final AS (
    SELECT
        p.claim_id, p.person_id, p.region, p.settled_at, p.institution_level,
        CASE WHEN p.kind <> 'rejected' THEN p.policy_id END AS policy_id,
        CASE WHEN p.kind = 'settle' THEN p.label END AS benefit,
        CASE WHEN p.kind = 'settle' THEN CASE WHEN s.is_capped THEN 'capped' ELSE 'paid' END
             ELSE p.kind END AS status,
        CASE WHEN p.kind = 'settle' THEN CASE WHEN s.is_capped THEN 'annual_cap_reached' END
             ELSE p.pre_reason END AS reason,
        CASE WHEN p.kind = 'settle' THEN p.in_scope_fen ELSE 0 END AS eligible_fen,
        coalesce(s.deductible_fen, 0) AS deductible_fen,
        p.ratio_bp,
        coalesce(s.fund_fen, 0) AS fund_fen,
        coalesce(s.copay_fen, 0) AS copay_fen,
        coalesce(s.over_cap_fen, 0) AS over_cap_fen,
        p.self_funded_amount,
        s.cap_left_fen,
        p.assisted
    FROM prepared p
    LEFT JOIN settled s ON s.rid = p.rid
    WHERE p.kind <> 'reversal'
    UNION ALL
    SELECT
        p.claim_id, p.person_id, p.region, p.settled_at, p.institution_level,
        CASE WHEN r.ok THEN r.o_policy_id END AS policy_id,
        CASE WHEN r.ok THEN r.o_label END AS benefit,
        CASE WHEN r.ok THEN 'reversal' ELSE 'rejected' END AS status,
        coalesce(r.reversal_reject, 'reverses_claim') AS reason,
        CASE WHEN r.ok THEN -r.o_eligible_fen ELSE 0 END AS eligible_fen,
        CASE WHEN r.ok THEN -r.o_deductible_fen ELSE 0 END AS deductible_fen,
        CASE WHEN r.ok THEN r.o_ratio_bp END AS ratio_bp,
        CASE WHEN r.ok THEN -r.o_fund_fen ELSE 0 END AS fund_fen,
        CASE WHEN r.ok THEN -r.o_copay_fen ELSE 0 END AS copay_fen,
        CASE WHEN r.ok THEN -r.o_over_cap_fen ELSE 0 END AS over_cap_fen,
        p.self_funded_amount,
        NULL AS cap_left_fen,              -- simplified: no give-back, so no cap state to report
        p.assisted
    FROM prepared p
    JOIN reversed r ON r.rid = p.rid
    WHERE p.kind = 'reversal'
)
SELECT
    claim_id, person_id, region,
    CAST(settled_at AS TIMESTAMP_MS) AS settled_at,
    institution_level, policy_id, benefit,
    CAST(status AS status_t) AS status,
    CAST(reason AS reason_t) AS reason,
    yuan(eligible_fen) AS eligible_amount,
    yuan(deductible_fen) AS deductible_amount,
    CAST(CAST(ratio_bp AS DECIMAL(5, 0)) * 0.0001 AS DECIMAL(5, 4)) AS ratio,
    yuan(fund_fen) AS fund_paid,
    yuan(copay_fen) AS copay_amount,
    yuan(over_cap_fen) AS over_cap_amount,
    self_funded_amount,
    yuan(cap_left_fen) AS cap_remaining,
    -- the in-scope cost the fund left: deductible + copay + over cap
    yuan(eligible_fen - fund_fen) AS critical_illness_base,
    yuan(CASE WHEN assisted THEN eligible_fen - fund_fen ELSE 0 END) AS assistance_base,
    CAST([] AS VARCHAR[]) AS anomaly_codes,
    CAST(0 AS FLOAT) AS risk_score
FROM final
) TO '${out}' (FORMAT parquet);
