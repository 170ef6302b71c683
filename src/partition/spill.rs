//! Out-of-core partitioning: when a month's claims do not fit in `--memory-limit`, a first pass
//! scatters them by person key into partition files on disk, and the run then settles one
//! partition at a time. A partition is a range of person keys (the top bits of
//! [`person_key`]), so each person's claims are all in one partition and the output order —
//! persons by key — is the same as a run held in memory.
//!
//! The scatter converts each claim once, as a run held in memory does (validation, dense person
//! ids, codes into the month's text dictionaries), and spills it converted
//! ([`crate::ingest::converted`]): a partition read back is copied, not converted again, and
//! whatever needs the whole month (the amount statistics of `amount_outlier`) is gathered from
//! the converted windows as they pass. Two things a partition cannot see alone are found during
//! the scatter: repeated claim ids (a copy may be filed under another person) and the claims
//! with no person, which form a last partition of their own. Spill files are Arrow IPC, one per
//! partition, LZ4-compressed only when raw they would not sit in the page cache
//! ([`compress_spill`]).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow::ipc::CompressionType;
use rayon::prelude::*;

use super::{part_of, person_key};
use crate::error::{Error, Result};
use crate::ingest::claims::{
    claim_id_hash, find_repeats, ClaimWindows, Claims, InputBatch, Occurrence, SourceFile,
    CLAIM_COLUMNS,
};
use crate::ingest::converted;
use crate::ingest::read::{col, read_windows, ColumnKind};
use crate::ingest::registry::Registry;

/// A temporary directory removed when dropped, whether the run succeeds or fails.
struct SpillDir(PathBuf);

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The claims scattered into partition files.
pub struct Spilled {
    dir: SpillDir,
    /// Key bits that pick a partition.
    bits: u32,
    pub sources: Vec<SourceFile>,
    /// The month's text dictionaries, which the spilled rows' codes index.
    texts: Claims,
    /// The spill file of each partition (none for a partition with no rows).
    files: Vec<Option<PathBuf>>,
    /// Bytes of the spill files as written.
    bytes: u64,
    /// Input rows (numbered across files in order) that repeat an earlier claim's id, sorted.
    pub repeats: Vec<u64>,
}

impl Spilled {
    /// Number of partitions of persons; the partition after them holds the rows with no person.
    pub fn person_parts(&self) -> usize {
        1 << self.bits
    }

    /// The claims of partition `part` (persons' partitions first, then the one with no
    /// person), in input order, repeated claim ids rejected. A partition is read once: its
    /// file is removed once read, beside the work on the partitions before it, rather than
    /// all of them at the end of the run, when removing a gigabyte of files from the page
    /// cache held one core for a tenth of a second with nothing else to do.
    pub fn read(&self, part: usize) -> Result<Claims> {
        let mut batches = Vec::new();
        if let Some(path) = &self.files[part] {
            let reader =
                FileReader::try_new(File::open(path).map_err(|e| Error::io(path, e))?, None)
                    .map_err(|e| Error::arrow(path.display().to_string(), e))?;
            for batch in reader {
                batches.push(batch.map_err(|e| Error::arrow(path.display().to_string(), e))?);
            }
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        }
        let mut claims = converted::claims(self.sources.clone(), &self.texts, &batches);
        claims.reject_listed(&self.repeats);
        Ok(claims)
    }

