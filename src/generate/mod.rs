//! `yibao generate`: a deterministic synthetic province — a person registry, chronic-condition
//! registrations and one month of claims across the five pooling regions — for tests,
//! benchmarks and demonstrations, since real claims data cannot leave a data centre.
//!
//! The data is shaped to exercise the engine: two-diseases patients with skewed claim counts
//! and heavy-tailed costs, everyday diagnoses no condition benefit covers, out-of-region claims,
//! long prescriptions where Ezhou allows them, reversals, a few deliberately bad rows that
//! ingest must reject, and audit anomalies planted at known rates with their ground truth in
//! `labels.parquet` (`claim_id`, `rule`; never read by `adjudicate`).
//!
//! **A clean baseline.** Claims of ordinary (baseline) claimants fire none of the audit rules;
//! module `catalogue`'s `PolicyFacts` mirror what this needs of `policies/*.toml` (and a test
//! checks them against the files):
//! - `early_refill`: a person's fills of a drug are spaced so that each leaves at most 15 days
//!   of the previous one (a drug still in supply gives way to another of the condition's);
//!   within a day, claims settle in the order they are drawn.
//! - `supply_too_long`: supplies stay within the person's region's limit (84 days; 168 in
//!   Ezhou).
//! - `duplicate_claim`: no two claims of a person share day, institution, drug and amount (a
//!   fen is added when they would).
//! - `unregistered_condition`, `before_benefit_start`, `after_registration_end`: a claimant is
//!   registered, under the name the person's region's policy gives it, for every condition a
//!   diagnosis of theirs maps to (Rizhao's F20 is `severe_mental_disorder`, N18.5
//!   `uraemia_dialysis`), approved a year or more before the month and not ended; everyday
//!   diagnoses map to no condition in any region. Registrations that start or end mid-month
//!   belong to registered non-claimants (and to the plants).
//! - `cap_exhausted`: each person's in-scope cost per cap pool stays within a monthly budget
//!   15–20% below the cost that would use the cap up at the benefit's best ratio (Weihai's
//!   hypertension 360 yuan, general outpatient 850 for residents, …). A claim takes about its
//!   share of what is left (by the pool's expected claims left); a fill that would have to be
//!   cut by more than half becomes a follow-up visit without a fill (no drug, a small fee; at
//!   the person's grassroots institution rather than a pharmacy) — about 9% of claims at 5
//!   claims per claimant.
//! - `amount_outlier` is statistical, and the baseline almost never passes its bar: fills are
//!   cut by at most half (cutting more would lower their drug's median and make others' fills
//!   look extreme) and typical costs are capped softly at 2.5 × the condition's median 30-day
//!   cost. No claim of a 1,000,000-claim month (200,000 persons) passes; a couple in 80,000
//!   claims of 3,000 persons.
//! - `high_cost`: a person's month stays below 79,000 yuan (stays are admitted below 40,000
//!   and end below 60,000).
//! - `pharmacy_without_prescription`: every pharmacy fill has a prescriber level.
//! - `visit_burst`: at most 3 claims a day, 10 in any 7 days, 30 a month per person (only a
//!   configuration of more than about 27 claims per person of the registry exceeds them).
//!
//! **Planted anomalies** (module `plant`). Per chunk, `claims × rate` scripts of each kind
//! (stochastically rounded), each on a claimant of its own whose whole month it writes, never
//! reversed nor copied into a bad row. Each planted claim fires exactly its own rule; the
//! labels list exactly the claims the rule flags:
//!
//! | rule | scripts per 10,000 claims | labels per script | labelled claims |
//! |---|---|---|---|
//! | `early_refill` | 20 | 1 | ≈ 0.20% |
//! | `supply_too_long` | 20 | 1 | ≈ 0.20% |
//! | `duplicate_claim` | 20 | 1 | ≈ 0.20% |
//! | `unregistered_condition` | 10 | 1–3 (half on assisted persons) | ≈ 0.20% |
//! | `before_benefit_start` | 13 | 1–2 (Rizhao: the approval day too) | ≈ 0.20% |
//! | `after_registration_end` | 13 | 1–2 | ≈ 0.20% |
//! | `cap_exhausted` | 7 | 2–4 claims after a 20,000–30,000-yuan visit | ≈ 0.21% |
//! | `high_cost` | 15 | 1 (a 100,000–160,000-yuan stay) | ≈ 0.15% |
//! | `pharmacy_without_prescription` | 13 | 1–2 | ≈ 0.20% |
//! | `visit_burst` | 7 | 2–4 (the 4th and later of 5–7 claims in a day) | ≈ 0.21% |
//! | `amount_outlier` | 15 | 1 (27–36 × its drug's typical cost) | ≈ 0.15% |
//!
//! Scripts take at most a quarter of a chunk's claimants and a fifth of its claims, none in a
//! chunk of fewer than 8 claimants. The cap plants are what makes claims `capped`: baseline
//! caps are approached, never used up. The labels are exact for months in which every
//! region's policy is in force (from 2022-01): before, the engine audits no claim of a region
//! without a policy.
//!
//! **A skewed month** (`--profile skewed`, [`MonthProfile::Skewed`]; module `skewed`). Real
//! months are not clean, and benchmarks of the audit stage and of the anomaly output need one
//! where flags are the common case. The registry (`persons.parquet`), the chunks and the
//! plants are drawn as in a clean month; the baseline claimants are not held to the
//! constraints above:
//! - claims per claimant are one each plus a share of the rest in proportion to a Lomax
//!   (Pareto from zero) weight of shape 1.3, saturating softly at 3,000 times its scale: on
//!   1,000,000 claims over 200,000 persons (150,000 claimants, 6.7 claims each on average) two
//!   in three claim one to three times, the top 1% hold 31% of the claims and the top claimant
//!   has 4,449 (the soft cap binds, so a larger month's top claimant stays at a few
//!   thousand);
//! - claims come in episodes of three days, one per five claims, so a second fill of a drug
//!   mostly comes within days of the first, and claimants of a few dozen claims or more burst
//!   (more than three claims a day or ten a week);
//! - claimants fill their usual drug whatever is still in supply, 10% of chronic fills exceed
//!   the region's supply limit and 2% of pharmacy fills have no prescriber level;
//! - 30% of claimants with a chronic condition are not registered for one of their conditions;
//! - there are no cap budgets and no ceiling on a month's cost: heavy claimants use their caps
//!   up (every later claim of the pool is `cap_exhausted`) and pass the high-cost line.
//!
//! Measured on that month (seed 2024): 1.55 anomaly rows per claim row and 75% of claims
//! flagged — `early_refill` 0.50 a claim, `visit_burst` 0.39, `cap_exhausted` 0.35,
//! `unregistered_condition` 0.20, `supply_too_long` 0.09; claims of claimants with more than
//! 100 claims (a quarter of all) carry 2.8 flags each, those of claimants with one to three
//! about 0.5. Each planted claim still fires its own rule, but **the labels are only a small
//! subset of what fires**: the baseline fires `early_refill`, `visit_burst`, `cap_exhausted`,
//! `unregistered_condition`, `supply_too_long`, `pharmacy_without_prescription` and
//! `high_cost` (the registration-date rules, `duplicate_claim` and `amount_outlier` still
//! fire on plants only, or nearly). As for a clean month, the same configuration gives the
//! same bytes; and a clean month is byte for byte what it was before the profile existed.
//!
//! **Reproducibility.** The same configuration gives byte-identical files on any machine and
//! for any rayon thread count (with the same `parquet` crate version, whose name is in the
//! footer): persons are cut into fixed chunks of 4,096, each drawn from its own hand-written RNG
//! stream keyed by `(seed, chunk)` (module `rng`, which also avoids the platform's `libm`), each
//! chunk's share of the claims follows from its position alone, and Parquet row groups are cut
//! between chunks only. Within a chunk, claims are in settlement order; an original always
//! precedes its reversal.

