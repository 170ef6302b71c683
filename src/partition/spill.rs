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
//! ([`compress_spill`]), and written around the page cache when they would pass the kernel's
//! background writeback ([`spill_around_page_cache`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow::ipc::CompressionType;
use rayon::prelude::*;

use super::{part_of, person_key};
use crate::disk::{
    Appender, Destination, DirectQueue, Length, SPILL_PIECE_BYTES, SPILL_QUEUED_PIECES,
    SPILL_WRITERS,
};
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
        self.prefetch(part + 1);
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

    /// Asks the kernel to start reading the first partition file from `part` on into the page
    /// cache: the files are written around it ([`crate::disk`]), and a partition is read while
    /// the one before it is settled and written. Advisory, and asked from a thread of its own:
    /// the kernel submits the reads before the call returns, 2% of the 100M month's CPU time
    /// on the worker that asked, with the other worker waiting for its partition.
    fn prefetch(&self, part: usize) {
        let Some(path) = self.files.iter().skip(part).flatten().next() else {
            return;
        };
        #[cfg(target_os = "linux")]
        if let Ok(file) = File::open(path) {
            std::thread::spawn(move || {
                use std::os::fd::AsRawFd;
                // SAFETY: a plain system call on a descriptor `file` owns; no memory is passed.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
            });
        }
        #[cfg(not(target_os = "linux"))]
        let _ = path;
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

/// Whether a spill of `rows` claims is written around the page cache ([`crate::disk`]) on a
/// machine of `memory` bytes: when, written raw, it would pass the kernel's threshold for
/// writing dirty pages back in the background (10% of memory by default). Below it, the spill
/// stays in the page cache as dirty pages until read back and removed, never written to disk,
/// and a buffered write costs only its copy: the 10M month's 1.1 GB took 0.86× the time of
/// writing it around the page cache (which reads it back from disk). Above it, the kernel
/// writes the pages back while the run writes them, and the copy into the page cache
/// costs several times as much: the 100M month's 10.7 GB took 37 s of system time buffered
/// against 12.5 s written around it, 0.94× the wall time (README "Performance").
pub fn spill_around_page_cache(rows: u64, memory: u64) -> bool {
    rows.saturating_mul(SPILL_BYTES_PER_CLAIM) > memory / 10
}

fn spill_options(compress: bool) -> IpcWriteOptions {
    let codec = compress.then_some(CompressionType::LZ4_FRAME);
    IpcWriteOptions::default()
        .try_with_compression(codec)
        .expect("LZ4 is built in (arrow's ipc_compression feature)")
}

/// How the scatter writes its partition files: the IPC options, the queue of the files written
/// around the page cache, and whether they are ([`spill_around_page_cache`]: read back once, a
/// partition at a time, they then need the page cache only just before they are read,
/// [`Spilled::prefetch`]).
struct PartWriting<'a> {
    dir: &'a Path,
    options: IpcWriteOptions,
    queue: DirectQueue,
    around_page_cache: bool,
}

/// Partition `part`'s spill file in `dir`.
fn part_path(dir: &Path, part: usize) -> PathBuf {
    dir.join(format!("part-{part:04}.arrow"))
}

impl PartWriting<'_> {
    fn path(&self, part: usize) -> PathBuf {
        part_path(self.dir, part)
    }

    /// Creates partition `part`'s file, its first piece around the page cache one of eight
    /// sizes up to [`SPILL_PIECE_BYTES`]: the partitions, filled at the same pace, then hand
    /// their pieces to the queue spread over the windows rather than all in one (a burst the
    /// queue cannot hold, the scatter waiting while the disk writes it).
    fn create(&self, part: usize) -> std::io::Result<Destination> {
        let path = self.path(part);
        match self.around_page_cache {
            true => {
                let first_piece_bytes = SPILL_PIECE_BYTES / 8 * (1 + part % 8);
                Appender::create(&path, &self.queue, first_piece_bytes, SPILL_PIECE_BYTES)
                    .map(Destination::Direct)
            }
            false => Destination::buffered(&path, SPILL_WRITE_BYTES),
        }
    }
}

