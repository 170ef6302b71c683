//! The `yibao` command: clap parses, the library does the work, errors become exit codes
//! (CONTRACT.md: 0 success, 2 bad arguments or unreadable input, 1 internal error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

// mimalloc: settlement and Parquet decoding allocate many short-lived buffers from several
// threads at once, where the system allocator's arenas contend.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (the same position in v2 and v3; the Rust binding has
/// no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped before mimalloc returns it to the OS, in milliseconds
/// (`-1`: never). An operator's own `MIMALLOC_PURGE_DELAY` wins.
fn retain_freed_memory(delay_ms: std::ffi::c_long) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option of the allocator; valid at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay_ms) }
    }
}

/// Freed memory is kept mapped for good (mimalloc's own default returns it after 10 ms). A run
/// allocates and frees gigabytes of short-lived column buffers; returned pages come back as
/// fresh (zeroed, faulted-in) pages, and concurrent page faults serialise the threads.
/// Measured on a 10M-claim month: wall −10 to −20%, 2-thread scaling 1.5× → 2×, peak RSS
/// +10–14% (README "Performance").
const KEEP_FREED: std::ffi::c_long = -1;

/// A run that spills is one whose memory `--memory-limit` bounds: memory no stage has used for
/// ten seconds goes back to the OS (what one stage freed is not held beside a later stage's for
/// long). Never returning it, at 100M claims under a 1 GiB limit: peak RSS 4.53 GiB against
/// 3.31 GiB after one second, wall level (322 s, 311 s). Ten seconds outlast the settling of a
/// few partitions, so each partition's buffers (its outcomes, its claims read back) reuse the
/// pages of the ones before it instead of faulting in fresh ones. Against one second, paired
/// runs of the 10M month: 0.93× the wall time clean and 0.95× skewed, the system time halved,
/// peak 0.93 → 1.04 and 1.05 → 1.12 GiB; three seconds: 0.97× at 0.96 → 0.98 GiB.
const SPILLING_PURGE_DELAY: std::ffi::c_long = 10_000;

/// `yibao state compact` reads every file of a version a range of keys at a time, its reader
/// threads freeing what the others allocated: memory unused for a second goes back to the OS.
/// Never returning it, the 30-night state's compaction peaked at 1.33 GiB; returning it at once,
/// 0.45 GiB for 1.48x the time; after a second, 0.68 GiB for 1.18x (single runs). Together
/// with opening each index file once: 0.97x the time of the build before, peak 1,291 → 858
/// MiB (paired medians of 4).
const COMPACTION_PURGE_DELAY: std::ffi::c_long = 1_000;

/// Transparent huge pages are turned off for the process (unless the operator's
/// `MIMALLOC_ALLOW_THP` says otherwise). mimalloc asks for them where the system leaves it to the
/// program, and the kernel then zeroes 2 MiB at each first touch: a night on a month of state
/// spent a third of its CPU time in that zeroing. Measured, alternating, 2 threads: the 10M-claim
/// month 13.8–15.3 → 13.4 s; a night on empty state 1.64–1.78 → 1.44–1.46 s; on the 30 nights'
/// state 5.92 → 4.49 s (appended) and 3.75 → 2.54 s (compacted); peak RSS level.
fn small_pages_only() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory map; no memory
        // changes hands. Failure (an old kernel) leaves the default, which is fine.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