mod catalogue;
mod chunk;
mod plant;
pub(crate) mod rng;
mod schema;
mod skewed;

use std::path::PathBuf;

use parquet::basic::{Compression, ZstdLevel};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::output::parquet::{FileSettings, PendingFile, ROW_GROUP_ROWS};
use chunk::Plan;

/// What kind of month to draw: one whose baseline fires no audit rule, or one where flags are
/// the common case (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MonthProfile {
    /// Baseline claims fire no rule; the labels are exactly what fires.
    #[default]
    Clean,
    /// Heavy-tailed claims per person, careless refills and supplies, visit bursts and
    /// unregistered conditions: about 1.5 anomaly rows per claim.
    Skewed,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// Size of the person registry (`persons.parquet` rows).
    pub persons: u64,
    /// Exact number of claim rows written, reversals and bad rows included.
    pub claims: u64,
    /// The month the claims are settled in.
    pub year: i32,
    pub month: u32,
    /// Names the province: same seed, same files.
    pub seed: u64,
    /// The kind of month: [`MonthProfile::Clean`] unless a benchmark wants flags everywhere.
    pub profile: MonthProfile,
    /// Directory for `persons.parquet`, `registrations.parquet`, `claims.parquet` and
    /// `labels.parquet`; created if missing.
    pub out: PathBuf,
}

/// Row counts of what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateReport {
    pub persons: u64,
    pub registrations: u64,
    /// All claim rows, equal to the configured count.
    pub claims: u64,
    /// Claim rows that reverse an earlier claim.
    pub reversals: u64,
    /// Claim rows written invalid on purpose (null keys, in-scope above total, a negative total
    /// without a reversal, an unknown institution level, a duplicated claim id).
    pub bad_rows: u64,
    /// Rows of `labels.parquet`: planted claims with the audit rule each should fire.
    pub labels: u64,
}

/// Writes the synthetic province described by `cfg` into `cfg.out`. Each file appears
/// atomically (written as `name.parquet.tmp`, then renamed); on error no `.tmp` file is left.
pub fn generate(cfg: &GenerateConfig) -> Result<GenerateReport> {
    generate_with(cfg, ROW_GROUP_ROWS)
}

/// [`generate`] with a chosen row-group size, so tests can cover multi-row-group files cheaply.
fn generate_with(cfg: &GenerateConfig, row_group_rows: usize) -> Result<GenerateReport> {
    validate(cfg)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let plan = Plan::new(
        cfg.persons,
        cfg.claims,
        cfg.year,
        cfg.month,
        cfg.seed,
        cfg.profile,
    );
    // Inputs are written once and read by every run: zstd makes them small for little cost.
    let settings = FileSettings {
        compression: Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(|e| Error::parquet(&cfg.out, e))?,
        ),
        row_group_rows,
        ..FileSettings::PER_CLAIM
    };

    let mut persons = PendingFile::create_with(
        &cfg.out.join("persons.parquet"),
        schema::persons(),
        &settings,
    )?;
    let mut registrations = PendingFile::create_with(
        &cfg.out.join("registrations.parquet"),
        schema::registrations(),
        &settings,
    )?;
    let mut claims =
        PendingFile::create_with(&cfg.out.join("claims.parquet"), schema::claims(), &settings)?;
    let mut labels =
        PendingFile::create_with(&cfg.out.join("labels.parquet"), schema::labels(), &settings)?;

    let mut report = GenerateReport {
        persons: cfg.persons,
        registrations: 0,
        claims: 0,
        reversals: 0,
        bad_rows: 0,
        labels: 0,
    };
    // Chunks are built a wave at a time (about a row group of claims) to bound memory; the
    // wave size affects neither the rows nor where row groups are cut.
    let wave = (ROW_GROUP_ROWS as u64 / plan.claims_per_chunk().max(1)).clamp(8, 256);
    let chunks = plan.chunk_count();
    let mut first = 0;
    while first < chunks {
        let last = (first + wave).min(chunks);
        let outputs: Vec<Result<chunk::ChunkOutput>> = (first..last)
            .into_par_iter()
            .map(|c| chunk::generate(&plan, c))
            .collect();
        for output in outputs {
            let output = output?;
            report.registrations += output.registrations.num_rows() as u64;
            report.claims += output.claims.num_rows() as u64;
            report.reversals += output.reversals;
            report.bad_rows += output.bad_rows;
            report.labels += output.labels.num_rows() as u64;
            persons.write(&output.persons)?;
            registrations.write(&output.registrations)?;
            claims.write(&output.claims)?;
            labels.write(&output.labels)?;
        }
        first = last;
    }
    debug_assert_eq!(report.claims, cfg.claims);
    persons.close()?.commit()?;
    registrations.close()?.commit()?;
    claims.close()?.commit()?;
    labels.close()?.commit()?;
    Ok(report)
}