/// One partition's spill file while the scatter writes it: opened with its first rows.
struct PartFile {
    part: usize,
    writer: Option<FileWriter<Destination>>,
    /// Pieces not yet written, and their rows.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl PartFile {
    /// Writes the pending pieces as one batch.
    fn flush(&mut self, to: &PartWriting) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let schema = converted::schema();
        let batch = arrow::compute::concat_batches(&schema, &self.pending)
            .map_err(|e| Error::arrow("spill rows", e))?;
        self.pending.clear();
        self.pending_rows = 0;
        let path = to.path(self.part);
        let failed = |e| Error::arrow(path.display().to_string(), e);
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let out = to.create(self.part).map_err(|e| Error::io(&path, e))?;
                let writer = FileWriter::try_new_with_options(out, &schema, to.options.clone())
                    .map_err(failed)?;
                self.writer.insert(writer)
            }
        };
        writer.write(&batch).map_err(failed)
    }

    /// Writes what is pending and the file's footer; the file's length to cut it to once the
    /// queue is finished (`None` for a partition with no rows, which has no file).
    fn finish(&mut self, to: &PartWriting) -> Result<Option<Length>> {
        self.flush(to)?;
        let Some(writer) = self.writer.take() else {
            return Ok(None);
        };
        let path = to.path(self.part);
        let out = writer
            .into_inner()
            .map_err(|e| Error::arrow(path.display().to_string(), e))?;
        out.finish().map(Some).map_err(|e| Error::io(&path, e))
    }
}

/// Bytes a buffered partition file's writer gathers before a write: every partition has one,
/// so few enough that 512 of them hold 32 MiB (with the default 8 KiB, the kernel zeroed the
/// rest of each new page-cache folio a write began, 5% of the 100M month's CPU time).
const SPILL_WRITE_BYTES: usize = 64 * 1024;

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
    /// Whether the files are written around the page cache ([`spill_around_page_cache`]).
    pub around_page_cache: bool,
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
        around_page_cache,
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
    let to = PartWriting {
        dir: &spilled.dir.0,
        options: spill_options(compress),
        queue: DirectQueue::new(SPILL_QUEUED_PIECES, SPILL_WRITERS),
        around_page_cache,
    };
    let mut part_files: Vec<PartFile> = (0..parts)
        .map(|part| PartFile {
            part,
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
            // Both only read the window: what either does on one thread (the amount
            // statistics' grouping, a column's copy into its parts) the other's tasks fill.
            let registry: &Registry = registry;
            let ((), pieces) = rayon::join(
                || inspect(registry, claims, &window_suspects),
                || converted::scatter(claims, &part_of_row, parts),
            );
            let pieces = pieces?;
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
                .try_for_each(|file| file.flush(&to))
        })?;
        spilled.sources.push(SourceFile {
            path: file.clone(),
            bytes,
            rows,
        });
        input_start += rows;
    }
    // A file written around the page cache is complete once the queue has written its last
    // piece and it is cut to its length (a buffered one already is: the cut changes nothing).
    let lengths: Vec<Option<Length>> = part_files
        .par_iter_mut()
        .map(|file| file.finish(&to))
        .collect::<Result<_>>()?;
    let PartWriting { dir, queue, .. } = to;
    queue.finish().map_err(|e| Error::io(dir, e))?;
    let files: Vec<Option<PathBuf>> = lengths
        .into_iter()
        .enumerate()
        .map(|(part, length)| {
            let Some(length) = length else {
                return Ok(None);
            };
            let path = part_path(dir, part);
            length.cut().map_err(|e| Error::io(&path, e))?;
            Ok(Some(path))
        })
        .collect::<Result<_>>()?;
    spilled.files = files;
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
    spilled.prefetch(0);
    Ok(spilled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spill_goes_around_the_page_cache_only_past_a_tenth_of_memory() {
        let gib = 1u64 << 30;
        // 10 million claims raw are 1.1 GB: below 2.4 GiB, a tenth of 24 GiB; 100 million
        // (11 GB) above it.
        assert!(!spill_around_page_cache(10_000_000, 24 * gib));
        assert!(spill_around_page_cache(100_000_000, 24 * gib));
        assert!(spill_around_page_cache(10_000_000, 8 * gib));
    }

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