#[derive(Parser)]
#[command(
    name = "yibao",
    version,
    about = "Claim adjudication engine for medical-insurance data centres"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Permission bits of every file written (outputs, state, spill), octal: they hold personal
    /// medical data, so only their owner may read them unless widened (e.g. 0640 for a group).
    /// Directories created get the matching execute bits.
    #[arg(long, global = true, default_value = "0600", value_parser = parse_mode)]
    mode: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic province (claims, persons, registrations) over all five regions.
    Generate {
        /// Persons in the registry.
        #[arg(long)]
        persons: u64,
        /// Claim rows to write (reversals and a few bad rows included).
        #[arg(long)]
        claims: u64,
        /// Month of the claims, YYYY-MM.
        #[arg(long)]
        month: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The kind of month.
        #[arg(long, value_enum, default_value_t = Profile::Clean)]
        profile: Profile,
    },
    /// Settle a batch of claims: the nightly job.
    Adjudicate {
        #[command(flatten)]
        inputs: SettleInputs,
        /// State directory carried between runs: read, then advanced by one version as the
        /// run's last step (created by the first run). Without it the run starts from empty
        /// state and keeps none.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Settle against this older version of --state, read-only (the state is not advanced).
        #[arg(long, requires = "state")]
        state_version: Option<u64>,
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Claims per part of a month held in memory (default 1048576): a tuning knob, the
        /// output is the same for any value.
        #[arg(long, hide = true)]
        part_claims: Option<u64>,
        /// Whether spill files are LZ4-compressed (default `auto`: only when, raw, they would
        /// not fit in half of physical memory, the page cache's share). The output is the same
        /// for any value.
        #[arg(long, value_enum, default_value_t = SpillCompression::Auto)]
        spill_compression: SpillCompression,
    },
    /// What a policy change would cost: the same claims settled under a baseline and a proposal
    /// policy directory in one pass, against the same state (read, never advanced).
    Compare {
        #[command(flatten)]
        inputs: SettleInputs,
        /// State directory both worlds settle against, read-only (the latest version, or
        /// --state-version). Without it both start from empty state.
        #[arg(long)]
        state: Option<PathBuf>,
        #[arg(long, requires = "state")]
        state_version: Option<u64>,
        /// The policies in force.
        #[arg(long)]
        baseline: PathBuf,
        /// The policies proposed: a copy of the baseline with numbers or rules changed.
        #[arg(long)]
        proposal: PathBuf,
    },
    /// The documents' statutory tables from a run's settlements and the registry, as an .xlsx
    /// workbook laid out like the annexes and one CSV per table.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// A capitation budget's year-end accounts per member unit (Jin'an's pilot): budget, spend,
    /// surplus or overspend and who keeps or bears it.
    Capitation {
        /// The year settled.
        #[arg(long)]
        year: i32,
        /// The region whose policy file has the [capitation] table.
        #[arg(long, default_value = "341502")]
        region: String,
        /// Member units, CSV: unit_id,name,medical_community_id,level,enrolled_persons,
        /// assessment_score,assessment_rank.
        #[arg(long)]
        units: PathBuf,
        /// The pilot persons each unit manages, CSV: person_id,unit_id.
        #[arg(long)]
        enrolment: PathBuf,
        #[command(flatten)]
        inputs: SettledInputs,
    },
    /// Score the audit rules against the labels `generate` wrote: precision and recall per rule.
    AuditEval {
        /// The generator's labels.parquet.
        #[arg(long)]
        labels: PathBuf,
        /// A run's anomalies.parquet.
        #[arg(long)]
        anomalies: PathBuf,
    },
    /// Measure the I/O floor: read the claim columns the engine needs and write a file of the
    /// settlement schema through the same Parquet code, with no settlement. Prints JSON.
    BenchFloor {
        #[arg(long)]
        claims: PathBuf,
        /// Where the floor's settlement file is written (and removed, unless --keep).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        keep: bool,
    },
    /// The state directory carried between runs.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// `adjudicate --spill-compression`.
#[derive(Clone, Copy, ValueEnum)]
enum SpillCompression {
    /// LZ4 when the spill would not sit in the page cache.
    Auto,
    Lz4,
    None,
}

impl From<SpillCompression> for Option<bool> {
    fn from(c: SpillCompression) -> Self {
        match c {
            SpillCompression::Auto => None,
            SpillCompression::Lz4 => Some(true),
            SpillCompression::None => Some(false),
        }
    }
}

/// `generate --profile`: the library's `MonthProfile`, as the command line names it.
#[derive(Clone, Copy, ValueEnum)]
enum Profile {
    /// Baseline claims fire no audit rule; the planted anomalies are exactly what fires.
    Clean,
    /// Heavy-tailed claims per person, early refills, long supplies, visit bursts, unregistered
    /// conditions: most claims are flagged (about 1.5 anomaly rows per claim).
    Skewed,
}

impl From<Profile> for yibao::generate::MonthProfile {
    fn from(p: Profile) -> Self {
        match p {
            Profile::Clean => yibao::generate::MonthProfile::Clean,
            Profile::Skewed => yibao::generate::MonthProfile::Skewed,
        }
    }
}