    /// Bytes the partition files took on disk, for the summary.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Rows held back, over all partitions, to be joined into larger spill batches.
const PENDING_ROWS: usize = 512 * 1024;

/// Bytes a converted claim takes in a spill file written raw (measured 107 on the 10M month);
/// with LZ4 about 41.
pub const SPILL_BYTES_PER_CLAIM: u64 = 110;

/// Whether a spill of `rows` claims is LZ4-compressed on a machine of `memory` bytes: only when
/// written raw it would not sit in the page cache, taken as half of physical memory (the run,
/// the input and the outputs need the rest). Raw, the spill costs a copy each way; LZ4 costs
/// about a core-second a gigabyte to write and half that to read, and saves the disk only what
/// the page cache would not have held. Measured on 24 GiB: the 100M month (10.7 GB raw, 4.4 GB
/// compressed) took 83.2 s raw and 87.7 s compressed (README "Spilling"). The outputs are the
/// same either way.
pub fn compress_spill(rows: u64, memory: u64) -> bool {
    rows.saturating_mul(SPILL_BYTES_PER_CLAIM) > memory / 2
}

fn spill_options(compress: bool) -> IpcWriteOptions {
    let codec = compress.then_some(CompressionType::LZ4_FRAME);
    IpcWriteOptions::default()
        .try_with_compression(codec)
        .expect("LZ4 is built in (arrow's ipc_compression feature)")
}

/// One partition's spill file while the scatter writes it: opened with its first rows.
struct PartFile {
    path: PathBuf,
    writer: Option<FileWriter<BufWriter<File>>>,
    /// Pieces not yet written, and their rows.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl PartFile {
    /// Writes the pending pieces as one batch.
    fn flush(&mut self, options: &IpcWriteOptions) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let schema = converted::schema();
        let batch = arrow::compute::concat_batches(&schema, &self.pending)
            .map_err(|e| Error::arrow("spill rows", e))?;
        self.pending.clear();
        self.pending_rows = 0;
        let path = &self.path;
        let failed = |e| Error::arrow(path.display().to_string(), e);
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let out = File::create(path).map_err(|e| Error::io(path, e))?;
                let writer =
                    FileWriter::try_new_with_options(BufWriter::new(out), &schema, options.clone())
                        .map_err(failed)?;
                self.writer.insert(writer)
            }
        };
        writer.write(&batch).map_err(failed)
    }

    /// Writes what is pending and the file's footer.
    fn finish(&mut self, options: &IpcWriteOptions) -> Result<()> {
        self.flush(options)?;
        match &mut self.writer {
            Some(writer) => writer
                .finish()
                .map_err(|e| Error::arrow(self.path.display().to_string(), e)),
            None => Ok(()),
        }
    }
}

/// The [`crate::state::claim_key`]s of a run's claim ids and of its reversals' targets.
pub type StateKeys = (Vec<u64>, Vec<u64>);

/// The hashes of the claim ids that occur more than once in `files` (`rows` rows in all), sorted:
/// a first read of the `claim_id` column alone, made before the registry is loaded so that its
/// 8 bytes a claim are never held beside it. Only rows with these hashes (or an earlier run's
/// claim's) are examined closely while scattering. With `state_keys`, the same read also gives
/// the [`crate::state::claim_key`]s of every claim id and reversal target, for the state's claim
/// index (`reverses_claim_id` is read too).
pub fn repeated_ids(
    files: &[PathBuf],
    rows: u64,
    state_keys: bool,
) -> Result<(Vec<u64>, Option<StateKeys>)> {
    let window = rayon::current_num_threads().max(1);
    // Sized from the footers' `rows`: grown by doubling, the vector would at one moment hold
    // its old and new copies, half again the memory of the hashes themselves.
    let mut hashes: Vec<u64> = Vec::with_capacity(rows as usize);
    let mut keys: Option<StateKeys> = state_keys.then(|| (Vec::new(), Vec::new()));
    let id_only = [col("claim_id", ColumnKind::Text, true)];
    let with_targets = [
        col("claim_id", ColumnKind::Text, true),
        col("reverses_claim_id", ColumnKind::Text, true),
    ];
    let columns: &[_] = if state_keys { &with_targets } else { &id_only };
    for file in files {
        read_windows(file, columns, window, |batches, _| {
            for batch in &batches {
                let ids = batch.column(0).as_string::<i32>();
                let hash = |i: usize| claim_id_hash(ids.value(i));
                // Without nulls the hashes are written in place; a filtered extend collects
                // them in pieces and copies them over.
                if ids.null_count() == 0 {
                    hashes.par_extend((0..ids.len()).into_par_iter().map(hash));
                } else {
                    hashes.par_extend(
                        (0..ids.len())
                            .into_par_iter()
                            .filter(|&i| ids.is_valid(i))
                            .map(hash),
                    );
                }
                if let Some((claim_keys, target_keys)) = keys.as_mut() {
                    let targets = batch.column(1).as_string::<i32>();
                    crate::state::push_claim_keys(ids, targets, claim_keys, target_keys);
                }
            }
            Ok(())
        })?;
    }
    hashes.par_sort_unstable();
    let mut repeated: Vec<u64> = hashes
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    repeated.dedup();
    Ok((repeated, keys))
}