fn validate(cfg: &GenerateConfig) -> Result<()> {
    if !(1..=12).contains(&cfg.month) {
        return Err(Error::Usage(format!(
            "generate: month {} is not 1–12",
            cfg.month
        )));
    }
    if !(1900..=9999).contains(&cfg.year) {
        return Err(Error::Usage(format!(
            "generate: year {} is out of range",
            cfg.year
        )));
    }
    if cfg.claims > 0 && cfg.persons == 0 {
        return Err(Error::Usage(
            "generate: claims need at least one person".to_string(),
        ));
    }
    // Claim rows of a chunk are numbered in u32.
    if cfg.persons > 0
        && cfg.claims / cfg.persons.div_ceil(chunk::CHUNK_PERSONS) > u32::MAX as u64 / 2
    {
        return Err(Error::Usage(
            "generate: too many claims per person".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::fs::File;
    use std::path::Path;

    use arrow::array::{
        Array, AsArray, BooleanArray, Date32Array, Decimal128Array, Int16Array, Int32Array,
        RecordBatch, StringArray, TimestampMillisecondArray,
    };
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::domain::{days_from_civil, Level, MILLIS_PER_DAY};

    const FILES: [&str; 4] = [
        "persons.parquet",
        "registrations.parquet",
        "claims.parquet",
        "labels.parquet",
    ];

    fn config(dir: &Path, persons: u64, claims: u64, seed: u64) -> GenerateConfig {
        GenerateConfig {
            persons,
            claims,
            year: 2024,
            month: 3,
            seed,
            profile: MonthProfile::Clean,
            out: dir.to_path_buf(),
        }
    }

    fn bytes(dir: &Path) -> Vec<Vec<u8>> {
        FILES
            .iter()
            .map(|f| std::fs::read(dir.join(f)).unwrap())
            .collect()
    }

    fn read(path: &Path) -> (RecordBatch, usize) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let row_groups = builder.metadata().num_row_groups();
        let schema = builder.schema().clone();
        let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
        (concat_batches(&schema, &batches).unwrap(), row_groups)
    }

    fn text<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
        batch.column_by_name(name).unwrap().as_string::<i32>()
    }

    fn money<'a>(batch: &'a RecordBatch, name: &str) -> &'a Decimal128Array {
        batch.column_by_name(name).unwrap().as_primitive()
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn same_seed_same_bytes_for_any_thread_count() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        // Small row groups, so the files have several and chunks straddle wave boundaries.
        let run = |dir: &Path, seed: u64, threads: usize| {
            pool(threads)
                .install(|| generate_with(&config(dir, 30_000, 90_001, seed), 20_000))
                .unwrap()
        };
        let ra = run(a.path(), 11, 1);
        let rb = run(b.path(), 11, 2);
        assert_eq!(ra, rb);
        assert_eq!(bytes(a.path()), bytes(b.path()));
        let (_, row_groups) = read(&a.path().join("claims.parquet"));
        assert!(row_groups >= 4, "{row_groups} row groups");

        // Again on the same directory: the files are replaced by identical ones.
        run(a.path(), 11, 2);
        assert_eq!(bytes(a.path()), bytes(b.path()));

        run(c.path(), 12, 2);
        let (x, y) = (bytes(a.path()), bytes(c.path()));
        for i in 0..4 {
            assert_ne!(x[i], y[i], "{} does not depend on the seed", FILES[i]);
        }
        let leftovers: Vec<_> = std::fs::read_dir(a.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn persons_do_not_depend_on_the_claims_count() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&config(a.path(), 9_000, 1_000, 5)).unwrap();
        generate(&config(b.path(), 9_000, 30_000, 5)).unwrap();
        assert_eq!(bytes(a.path())[0], bytes(b.path())[0]);
    }

    #[test]
    fn schemas_are_the_contracts() {
        let dir = tempfile::tempdir().unwrap();
        generate(&config(dir.path(), 2_000, 5_000, 1)).unwrap();
        let money = DataType::Decimal128(18, 2);
        let expected: [(&str, Vec<(&str, DataType)>); 3] = [
            (
                "persons.parquet",
                vec![
                    ("person_id", DataType::Utf8),
                    ("region", DataType::Utf8),
                    ("scheme", DataType::Utf8),
                    ("supplementary", DataType::Boolean),
                    ("contribution_tier", DataType::Int16),
                    ("assistance_category", DataType::Utf8),
                    ("family_doctor_signed", DataType::Boolean),
                ],
            ),
            (
                "registrations.parquet",
                vec![
                    ("person_id", DataType::Utf8),
                    ("condition", DataType::Utf8),
                    ("severity", DataType::Utf8),
                    ("primary", DataType::Boolean),
                    ("approved_on", DataType::Date32),
                    ("ended_on", DataType::Date32),
                ],
            ),
            (
                "claims.parquet",
                vec![
                    ("claim_id", DataType::Utf8),
                    ("person_id", DataType::Utf8),
                    ("region", DataType::Utf8),
                    (
                        "settled_at",
                        DataType::Timestamp(TimeUnit::Millisecond, None),
                    ),
                    ("service_date", DataType::Date32),
                    ("institution_id", DataType::Utf8),
                    ("institution_level", DataType::Utf8),
                    ("prescriber_level", DataType::Utf8),
                    ("visit_type", DataType::Utf8),
                    ("diagnosis", DataType::Utf8),
                    ("total_amount", money.clone()),
                    ("in_scope_amount", money),
                    ("drug_code", DataType::Utf8),
                    ("days_supply", DataType::Int32),
                    ("reverses_claim_id", DataType::Utf8),
                    ("referral", DataType::Utf8),
                    ("medical_community_id", DataType::Utf8),
                ],
            ),
        ];
        for (file, columns) in expected {
            let builder = ParquetRecordBatchReaderBuilder::try_new(
                File::open(dir.path().join(file)).unwrap(),
            )
            .unwrap();
            let got: Vec<(String, DataType)> = builder
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect();
            let want: Vec<(String, DataType)> = columns
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect();
            assert_eq!(got, want, "{file}");
        }
    }

    #[test]
    fn claim_count_is_exact_for_awkward_sizes() {
        for (persons, claims) in [
            (1, 7),
            (4_097, 1_000),
            (10_000, 12_345),
            (50_000, 3),
            (3, 0),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let report = generate(&config(dir.path(), persons, claims, 99)).unwrap();
            assert_eq!(report.claims, claims);
            assert_eq!(report.persons, persons);
            assert_eq!(
                report.bad_rows,
                if claims >= 1000 {
                    (claims / 5000).max(1)
                } else {
                    0
                }
            );
            let (batch, _) = read(&dir.path().join("claims.parquet"));
            assert_eq!(
                batch.num_rows() as u64,
                claims,
                "{persons} persons, {claims} claims"
            );
            let (people, _) = read(&dir.path().join("persons.parquet"));
            assert_eq!(people.num_rows() as u64, persons);
        }
    }

    #[test]
    fn refuses_impossible_configurations() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 0, 10, 1);
        assert!(matches!(generate(&cfg), Err(Error::Usage(_))));
        cfg.persons = 10;
        cfg.month = 13;
        assert!(matches!(generate(&cfg), Err(Error::Usage(_))));
    }

    /// One 200k-claim province, checked row by row against the contract and for its mix.
    #[test]
    fn province_is_valid_and_shaped_as_specified() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 50_000, 200_000, 2024);
        let report = generate(&cfg).unwrap();
        let (claims, _) = read(&dir.path().join("claims.parquet"));
        let (persons, _) = read(&dir.path().join("persons.parquet"));
        let (regs, _) = read(&dir.path().join("registrations.parquet"));
        assert_eq!(claims.num_rows(), 200_000);
        assert_eq!(report.registrations as usize, regs.num_rows());

        let id = text(&claims, "claim_id");
        let person = text(&claims, "person_id");
        let region = text(&claims, "region");
        let level = text(&claims, "institution_level");
        let visit = text(&claims, "visit_type");
        let referral = text(&claims, "referral");
        let community = text(&claims, "medical_community_id");
        let (mut referrals, mut with_community) = (0u32, 0u32);
        let prescriber = text(&claims, "prescriber_level");
        let diagnosis = text(&claims, "diagnosis");
        let institution = text(&claims, "institution_id");
        let drug = text(&claims, "drug_code");
        let reverses = text(&claims, "reverses_claim_id");
        let total = money(&claims, "total_amount");
        let in_scope = money(&claims, "in_scope_amount");
        let settled: &TimestampMillisecondArray =
            claims.column_by_name("settled_at").unwrap().as_primitive();
        let service: &Date32Array = claims
            .column_by_name("service_date")
            .unwrap()
            .as_primitive();
        let days: &Int32Array = claims.column_by_name("days_supply").unwrap().as_primitive();
        let n = claims.num_rows();

        // Bad rows other than duplicates are recognisable one by one.
        let obviously_bad = |i: usize| {
            id.is_null(i)
                || person.is_null(i)
                || (reverses.is_null(i)
                    && (in_scope.value(i) > total.value(i) || total.value(i) < 0))
                || Level::parse(level.value(i)).is_none()
        };
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut duplicates = 0u64;
        let mut bad = 0u64;
        let mut is_bad = vec![false; n];
        for (i, flag) in is_bad.iter_mut().enumerate() {
            if obviously_bad(i) {
                bad += 1;
                *flag = true;
            } else if let Some(&first) = seen.get(id.value(i)) {
                // A duplicate is a later resubmission of a whole earlier claim.
                duplicates += 1;
                *flag = true;
                assert!(settled.value(i) > settled.value(first));
                assert_eq!(person.value(i), person.value(first));
                assert_eq!(total.value(i), total.value(first));
            } else {
                seen.insert(id.value(i), i);
            }
        }
        // 40 bad rows, kinds cycled from `DuplicateClaimId`: 7 duplicates.
        assert_eq!(report.bad_rows, 40);
        assert_eq!(duplicates, 7);
        assert_eq!(bad + duplicates, report.bad_rows);

        let month_start = days_from_civil(2024, 3, 1) as i64 * MILLIS_PER_DAY;
        let month_end = days_from_civil(2024, 4, 1) as i64 * MILLIS_PER_DAY;
        let mut reversals = 0u64;
        let mut counts = HashMap::<&str, u32>::new();
        let (mut non_chronic, mut inpatient, mut null_visit, mut pharmacy) = (0, 0, 0, 0);
        let (mut no_prescriber, mut full_scope, mut out_of_region, mut long_supply) = (0, 0, 0, 0);
        let mut level_counts = HashMap::<&str, u32>::new();
        for i in 0..n {
            assert!((month_start..month_end).contains(&settled.value(i)));
            if is_bad[i] {
                continue;
            }
            if !reverses.is_null(i) {
                reversals += 1;
                let original = seen[reverses.value(i)];
                assert!(original < i, "a reversal follows its original in the file");
                assert!(settled.value(original) < settled.value(i));
                assert_eq!(total.value(i), -total.value(original));
                assert_eq!(in_scope.value(i), -in_scope.value(original));
                assert!(reverses.is_null(original));
                for c in [1, 2, 4, 5, 6, 7, 8, 9, 12, 13] {
                    let column = claims.column(c);
                    assert_eq!(
                        &column.slice(i, 1),
                        &column.slice(original, 1),
                        "column {c}"
                    );
                }
                continue;
            }
            assert!(0 <= in_scope.value(i) && in_scope.value(i) <= total.value(i));
            assert!(total.value(i) > 0);
            *counts.entry(person.value(i)).or_default() += 1;
            *level_counts.entry(level.value(i)).or_default() += 1;
            full_scope += (in_scope.value(i) == total.value(i)) as u32;
            let own_region = &person.value(i)[1..7];
            out_of_region += (own_region != region.value(i)) as u32;
            assert!(institution.value(i)[1..].starts_with(region.value(i)));
            if catalogue::NON_CHRONIC_CODES
                .iter()
                .any(|(c, _)| *c == diagnosis.value(i))
            {
                non_chronic += 1;
            }
            match level.value(i) {
                "pharmacy" => {
                    pharmacy += 1;
                    assert_eq!(visit.value(i), "pharmacy");
                    assert!(institution.value(i).starts_with('D'));
                    no_prescriber += prescriber.is_null(i) as u32;
                }
                l => {
                    assert!(prescriber.is_null(i));
                    assert!(institution.value(i).starts_with('H'));
                    if visit.is_null(i) {
                        null_visit += 1;
                    } else if visit.value(i) == "inpatient" {
                        inpatient += 1;
                        assert!(l != "pharmacy");
                        referrals += referral.is_valid(i) as u32;
                        assert!(drug.is_null(i) && days.is_null(i));
                        assert!(total.value(i) >= 200_000);
                        let discharge = service.value(i) as i64 * MILLIS_PER_DAY;
                        assert!(
                            settled.value(i) >= discharge
                                && settled.value(i) < discharge + 2 * MILLIS_PER_DAY
                        );
                    } else {
                        assert_eq!(visit.value(i), "outpatient");
                    }
                    if visit.is_null(i) || visit.value(i) != "inpatient" {
                        assert!(referral.is_null(i));
                    }
                    if community.is_valid(i) {
                        assert!(community.value(i).starts_with('M'));
                        with_community += 1;
                    }
                }
            }
            if !days.is_null(i) {
                long_supply += (days.value(i) > 84) as u32;
                assert_eq!(drug.value(i).len(), 23);
            }
            if !service.is_null(i) && visit.is_null(i) {
                assert_eq!(
                    service.value(i) as i64,
                    settled.value(i).div_euclid(MILLIS_PER_DAY)
                );
            }
        }
        let rate = |x: u32| x as f64 / n as f64;
        // Heavy claimants' claims beyond their cap budgets are visits without a fill.
        let drugless = (0..n)
            .filter(|&i| {
                !is_bad[i] && drug.is_null(i) && (visit.is_null(i) || visit.value(i) != "inpatient")
            })
            .count();
        assert!(
            (0.02..0.15).contains(&(drugless as f64 / n as f64)),
            "drugless {drugless}"
        );
        let reversal_rate = reversals as f64 / n as f64;
        assert!(
            (0.003..0.007).contains(&reversal_rate),
            "reversals {reversal_rate}"
        );
        assert_eq!(reversals, report.reversals);
        for (l, want) in [
            ("primary", 0.45),
            ("secondary", 0.20),
            ("tertiary", 0.10),
            ("pharmacy", 0.25),
        ] {
            let got = rate(level_counts[l]);
            assert!((got - want).abs() < 0.03, "{l}: {got}");
        }
        assert!(
            (0.05..0.11).contains(&rate(non_chronic)),
            "non-chronic {}",
            rate(non_chronic)
        );
        assert!(
            (0.008..0.02).contains(&rate(inpatient)),
            "inpatient {}",
            rate(inpatient)
        );
        assert!(
            (0.025..0.05).contains(&rate(null_visit)),
            "null visit {}",
            rate(null_visit)
        );
        // Only planted pharmacy fills lack a prescriber level.
        let unprescribed = no_prescriber as f64 / pharmacy as f64;
        assert!((0.003..0.02).contains(&unprescribed), "{unprescribed}");
        let referred = referrals as f64 / inpatient as f64;
        assert!((0.08..0.25).contains(&referred), "referrals {referred}");
        assert!(with_community > 0);
        assert!(
            (0.17..0.23).contains(&rate(full_scope)),
            "full scope {}",
            rate(full_scope)
        );
        assert!(
            (0.02..0.04).contains(&rate(out_of_region)),
            "out of region {}",
            rate(out_of_region)
        );
        // Above 84 days: Ezhou's long prescriptions (up to 168) and planted ones.
        assert!(
            (0.002..0.01).contains(&rate(long_supply)),
            "long supply {}",
            rate(long_supply)
        );

        // Skewed claims per claimant: most claim a few times, a tail claims 20+ times.
        let claimants = counts.len() as f64;
        let few = counts.values().filter(|&&c| c <= 3).count() as f64 / claimants;
        let many = counts.values().filter(|&&c| c >= 20).count() as f64 / claimants;
        assert!(few > 0.5, "1–3 claims: {few}");
        assert!((0.005..0.1).contains(&many), "20+ claims: {many}");
        assert!(claimants < 0.8 * persons.num_rows() as f64);

        // Persons: the scheme and registry mix.
        let scheme = text(&persons, "scheme");
        let employees = (0..persons.num_rows())
            .filter(|&i| scheme.value(i) == "employee")
            .count();
        let share = employees as f64 / persons.num_rows() as f64;
        assert!((0.28..0.32).contains(&share), "employees {share}");
        let tier: &Int16Array = persons
            .column_by_name("contribution_tier")
            .unwrap()
            .as_primitive();
        let supplementary: &BooleanArray = persons
            .column_by_name("supplementary")
            .unwrap()
            .as_boolean();
        let assistance = text(&persons, "assistance_category");
        for i in 0..persons.num_rows() {
            if scheme.value(i) == "resident" {
                assert!(tier.is_null(i));
                assert!(supplementary.is_null(i) || !supplementary.value(i));
            } else {
                assert!(assistance.is_null(i));
                assert!(tier.is_null(i) || [100, 80, 60].contains(&tier.value(i)));
            }
        }
        let ids: HashSet<&str> = (0..persons.num_rows())
            .map(|i| text(&persons, "person_id").value(i))
            .collect();
        assert_eq!(ids.len(), persons.num_rows());
        assert!(counts.keys().all(|p| ids.contains(p)));

        // Registrations: two-diseases pairs have exactly one primary; a few claimants with a
        // chronic diagnosis have no registration at all.
        let reg_person = text(&regs, "person_id");
        let condition = text(&regs, "condition");
        let primary: &BooleanArray = regs.column_by_name("primary").unwrap().as_boolean();
        let mut by_person: HashMap<&str, Vec<usize>> = HashMap::new();
        for i in 0..regs.num_rows() {
            by_person.entry(reg_person.value(i)).or_default().push(i);
        }
        let mut pairs = 0;
        for rows in by_person.values() {
            let two: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&i| ["hypertension", "diabetes"].contains(&condition.value(i)))
                .collect();
            if two.len() == 2 {
                pairs += 1;
                let primaries = two
                    .iter()
                    .filter(|&&i| primary.is_null(i) || primary.value(i))
                    .count();
                assert_eq!(primaries, 1);
            }
        }
        assert!(pairs > 0);
        let chronic_claimants: HashSet<&str> = (0..n)
            .filter(|&i| !is_bad[i] && ["I10", "E11.9"].contains(&diagnosis.value(i)))
            .map(|i| person.value(i))
            .collect();
        let unregistered = chronic_claimants
            .iter()
            .filter(|p| !by_person.contains_key(**p))
            .count() as f64
            / chronic_claimants.len() as f64;
        // Only planted: 0.1% of claims are scripts of 1–3 unregistered chronic claims.
        assert!(
            (0.001..0.02).contains(&unregistered),
            "unregistered {unregistered}"
        );

        // Heavy tail: at this month's pace most claimants would pass a 2,500-yuan cost in a
        // year, and some pass a 1,000-yuan fund cap at 60% (1,666.67 yuan) within the month.
        let mut month_cost: HashMap<&str, i128> = HashMap::new();
        for i in (0..n).filter(|&i| !is_bad[i]) {
            let outpatient = !visit.is_null(i) && visit.value(i) != "inpatient";
            if reverses.is_null(i) && outpatient {
                *month_cost.entry(person.value(i)).or_default() += in_scope.value(i);
            }
        }
        let share_over =
            |fen: i128| month_cost.values().filter(|&&c| c > fen).count() as f64 / claimants;
        let yearly = share_over(250_000 / 12);
        let monthly = share_over(166_667);
        assert!((0.4..0.95).contains(&yearly), "over 2,500 a year {yearly}");
        assert!(
            (0.03..0.25).contains(&monthly),
            "over 1,666.67 in the month {monthly}"
        );
    }

    /// The audit rules as the engine defines them (the definitions), computed from a
    /// generated month and the engine's settlement of it: the claim ids each rule flags, the
    /// settlement statuses, and the persons with a capped claim.
    struct Audit {
        flagged: HashMap<&'static str, HashSet<String>>,
        statuses: HashMap<String, usize>,
        capped_persons: HashSet<String>,
        claims: usize,
    }

    fn settle(dir: &Path) -> RecordBatch {
        let out = dir.join("adjudicated");
        crate::run::adjudicate(&crate::run::AdjudicateArgs {
            claims: dir.join("claims.parquet"),
            persons: dir.join("persons.parquet"),
            registrations: dir.join("registrations.parquet"),
            state: None,
            state_version: None,
            policies: Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            out: out.clone(),
            threads: Some(2),
            memory_limit: None,
            part_claims: None,
            compress_spill: None,
            spill_around_page_cache: None,
        })
        .unwrap();
        read(&out.join("settlements.parquet")).0
    }

    fn audit(dir: &Path) -> Audit {
        let (claims, _) = read(&dir.join("claims.parquet"));
        let (persons, _) = read(&dir.join("persons.parquet"));
        let settlements = settle(dir);
        // Settlement rows are the input rows with non-null keys, in output order: `rows[s]` is
        // the input row of settlement row `s`, matched by claim id (a repeated id's rows in
        // input order; the generator's repeats are exact copies).
        let keys = [
            "claim_id",
            "person_id",
            "region",
            "settled_at",
            "institution_level",
        ];
        let mut by_id: HashMap<&str, std::collections::VecDeque<usize>> = HashMap::new();
        let input_id = text(&claims, "claim_id");
        for i in 0..claims.num_rows() {
            if keys
                .iter()
                .all(|k| claims.column_by_name(k).unwrap().is_valid(i))
            {
                by_id.entry(input_id.value(i)).or_default().push_back(i);
            }
        }
        let settled_id = text(&settlements, "claim_id");
        let rows: Vec<usize> = (0..settlements.num_rows())
            .map(|s| {
                by_id
                    .get_mut(settled_id.value(s))
                    .and_then(|q| q.pop_front())
                    .expect("every settlement row is an input row")
            })
            .collect();
        assert_eq!(rows.len(), settlements.num_rows());
        let id = text(&claims, "claim_id");
        let person = text(&claims, "person_id");
        let level = text(&claims, "institution_level");
        let prescriber = text(&claims, "prescriber_level");
        let institution = text(&claims, "institution_id");
        let drug = text(&claims, "drug_code");
        let reverses = text(&claims, "reverses_claim_id");
        let total = money(&claims, "total_amount");
        let settled: &TimestampMillisecondArray =
            claims.column_by_name("settled_at").unwrap().as_primitive();
        let service: &Date32Array = claims
            .column_by_name("service_date")
            .unwrap()
            .as_primitive();
        let supply: &Int32Array = claims.column_by_name("days_supply").unwrap().as_primitive();
        let status = text(&settlements, "status");
        let condition_reason = text(&settlements, "condition_reason");
        let cap_remaining = money(&settlements, "cap_remaining");
        let fund = money(&settlements, "fund_paid");
        let out_id = text(&settlements, "claim_id");
        let person_region: HashMap<&str, &str> = (0..persons.num_rows())
            .map(|i| {
                (
                    text(&persons, "person_id").value(i),
                    text(&persons, "region").value(i),
                )
            })
            .collect();
        let day = |i: usize| {
            if service.is_valid(i) {
                service.value(i) as i64
            } else {
                settled.value(i).div_euclid(MILLIS_PER_DAY)
            }
        };
        let same_text = |a: &StringArray, i: usize, j: usize| {
            a.is_valid(i) == a.is_valid(j) && (a.is_null(i) || a.value(i) == a.value(j))
        };

        let mut flagged: HashMap<&'static str, HashSet<String>> = HashMap::new();
        let mut statuses: HashMap<String, usize> = HashMap::new();
        let mut capped_persons = HashSet::new();
        let mut by_person: HashMap<&str, Vec<usize>> = HashMap::new();
        for (s, &i) in rows.iter().enumerate() {
            assert_eq!(out_id.value(s), id.value(i));
            *statuses.entry(status.value(s).to_string()).or_default() += 1;
            if status.value(s) == "capped" {
                capped_persons.insert(person.value(i).to_string());
            }
            if status.value(s) != "rejected" {
                by_person.entry(person.value(i)).or_default().push(s);
            }
        }
        let counts = |s: usize| matches!(status.value(s), "paid" | "capped" | "not_covered");
        let mut amounts: Vec<(&str, &str, i128, usize)> = Vec::new();
        for (p, list) in by_person.iter_mut() {
            list.sort_by_key(|&s| (settled.value(rows[s]), id.value(rows[s])));
            let max_supply = if person_region[p] == "420700" {
                168
            } else {
                84
            };
            let mut reversed_at = vec![usize::MAX; list.len()];
            let mut ytd: i128 = 0;
            for k in 0..list.len() {
                let (s, i) = (list[k], rows[list[k]]);
                let mut flag = |rule: &'static str| {
                    flagged
                        .entry(rule)
                        .or_default()
                        .insert(id.value(i).to_string());
                };
                if status.value(s) == "reversal" {
                    ytd += total.value(i);
                    if let Some(j) = (0..k).find(|&j| id.value(rows[list[j]]) == reverses.value(i))
                    {
                        reversed_at[j] = reversed_at[j].min(k);
                    }
                    continue;
                }
                assert!(counts(s), "{}", status.value(s));
                let before = ytd;
                ytd += total.value(i);
                if before < catalogue::HIGH_COST_FEN as i128
                    && ytd >= catalogue::HIGH_COST_FEN as i128
                {
                    flag("high_cost");
                }
                if level.value(i) == "pharmacy" && prescriber.is_null(i) {
                    flag("pharmacy_without_prescription");
                }
                if condition_reason.is_valid(s) {
                    match condition_reason.value(s) {
                        "not_registered" => flag("unregistered_condition"),
                        "before_benefit_start" => flag("before_benefit_start"),
                        "registration_ended" => flag("after_registration_end"),
                        _ => {}
                    }
                }
                if cap_remaining.is_valid(s) && cap_remaining.value(s) + fund.value(s) <= 0 {
                    flag("cap_exhausted");
                }
                let earlier = |j: usize| counts(list[j]) && reversed_at[j] > k;
                let duplicate = (0..k).any(|j| {
                    let e = rows[list[j]];
                    earlier(j)
                        && same_text(institution, i, e)
                        && same_text(drug, i, e)
                        && total.value(i) == total.value(e)
                        && day(i) == day(e)
                });
                if duplicate {
                    flag("duplicate_claim");
                }
                if supply.is_valid(i) {
                    if supply.value(i) > max_supply {
                        flag("supply_too_long");
                    }
                    if drug.is_valid(i) {
                        let last = (0..k).rev().find(|&j| {
                            let e = rows[list[j]];
                            earlier(j) && same_text(drug, i, e) && supply.is_valid(e)
                        });
                        if let Some(j) = last {
                            let e = rows[list[j]];
                            let remaining = day(e) + supply.value(e) as i64 - day(i);
                            if remaining > catalogue::REFILL_REMAINING_DAYS as i64 {
                                flag("early_refill");
                            }
                        }
                    }
                }
                let (mut on_day, mut in_week) = (0u32, 0u32);
                for &t in &list[..=k] {
                    if counts(t) {
                        let d = day(rows[t]);
                        on_day += (d == day(i)) as u32;
                        in_week += (d <= day(i) && d > day(i) - 7) as u32;
                    }
                }
                if on_day > catalogue::MAX_CLAIMS_PER_DAY
                    || in_week > catalogue::MAX_CLAIMS_PER_WEEK
                {
                    flag("visit_burst");
                }
                if drug.is_valid(i) {
                    amounts.push((drug.value(i), level.value(i), total.value(i), i));
                }
            }
        }
        // amount_outlier: total > median + 10 × 1.4826 × MAD of its (drug, level) group of 30+.
        amounts.sort_unstable();
        for group in amounts.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let n = group.len();
            let median = group[(n - 1) / 2].2;
            let mut deviations: Vec<i128> = group.iter().map(|x| (x.2 - median).abs()).collect();
            deviations.sort_unstable();
            let mad = deviations[(n - 1) / 2];
            if n < 30 || mad == 0 {
                continue;
            }
            let bar = median + crate::money::round_div(1000 * 14_826 * mad, 1_000_000);
            for x in group.iter().filter(|x| x.2 > bar) {
                flagged
                    .entry("amount_outlier")
                    .or_default()
                    .insert(id.value(x.3).to_string());
            }
        }
        Audit {
            flagged,
            statuses,
            capped_persons,
            claims: claims.num_rows(),
        }
    }

    /// `labels.parquet` as rule code → claim ids, checked to name claims of the month, each
    /// (claim, rule) once.
    fn labels(dir: &Path) -> HashMap<String, HashSet<String>> {
        let (labels, _) = read(&dir.join("labels.parquet"));
        let (claims, _) = read(&dir.join("claims.parquet"));
        let ids: HashSet<&str> = text(&claims, "claim_id").iter().flatten().collect();
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        for i in 0..labels.num_rows() {
            let (id, rule) = (
                text(&labels, "claim_id").value(i),
                text(&labels, "rule").value(i),
            );
            assert!(ids.contains(id), "label of unknown claim {id}");
            assert!(out
                .entry(rule.to_string())
                .or_default()
                .insert(id.to_string()));
        }
        out
    }

    /// What the rules flag on a generated month is what the labels say, rule by rule: the
    /// baseline fires nothing and each plant fires its own rule. Amount outliers also occur
    /// naturally in the log-normal amounts; they are counted, not labelled.
    fn assert_labels_match(dir: &Path, min_per_rule: usize) -> Audit {
        let labelled = labels(dir);
        let audit = audit(dir);
        let empty = HashSet::new();
        for plant in plant::Plant::ALL {
            let code = plant.code();
            let want = labelled.get(code).unwrap_or(&empty);
            let got = audit.flagged.get(code).unwrap_or(&empty);
            assert!(want.len() >= min_per_rule, "{code}: {} labels", want.len());
            let missed: Vec<&String> = want.difference(got).take(5).collect();
            assert!(
                missed.is_empty(),
                "{code}: labelled, not flagged: {missed:?}"
            );
            if plant != plant::Plant::AmountOutlier {
                let extra: Vec<&String> = got.difference(want).take(5).collect();
                assert!(extra.is_empty(), "{code}: flagged, not labelled: {extra:?}");
            }
        }
        // Natural outliers: a few log-normal amounts.
        let natural = audit.flagged.get("amount_outlier").unwrap_or(&empty).len()
            - labelled.get("amount_outlier").map_or(0, |l| l.len());
        assert!(
            natural <= audit.claims / 5_000,
            "{natural} natural amount outliers in {} claims",
            audit.claims
        );
        // Caps bind only on planted persons (the cap and outlier plants).
        let (labels, _) = read(&dir.join("labels.parquet"));
        let (claims, _) = read(&dir.join("claims.parquet"));
        let planted_claims: HashSet<&str> = text(&labels, "claim_id").iter().flatten().collect();
        let planted_persons: HashSet<&str> = (0..claims.num_rows())
            .filter(|&i| {
                text(&claims, "claim_id").is_valid(i)
                    && planted_claims.contains(text(&claims, "claim_id").value(i))
            })
            .map(|i| text(&claims, "person_id").value(i))
            .collect();
        for p in &audit.capped_persons {
            assert!(
                planted_persons.contains(p.as_str()),
                "baseline person {p} capped"
            );
        }
        audit
    }

    #[test]
    fn labels_are_exactly_what_the_rules_flag() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&config(dir.path(), 60_000, 300_000, 7)).unwrap();
        let audit = assert_labels_match(dir.path(), 300);
        assert_eq!(
            report.labels as usize,
            read(&dir.path().join("labels.parquet")).0.num_rows()
        );
        // Every kind at its rate: 0.1–0.3% of the claims.
        let labelled = labels(dir.path());
        for (rule, ids) in &labelled {
            let rate = ids.len() as f64 / audit.claims as f64;
            assert!((0.001..0.003).contains(&rate), "{rule}: {rate}");
        }
        // Unregistered conditions on assisted persons (Rizhao's missed benefit) and on others.
        let (claims, _) = read(&dir.path().join("claims.parquet"));
        let (persons, _) = read(&dir.path().join("persons.parquet"));
        let assistance = text(&persons, "assistance_category");
        let assisted: HashSet<&str> = (0..persons.num_rows())
            .filter(|&i| assistance.is_valid(i))
            .map(|i| text(&persons, "person_id").value(i))
            .collect();
        let unregistered = &labelled["unregistered_condition"];
        let (mut on_assisted, mut in_rizhao) = (0, 0);
        for i in 0..claims.num_rows() {
            let id = text(&claims, "claim_id");
            if id.is_valid(i) && unregistered.contains(id.value(i)) {
                let person = text(&claims, "person_id").value(i);
                on_assisted += assisted.contains(person) as usize;
                in_rizhao += (assisted.contains(person) && person.starts_with("P371100")) as usize;
            }
        }
        assert!(
            in_rizhao > 0 && on_assisted < unregistered.len(),
            "{on_assisted} of {} on assisted persons, {in_rizhao} in Rizhao",
            unregistered.len()
        );
    }

    /// A small month (30,000 claims) still has a few of every kind and every settlement status.
    #[test]
    fn a_small_month_has_every_kind_and_status() {
        let dir = tempfile::tempdir().unwrap();
        generate(&config(dir.path(), 3_000, 30_000, 11)).unwrap();
        let audit = assert_labels_match(dir.path(), 10);
        for s in ["paid", "capped", "not_covered", "reversal", "rejected"] {
            assert!(
                audit.statuses.get(s).copied().unwrap_or(0) > 0,
                "{s}: {:?}",
                audit.statuses
            );
        }
    }

    /// The acceptance month: 1,000,000 claims. Slow (half a minute); run with
    /// `--ignored` to see the rates and the natural amount outliers.
    #[test]
    #[ignore]
    fn a_million_claims() {
        let dir = tempfile::tempdir().unwrap();
        generate(&config(dir.path(), 200_000, 1_000_000, 2024)).unwrap();
        let audit = assert_labels_match(dir.path(), 1000);
        let labelled = labels(dir.path());
        let mut rules: Vec<_> = labelled
            .iter()
            .map(|(r, ids)| (r.clone(), ids.len()))
            .collect();
        rules.sort();
        eprintln!("labels: {rules:?}");
        let outliers = audit.flagged.get("amount_outlier").map_or(0, |f| f.len());
        eprintln!(
            "amount_outlier flags: {outliers}, labelled {}",
            labelled["amount_outlier"].len()
        );
        eprintln!("statuses: {:?}", audit.statuses);
    }

    /// Labels stay exact for dense and sparse registries, short and long months, and years
    /// under other policy versions.
    #[test]
    fn labels_are_exact_for_any_shape_of_month() {
        for (persons, claims, year, month, seed) in [
            (4_000, 100_000, 2024, 2, 2),
            (100_000, 100_000, 2023, 2, 3),
            (2_000, 30_000, 2022, 1, 6),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = GenerateConfig {
                persons,
                claims,
                year,
                month,
                seed,
                profile: MonthProfile::Clean,
                out: dir.path().to_path_buf(),
            };
            generate(&cfg).unwrap();
            assert_labels_match(dir.path(), 10);
        }
    }

    fn skewed(dir: &Path, persons: u64, claims: u64, seed: u64) -> GenerateConfig {
        GenerateConfig {
            profile: MonthProfile::Skewed,
            ..config(dir, persons, claims, seed)
        }
    }

    /// Claims per claimant of a generated month (claim rows with a person id, reversals and
    /// bad rows included), largest first.
    fn claims_per_person(dir: &Path) -> Vec<usize> {
        let (claims, _) = read(&dir.join("claims.parquet"));
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for person in text(&claims, "person_id").iter().flatten() {
            *counts.entry(person).or_default() += 1;
        }
        let mut counts: Vec<usize> = counts.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts
    }

    /// Share of the claims held by the top 1% of claimants (at least one).
    fn top_percent_share(counts: &[usize]) -> f64 {
        let top = (counts.len() / 100).max(1);
        counts[..top].iter().sum::<usize>() as f64 / counts.iter().sum::<usize>() as f64
    }

    /// The engine's flags on a generated month: anomaly rows per claim row, the share of
    /// claims (settled, not reversals) with at least one flag, and rows per rule.
    fn flag_rates(dir: &Path) -> (f64, f64, Vec<(String, usize)>) {
        let settlements = settle(dir);
        let codes = settlements
            .column_by_name("anomaly_codes")
            .unwrap()
            .as_list::<i32>();
        let status = text(&settlements, "status");
        let (mut rows, mut claims, mut flagged) = (0usize, 0usize, 0usize);
        let mut by_rule: HashMap<String, usize> = HashMap::new();
        for s in 0..settlements.num_rows() {
            let list = codes.value(s);
            let list = list.as_string::<i32>();
            rows += list.len();
            for code in list.iter().flatten() {
                *by_rule.entry(code.to_string()).or_default() += 1;
            }
            if !matches!(status.value(s), "reversal" | "rejected") {
                claims += 1;
                flagged += (!list.is_empty()) as usize;
            }
        }
        let total = read(&dir.join("claims.parquet")).0.num_rows();
        let mut by_rule: Vec<(String, usize)> = by_rule.into_iter().collect();
        by_rule.sort();
        (
            rows as f64 / total as f64,
            flagged as f64 / claims as f64,
            by_rule,
        )
    }

    #[test]
    fn skewed_month_same_bytes_for_any_thread_count() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let run = |dir: &Path, cfg: GenerateConfig, threads: usize| {
            let cfg = GenerateConfig {
                out: dir.to_path_buf(),
                ..cfg
            };
            pool(threads)
                .install(|| generate_with(&cfg, 20_000))
                .unwrap()
        };
        let cfg = skewed(a.path(), 30_000, 90_001, 11);
        let ra = run(a.path(), cfg.clone(), 1);
        let rb = run(b.path(), cfg.clone(), 2);
        assert_eq!(ra, rb);
        assert_eq!(ra.claims, 90_001);
        assert_eq!(bytes(a.path()), bytes(b.path()));
        // The profile changes the claims (persons are drawn before it matters).
        run(c.path(), config(c.path(), 30_000, 90_001, 11), 2);
        let (x, y) = (bytes(a.path()), bytes(c.path()));
        assert_eq!(x[0], y[0]);
        assert_ne!(x[2], y[2]);
    }

    #[test]
    fn skewed_claim_count_is_exact_for_awkward_sizes() {
        for (persons, claims) in [(1, 7), (4_097, 1_000), (10_000, 12_345), (50_000, 3)] {
            let dir = tempfile::tempdir().unwrap();
            let report = generate(&skewed(dir.path(), persons, claims, 99)).unwrap();
            assert_eq!(report.claims, claims);
            let (batch, _) = read(&dir.path().join("claims.parquet"));
            assert_eq!(batch.num_rows() as u64, claims, "{persons}, {claims}");
        }
    }

    /// Claims per claimant are Pareto-like: most claim one to three times, the top claimant
    /// hundreds of times the mean, the top 1% a large share. (Measured on this month: see the
    /// module doc; the bounds leave a margin.)
    #[test]
    fn skewed_claims_per_person_are_heavy_tailed() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&skewed(dir.path(), 40_000, 200_000, 7)).unwrap();
        assert_eq!(report.claims, 200_000);
        let counts = claims_per_person(dir.path());
        let mean = 200_000.0 / counts.len() as f64;
        let few = counts.iter().filter(|&&c| c <= 3).count() as f64 / counts.len() as f64;
        let top = top_percent_share(&counts);
        assert!(few > 0.6, "1–3 claims: {few}");
        assert!(
            counts[0] as f64 > 200.0 * mean,
            "max {} mean {mean}",
            counts[0]
        );
        assert!(top > 0.25, "top 1%: {top}");
    }

    /// In a skewed month the baseline fires the rules too: each planted claim still fires its
    /// own rule, but the labels are only a small part of what fires.
    #[test]
    fn skewed_labels_are_a_subset_of_what_fires() {
        let dir = tempfile::tempdir().unwrap();
        generate(&skewed(dir.path(), 20_000, 100_000, 3)).unwrap();
        let labelled = labels(dir.path());
        let settlements = settle(dir.path());
        let id = text(&settlements, "claim_id");
        let codes = settlements
            .column_by_name("anomaly_codes")
            .unwrap()
            .as_list::<i32>();
        let mut fired: HashMap<String, HashSet<String>> = HashMap::new();
        for s in 0..settlements.num_rows() {
            for code in codes.value(s).as_string::<i32>().iter().flatten() {
                fired
                    .entry(code.to_string())
                    .or_default()
                    .insert(id.value(s).to_string());
            }
        }
        let (mut labels, mut flags) = (0, 0);
        for plant in plant::Plant::ALL {
            let want = &labelled[plant.code()];
            let got = &fired[plant.code()];
            let missed: Vec<&String> = want.difference(got).take(5).collect();
            assert!(missed.is_empty(), "{}: {missed:?}", plant.code());
            labels += want.len();
            flags += got.len();
        }
        assert!(labels * 20 < flags, "{labels} labels, {flags} flags");
    }

    /// A skewed month of 1,000,000 claims: its claims per person and what the engine flags.
    /// Slow; run with `--ignored` to see the figures the module doc quotes.
    #[test]
    #[ignore]
    fn a_skewed_million_claims() {
        let dir = tempfile::tempdir().unwrap();
        let (persons, claims) = (200_000, 1_000_000);
        generate(&skewed(dir.path(), persons, claims, 2024)).unwrap();
        let counts = claims_per_person(dir.path());
        let few = counts.iter().filter(|&&c| c <= 3).count() as f64 / counts.len() as f64;
        eprintln!(
            "claimants {}, mean {:.2}, max {}, 10th {}, 100th {}, median {}, top 1% {:.3}, 1–3 claims {few:.3}",
            counts.len(),
            claims as f64 / counts.len() as f64,
            counts[0],
            counts[9],
            counts[99],
            counts[counts.len() / 2],
            top_percent_share(&counts),
        );
        let (per_claim, flagged, by_rule) = flag_rates(dir.path());
        eprintln!("anomaly rows per claim {per_claim:.3}, flagged claims {flagged:.3}");
        eprintln!("{by_rule:?}");
    }
}