/// What `adjudicate` and `compare` settle, where they write, and on what resources.
#[derive(clap::Args)]
struct SettleInputs {
    /// A claims Parquet file, or a directory of them.
    #[arg(long)]
    claims: PathBuf,
    #[arg(long)]
    persons: PathBuf,
    #[arg(long)]
    registrations: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Worker threads (default: every core). The output is the same for any value.
    #[arg(long)]
    threads: Option<usize>,
    /// Memory the claims may take (e.g. `2GiB`, `512MiB`, `1.5G`, or bytes); a larger month
    /// is spilled to disk under OUT by person partition. Default: 1 GiB (half of physical
    /// memory on a machine with less than 2 GiB).
    /// The output is the same for any value (compare holds both worlds' results of a part).
    #[arg(long, value_parser = parse_memory_limit)]
    memory_limit: Option<u64>,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Ezhou's monthly two-diseases annexes 4–7 (residents, employees, employee supplementary;
    /// persons under management per unit).
    Ezhou {
        /// The month reported, YYYY-MM.
        #[arg(long)]
        month: String,
        #[command(flatten)]
        inputs: SettledInputs,
    },
    /// Jiaxing's quarterly two-diseases tables (residents, employees).
    Jiaxing {
        /// The quarter reported, YYYY-Qn (e.g. 2024-Q1).
        #[arg(long)]
        quarter: String,
        #[command(flatten)]
        inputs: SettledInputs,
    },
}