/// A row whose claim id may repeat another's (its hash is a repeated id's or an earlier run's):
/// its row in the converted window and its row across the whole input.
#[derive(Debug, Clone, Copy)]
pub struct Suspect {
    pub row: u32,
    pub input_row: u64,
}

/// Where and how a scatter writes its partitions.
pub struct SpillTo<'a> {
    /// The directory the partition files go to, removed with the [`Spilled`].
    pub dir: &'a Path,
    /// Key bits that pick a partition: `1 << bits` partitions of persons.
    pub bits: u32,
    /// Whether the files are LZ4-compressed ([`compress_spill`]).
    pub compress: bool,
}

/// Scatters the claims of `files` into the `1 << bits` person partitions of `to` (and one for
/// rows with no person), converted a window at a time (persons not in the registry get dense ids
/// in `registry`, in input order). `known` are claim ids earlier runs settled and `repeated` the hashes
/// of ids repeated within `files` ([`repeated_ids`]), for finding repeats. `inspect` sees each
/// converted window before it is written, with its suspect rows (whether they repeat an id is
/// known only once every file is read: [`Spilled::repeats`]).
pub fn scatter(
    files: &[PathBuf],
    to: SpillTo,
    registry: &mut Registry,
    known: &[&str],
    repeated: &[u64],
    mut inspect: impl FnMut(&Registry, &Claims, &[Suspect]) + Send,
) -> Result<Spilled> {
    let SpillTo {
        dir,
        bits,
        compress,
    } = to;
    let dir = SpillDir(dir.to_path_buf());
    std::fs::create_dir_all(&dir.0).map_err(|e| Error::io(&dir.0, e))?;
    let parts = (1usize << bits) + 1;
    let no_person = parts - 1;
    let window = crate::ingest::read::working_window();
    // A row is a suspect when its id's hash is repeated in the claims or is an earlier run's.
    let mut suspects: Vec<u64> = known.par_iter().map(|id| claim_id_hash(id)).collect();
    suspects.extend_from_slice(repeated);
    suspects.par_sort_unstable();
    suspects.dedup();

    let mut spilled = Spilled {
        dir,
        bits,
        sources: Vec::new(),
        texts: Claims::default(),
        files: vec![None; parts],
        bytes: 0,
        repeats: Vec::new(),
    };
    // Pieces are gathered per partition into larger batches before they are written: with many
    // partitions a window's piece of one is a few thousand rows, and each IPC batch costs a
    // message (and, compressed, a frame per buffer). PENDING_ROWS bounds the memory.
    let batch_rows = (PENDING_ROWS / parts).max(1024);
    let options = spill_options(compress);
    let mut part_files: Vec<PartFile> = (0..parts)
        .map(|part| PartFile {
            path: spilled.dir.0.join(format!("part-{part:04}.arrow")),
            writer: None,
            pending: Vec::new(),
            pending_rows: 0,
        })
        .collect();
    // Copies of repeated ids: (id, rejected, settled_at, input row).
    let mut copies: Vec<(String, bool, i64, u64)> = Vec::new();
    let mut windows = ClaimWindows::default();
    let mut input_start = 0u64;
    for (f, file) in files.iter().enumerate() {
        let (bytes, rows) = read_windows(file, CLAIM_COLUMNS, window, |batches, firsts| {
            let inputs: Vec<InputBatch> = batches
                .into_iter()
                .zip(firsts)
                .map(|(batch, first_row)| InputBatch {
                    file: f,
                    first_row,
                    batch,
                })
                .collect();
            // Each row's partition, from its person id as read (the dense id's text would be
            // a random read of the person arena per row).
            let part_of_row: Vec<u32> = inputs
                .par_iter()
                .flat_map_iter(|input: &InputBatch| {
                    let ids = input.batch.column(1).as_string::<i32>();
                    (0..ids.len()).map(move |i| match ids.is_valid(i) {
                        true => part_of(person_key(ids.value(i)), bits) as u32,
                        false => no_person as u32,
                    })
                })
                .collect();
            let claims = windows.convert(inputs, &mut registry.index)?;
            let window_suspects: Vec<Suspect> = if suspects.is_empty() {
                Vec::new()
            } else {
                let at = claims.locate_rows(0..claims.len());
                (0..claims.len())
                    .into_par_iter()
                    .filter(|&row| {
                        claims
                            .claim_id_at(at[row])
                            .is_some_and(|id| suspects.binary_search(&claim_id_hash(id)).is_ok())
                    })
                    .map(|row| Suspect {
                        row: row as u32,
                        input_row: input_start + claims.source_at(at[row]).1,
                    })
                    .collect()
            };
            copies.extend(window_suspects.iter().map(|s| {
                let row = s.row as usize;
                (
                    claims
                        .claim_id(row)
                        .expect("a suspect has an id")
                        .to_string(),
                    claims.rejected[row].is_some(),
                    claims.settled_at[row],
                    s.input_row,
                )
            }));
            inspect(registry, claims, &window_suspects);

            let pieces = converted::scatter(claims, &part_of_row, parts)?;
            for (file, piece) in part_files.iter_mut().zip(pieces) {
                if let Some(piece) = piece {
                    file.pending_rows += piece.num_rows();
                    file.pending.push(piece);
                }
            }
            // The partitions' files are written side by side: each is its own writer, and
            // compressing (when the spill is) is most of the cost.
            part_files
                .par_iter_mut()
                .filter(|file| file.pending_rows >= batch_rows)
                .try_for_each(|file| file.flush(&options))
        })?;
        spilled.sources.push(SourceFile {
            path: file.clone(),
            bytes,
            rows,
        });
        input_start += rows;
    }
    part_files
        .par_iter_mut()
        .try_for_each(|file| file.finish(&options))?;
    spilled.files = part_files
        .into_iter()
        .map(|file| file.writer.is_some().then_some(file.path))
        .collect();
    spilled.bytes = spilled
        .files
        .iter()
        .flatten()
        .map(|path| std::fs::metadata(path).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()
        .map_err(|e| Error::io(&spilled.dir.0, e))?;
    spilled.texts = windows.into_texts();
    spilled.repeats = find_repeats(
        copies.len(),
        |i| {
            let (id, rejected, settled_at, input_row) = &copies[i];
            Some(Occurrence {
                id,
                rejected: *rejected,
                settled_at: *settled_at,
                input_row: *input_row,
            })
        },
        known,
    );
    Ok(spilled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spill_is_compressed_only_when_raw_it_would_outgrow_the_page_cache() {
        let gib = 1u64 << 30;
        // 10 million claims raw are 1.1 GB: they sit in half of 24 GiB, not of 2 GiB.
        assert!(!compress_spill(10_000_000, 24 * gib));
        assert!(compress_spill(10_000_000, 2 * gib));
        // 100 million are 11 GB: half of 24 GiB holds them, half of 16 GiB does not.
        assert!(!compress_spill(100_000_000, 24 * gib));
        assert!(compress_spill(100_000_000, 16 * gib));
        assert!(compress_spill(200_000_000, 24 * gib));
    }
}