/// What the commands that read settled runs (`report`, `capitation`) take.
#[derive(clap::Args)]
struct SettledInputs {
    /// A run's settlements.parquet, or a directory of runs' output directories.
    #[arg(long)]
    settlements: PathBuf,
    #[arg(long)]
    persons: PathBuf,
    #[arg(long)]
    registrations: PathBuf,
    /// The runs' claims, for what settlements do not carry: `report ezhou` then counts annex
    /// 7's persons per institution, `capitation` leaves claims of an excluded diagnosis
    /// (accidental injury) out of the spend.
    #[arg(long)]
    claims: Option<PathBuf>,
    #[arg(long, default_value = "policies")]
    policies: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate the policy files and list every assumed number.
    Check {
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// Versions, runs, inputs absorbed, and the files of the latest version with their rows,
    /// bytes and years.
    Inspect { dir: PathBuf },
    /// Merge the files runs appended into one of each table (only the rows that still count,
    /// of the years held) as a new version, then remove all but the newest --keep versions.
    Compact {
        dir: PathBuf,
        /// Versions to keep readable (for --state-version), the compacted one included.
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
}

/// The process's umask for files of permission `mode` (rw bits only) and directories with the
/// execute bit beside each read bit: a file is created 0666 & !umask, a directory 0777 & !umask.
fn umask_for(mode: u32) -> u32 {
    let files = mode & 0o666;
    let dirs = files | ((files & 0o444) >> 2);
    0o777 & !dirs
}

fn main() -> ExitCode {
    small_pages_only();
    yibao::error::quiet_decoder_panics();
    let cli = Cli::parse();
    // SAFETY: umask only sets this process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(umask_for(cli.mode) as libc::mode_t);
    }
    // `adjudicate` picks its own once it knows whether the run spills.
    match &cli.command {
        Command::Adjudicate { .. } => {}
        Command::State {
            command: StateCommand::Compact { .. },
        } => retain_freed_memory(COMPACTION_PURGE_DELAY),
        _ => retain_freed_memory(KEEP_FREED),
    }
    // A panic is a bug or a broken invariant (the release-build checks the README's "Limits"
    // lists): its message is already on stderr; the outputs being written are removed as it
    // unwinds, nothing is committed, and the run ends as the contract's internal error.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    let Ok(outcome) = outcome else {
        eprintln!("yibao: internal error (above); nothing was committed");
        return ExitCode::from(1);
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The library's messages already carry their cause; other errors print their chain.
            let code = match e.downcast_ref::<yibao::Error>() {
                Some(own) => {
                    eprintln!("yibao: {own}");
                    own.exit_code()
                }
                None => {
                    eprintln!("yibao: {e:#}");
                    1
                }
            };
            ExitCode::from(code as u8)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate {
            persons,
            claims,
            month,
            out,
            seed,
            profile,
        } => {
            let (year, month) = parse_month(&month)?;
            let report = yibao::generate::generate(&yibao::generate::GenerateConfig {
                persons,
                claims,
                year,
                month,
                seed,
                profile: profile.into(),
                out: out.clone(),
            })?;
            println!(
                "wrote {} persons, {} registrations, {} claims ({} reversals, {} bad rows, {} planted anomalies in labels.parquet) to {}",
                report.persons,
                report.registrations,
                report.claims,
                report.reversals,
                report.bad_rows,
                report.labels,
                out.display()
            );
        }
        Command::Adjudicate {
            inputs:
                SettleInputs {
                    claims,
                    persons,
                    registrations,
                    out,
                    threads,
                    memory_limit,
                },
            state,
            state_version,
            policies,
            part_claims,
            spill_compression,
        } => {
            let args = yibao::run::AdjudicateArgs {
                claims,
                persons,
                registrations,
                state,
                state_version,
                policies,
                out: out.clone(),
                threads,
                memory_limit,
                part_claims,
                compress_spill: spill_compression.into(),
                spill_around_page_cache: None,
            };
            retain_freed_memory(if yibao::run::spills(&args)? {
                SPILLING_PURGE_DELAY
            } else {
                KEEP_FREED
            });
            let summary = match yibao::run::adjudicate(&args)? {
                yibao::run::Adjudicated::Settled(summary) => summary,
                yibao::run::Adjudicated::AlreadyAbsorbed { version } => {
                    println!(
                        "nothing to do: the state absorbed these claims already (version {version}); \
                         outputs in {} left as they are",
                        out.display()
                    );
                    return Ok(());
                }
            };
            println!(
                "settled {} claims ({} rejected) in {:.2} s, {:.0} rows/s, on {} threads; outputs in {}",
                summary.claims,
                summary.rejected,
                summary.wall_seconds,
                summary.rows_per_second,
                summary.threads,
                out.display()
            );
        }
        Command::Compare {
            inputs:
                SettleInputs {
                    claims,
                    persons,
                    registrations,
                    out,
                    threads,
                    memory_limit,
                },
            state,
            state_version,
            baseline,
            proposal,
        } => {
            let s = yibao::compare::compare(&yibao::compare::CompareArgs {
                claims,
                persons,
                registrations,
                state,
                state_version,
                baseline,
                proposal,
                out: out.clone(),
                threads,
                memory_limit,
            })?;
            let p = &s.persons;
            println!(
                "compared {} claims ({} settled differently): fund paid {} → {} ({}), patients pay {} → {} ({}); \
                 of {} persons {} pay more, {} less, {} newly reach a cap; outputs in {}",
                s.claims,
                s.claims_changed,
                s.baseline.amounts.fund_paid,
                s.proposal.amounts.fund_paid,
                signed(&s.difference.fund_paid),
                s.baseline.amounts.patient_pays,
                s.proposal.amounts.patient_pays,
                signed(&s.difference.patient_pays),
                p.persons,
                p.pay_more,
                p.pay_less,
                p.newly_capped,
                out.display()
            );
        }
        Command::Report { command } => {
            let (kind, inputs) = match command {
                ReportCommand::Ezhou { month, inputs } => {
                    let (year, month) = parse_month(&month)?;
                    (
                        yibao::report::ReportKind::EzhouMonthly { year, month },
                        inputs,
                    )
                }
                ReportCommand::Jiaxing { quarter, inputs } => {
                    let (year, quarter) = parse_quarter(&quarter)?;
                    (
                        yibao::report::ReportKind::JiaxingQuarterly { year, quarter },
                        inputs,
                    )
                }
            };
            let written = yibao::report::report(&yibao::report::ReportArgs {
                kind,
                settlements: inputs.settlements,
                persons: inputs.persons,
                registrations: inputs.registrations,
                claims: inputs.claims,
                policies: inputs.policies,
                out: inputs.out,
            })?;
            println!(
                "{} settlement rows of the period reported in {} and {} CSV files",
                written.rows,
                written.workbook.display(),
                written.csv.len()
            );
        }
        Command::Capitation {
            year,
            region,
            units,
            enrolment,
            inputs,
        } => {
            let out = inputs.out;
            let (accounts, counted) =
                yibao::capitation::capitation(&yibao::capitation::CapitationArgs {
                    region,
                    year,
                    settlements: inputs.settlements,
                    persons: inputs.persons,
                    registrations: inputs.registrations,
                    units,
                    enrolment,
                    claims: inputs.claims,
                    policies: inputs.policies,
                    out: out.clone(),
                })?;
            print!("{}", yibao::capitation::terminal_table(&accounts));
            println!(
                "{} settlement rows charged, {} left out (excluded benefits{}); {} enrolled persons \
                 outside the pilot population; capitation.parquet and capitation.csv in {}",
                counted.rows,
                counted.excluded_rows,
                match (counted.diagnoses_applied, counted.claims_not_found) {
                    (false, _) => "; diagnoses not applied without --claims".to_string(),
                    (true, 0) => " and diagnoses".to_string(),
                    (true, n) => format!(
                        " and diagnoses; {n} charged rows' claims not in --claims, their \
                         diagnoses unknown"
                    ),
                },
                counted.enrolled_outside_pilot,
                out.display()
            );
        }
        Command::BenchFloor {
            claims,
            out,
            threads,
            keep,
        } => {
            let floor = yibao::floor::measure(&claims, &out, threads, keep)?;
            println!("{}", serde_json::to_string(&floor)?);
        }
        Command::AuditEval { labels, anomalies } => {
            let scores = yibao::audit::eval::evaluate(&labels, &anomalies)?;
            print!("{}", yibao::audit::eval::report(&scores));
        }
        Command::State {
            command: StateCommand::Inspect { dir },
        } => {
            print!("{}", yibao::state::store::inspect(&dir)?);
        }
        Command::State {
            command: StateCommand::Compact { dir, keep },
        } => {
            let c = yibao::state::compact::compact(&dir, keep)?;
            match c.version {
                Some(v) => println!(
                    "compacted into version {v}: {} → {} rows, {} → {} bytes",
                    c.rows.0, c.rows.1, c.bytes.0, c.bytes.1
                ),
                None => println!("nothing to merge"),
            }
            if !c.removed.is_empty() {
                let removed: Vec<String> = c.removed.iter().map(u64::to_string).collect();
                println!("removed versions {}", removed.join(" "));
            }
        }
        Command::Policy {
            command: PolicyCommand::Check { policies },
        } => {
            let compiled = yibao::policy::Policies::load_dir(&policies)?;
            print!("{}", compiled.check_report());
            println!("policies OK");
        }
    }
    Ok(())
}

fn parse_month(text: &str) -> anyhow::Result<(i32, u32)> {
    parse_period(text, "--month", "YYYY-MM", "-", 12)
}

/// `YYYY{separator}n` with `n` in `1..=last` and a four-digit year: a month or a quarter.
fn parse_period(
    text: &str,
    flag: &str,
    form: &str,
    separator: &str,
    last: u32,
) -> anyhow::Result<(i32, u32)> {
    let bad = || yibao::Error::Usage(format!("{flag} {text:?} is not {form}"));
    let (y, n) = text.split_once(separator).ok_or_else(bad)?;
    let year: i32 = y.parse().map_err(|_| bad())?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    if !(1..=last).contains(&n) || !(1900..=9999).contains(&year) {
        return Err(bad().into());
    }
    Ok((year, n))
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{text:?} is not an octal file mode such as 0600 or 0640"))?;
    if mode > 0o777 || mode & 0o600 != 0o600 {
        return Err(format!(
            "{text:?}: a file mode up to 0777 that lets its owner read and write (0600, 0640, …)"
        ));
    }
    Ok(mode)
}

/// An amount with its sign: `+12.00`, `-3.50`, `0.00`.
fn signed(amount: &str) -> String {
    if amount.starts_with('-') || amount.trim_start_matches(['0', '.']).is_empty() {
        amount.to_string()
    } else {
        format!("+{amount}")
    }
}

fn parse_quarter(text: &str) -> anyhow::Result<(i32, u32)> {
    parse_period(text, "--quarter", "YYYY-Qn", "-Q", 4)
}

fn parse_memory_limit(text: &str) -> Result<u64, String> {
    yibao::run::parse_size(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_quarters_are_read_with_their_bounds() {
        assert_eq!(parse_month("2024-03").unwrap(), (2024, 3));
        assert_eq!(parse_quarter("2024-Q4").unwrap(), (2024, 4));
        assert_eq!(
            parse_month("2024-13").unwrap_err().to_string(),
            "--month \"2024-13\" is not YYYY-MM"
        );
        assert_eq!(
            parse_quarter("2024-Q5").unwrap_err().to_string(),
            "--quarter \"2024-Q5\" is not YYYY-Qn"
        );
        assert!(parse_month("0999-01").is_err());
    }

    #[test]
    fn a_mode_gives_files_its_bits_and_directories_their_execute_bits() {
        assert_eq!(umask_for(0o600), 0o077);
        assert_eq!(umask_for(0o640), 0o027);
        assert_eq!(umask_for(0o644), 0o022);
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert!(
            parse_mode("0400").is_err(),
            "the owner must be able to write"
        );
        assert!(parse_mode("rw").is_err());
    }
}
