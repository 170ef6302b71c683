//! Out-of-core partitioning: when a month's claims do not fit in `--memory-limit`, a first pass
//! scatters them by person key into partition files on disk, and the run then settles one
//! partition at a time. A partition is a range of person keys (the top bits of
//! [`person_key`]), so each person's claims are all in one partition and the output order —
//! persons by key — is the same as a run held in memory.
//!
//! Two things a partition cannot see alone are found during the scatter: repeated claim ids
//! (a copy may be filed under another person) and the claims with no person, which form a last
//! partition of their own. Spill files are Arrow IPC (one per partition and input file, since
//! input files may type a money column differently), LZ4-compressed.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow::ipc::CompressionType;
use rayon::prelude::*;

use super::{part_of, person_key};
use crate::error::{Error, Result};
use crate::ingest::claims::{
    claim_id_hash, convert_rows, find_repeats, InputBatch, Occurrence, SourceFile, CLAIM_COLUMNS,
    FILE_ROW,
};
use crate::ingest::read::{col, read_windows, ColumnKind};
use crate::ingest::registry::PersonIndex;

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
    /// `files[part][source]`: the spill file of a partition's rows from one input file.
    files: Vec<Vec<Option<PathBuf>>>,
    /// Input rows (numbered across files in order) that repeat an earlier claim's id, sorted.
    pub repeats: Vec<u64>,
}

impl Spilled {
    /// Number of partitions of persons; the partition after them holds the rows with no person.
    pub fn person_parts(&self) -> usize {
        1 << self.bits
    }

    /// Whether a person key falls in partition `part`.
    pub fn in_part(&self, part: usize, key: u64) -> bool {
        super::in_part(part, key, self.bits)
    }

    /// The batches of partition `part` (persons' partitions first, then the one with no
    /// person), in input order.
    pub fn read(&self, part: usize) -> Result<Vec<InputBatch>> {
        let mut inputs = Vec::new();
        for (file, path) in self.files[part].iter().enumerate() {
            let Some(path) = path else { continue };
            let reader =
                FileReader::try_new(File::open(path).map_err(|e| Error::io(path, e))?, None)
                    .map_err(|e| Error::arrow(path.display().to_string(), e))?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::arrow(path.display().to_string(), e))?;
                inputs.push(InputBatch {
                    file,
                    first_row: 0,
                    batch,
                });
            }
        }
        Ok(inputs)
    }

    /// Bytes on disk, for the summary.
    pub fn bytes(&self) -> u64 {
        self.files
            .iter()
            .flatten()
            .flatten()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Rows held back, over all partitions, to be joined into larger spill batches.
const PENDING_ROWS: usize = 512 * 1024;

/// Spill files are LZ4-compressed: a month's claims spilled raw are ~200 bytes a claim, which
/// at 100 million claims no longer fits the page cache, and the disk then sets the pace
/// (README "Spilling").
fn spill_options() -> IpcWriteOptions {
    IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .expect("LZ4 is built in (arrow's ipc_compression feature)")
}

/// The hashes of the claim ids that occur more than once in `files` (`rows` rows in all), sorted: a first read of
/// the `claim_id` column alone, made before the registry is loaded so that its 8 bytes a claim
/// are never held beside it. Only rows with these hashes (or a ledger claim's) are examined
/// closely while scattering.
pub fn repeated_ids(files: &[PathBuf], rows: u64) -> Result<Vec<u64>> {
    let window = rayon::current_num_threads().max(1);
    // Sized from the footers' `rows`: grown by doubling, the vector would at one moment hold
    // its old and new copies, half again the memory of the hashes themselves.
    let mut hashes: Vec<u64> = Vec::with_capacity(rows as usize);
    let id_only = [col("claim_id", ColumnKind::Text, true)];
    for file in files {
        read_windows(file, &id_only, window, |batches, _| {
            for batch in &batches {
                let ids = batch.column(0).as_string::<i32>();
                hashes.par_extend(
                    (0..ids.len())
                        .into_par_iter()
                        .filter(|&i| ids.is_valid(i))
                        .map(|i| claim_id_hash(ids.value(i))),
                );
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
    Ok(repeated)
}

/// Scatters the claims of `files` into `1 << bits` person partitions (and one for rows with no
/// person) under `dir`. `known` are the ledger's claim ids and `repeated` the hashes of ids
/// repeated within `files` ([`repeated_ids`]), for finding repeats.
pub fn scatter(
    files: &[PathBuf],
    bits: u32,
    dir: &Path,
    persons: &PersonIndex,
    known: &[&str],
    repeated: &[u64],
) -> Result<Spilled> {
    let dir = SpillDir(dir.to_path_buf());
    std::fs::create_dir_all(&dir.0).map_err(|e| Error::io(&dir.0, e))?;
    let parts = (1usize << bits) + 1;
    let window = rayon::current_num_threads().max(1);
    // A row is a suspect when its id's hash is repeated in the claims or is a ledger claim's.
    let mut suspects: Vec<u64> = known.par_iter().map(|id| claim_id_hash(id)).collect();
    suspects.extend_from_slice(repeated);
    suspects.par_sort_unstable();
    suspects.dedup();

    let mut spilled = Spilled {
        dir,
        bits,
        sources: Vec::new(),
        files: vec![vec![None; files.len()]; parts],
        repeats: Vec::new(),
    };
    // Copies of repeated ids: (id, rejected, settled_at, input row).
    let mut copies: Vec<(String, bool, i64, u64)> = Vec::new();
    let mut input_start = 0u64;
    for (f, file) in files.iter().enumerate() {
        let mut writers: Vec<Option<FileWriter<BufWriter<File>>>> =
            (0..parts).map(|_| None).collect();
        // Pieces are gathered per partition into larger batches before they are written: with
        // many partitions a piece of one input batch is a few hundred rows, and each IPC batch
        // costs a message and a compressed frame per buffer. PENDING_ROWS bounds the memory.
        let batch_rows = (PENDING_ROWS / parts).max(1024);
        let mut pending: Vec<Vec<RecordBatch>> = vec![Vec::new(); parts];
        let mut pending_rows = vec![0usize; parts];
        let mut write_error = None;
        let mut flush = |part: usize,
                         pieces: Vec<RecordBatch>,
                         writers: &mut Vec<Option<FileWriter<BufWriter<File>>>>|
         -> Result<()> {
            let Some(first) = pieces.first() else {
                return Ok(());
            };
            let schema = first.schema();
            let batch = arrow::compute::concat_batches(&schema, &pieces)
                .map_err(|e| Error::arrow(file.display().to_string(), e))?;
            if writers[part].is_none() {
                let path = spilled
                    .dir
                    .0
                    .join(format!("part-{part:04}-file-{f:05}.arrow"));
                let out = File::create(&path).map_err(|e| Error::io(&path, e))?;
                let writer =
                    FileWriter::try_new_with_options(BufWriter::new(out), &schema, spill_options())
                        .map_err(|e| Error::arrow(path.display().to_string(), e))?;
                writers[part] = Some(writer);
                spilled.files[part][f] = Some(path);
            }
            if let Err(e) = writers[part].as_mut().expect("opened").write(&batch) {
                write_error.get_or_insert(e);
            }
            Ok(())
        };
        let (bytes, rows) = read_windows(file, CLAIM_COLUMNS, window, |batches, firsts| {
            // A few batches at a time, each dropped once split, so memory holds the decoded
            // window and one step's pieces.
            let mut rest = batches.into_iter().zip(firsts);
            loop {
                let step: Vec<(RecordBatch, u64)> = rest.by_ref().take(window).collect();
                if step.is_empty() {
                    break;
                }
                let split: Vec<Result<Scattered>> = step
                    .par_iter()
                    .map(|(batch, first)| {
                        split_batch(
                            batch,
                            *first,
                            bits,
                            parts,
                            &suspects,
                            persons,
                            file,
                            input_start,
                        )
                    })
                    .collect();
                drop(step);
                for s in split {
                    let s = s?;
                    for (part, piece) in s.pieces.into_iter().enumerate() {
                        let Some(piece) = piece else { continue };
                        pending_rows[part] += piece.num_rows();
                        pending[part].push(piece);
                        if pending_rows[part] >= batch_rows {
                            pending_rows[part] = 0;
                            flush(part, std::mem::take(&mut pending[part]), &mut writers)?;
                        }
                    }
                    copies.extend(s.copies);
                }
            }
            Ok(())
        })?;
        for (part, pieces) in pending.into_iter().enumerate() {
            flush(part, pieces, &mut writers)?;
        }
        for writer in writers.iter_mut().flatten() {
            if let Err(e) = writer.finish() {
                write_error.get_or_insert(e);
            }
        }
        if let Some(e) = write_error {
            return Err(Error::arrow(
                format!("spill files in {}", spilled.dir.0.display()),
                e,
            ));
        }
        spilled.sources.push(SourceFile {
            path: file.clone(),
            bytes,
            rows,
        });
        input_start += rows;
    }

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

/// One input batch cut into partitions, and the copies of repeated ids it holds.
struct Scattered {
    pieces: Vec<Option<RecordBatch>>,
    copies: Vec<(String, bool, i64, u64)>,
}

#[allow(clippy::too_many_arguments)]
fn split_batch(
    batch: &RecordBatch,
    first_row: u64,
    bits: u32,
    parts: usize,
    suspects: &[u64],
    persons: &PersonIndex,
    file: &Path,
    input_start: u64,
) -> Result<Scattered> {
    let person_id = batch.column(1).as_string::<i32>();
    let no_person = parts - 1;
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); parts];
    for i in 0..batch.num_rows() {
        let part = if person_id.is_valid(i) {
            part_of(person_key(person_id.value(i)), bits)
        } else {
            no_person
        };
        rows[part].push(i as u32);
    }
    let schema: SchemaRef = {
        let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(FILE_ROW, DataType::UInt64, false)));
        Arc::new(Schema::new(fields))
    };
    let context = || file.display().to_string();
    let pieces = rows
        .iter()
        .map(|rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            let indices = UInt32Array::from(rows.clone());
            let taken =
                take_record_batch(batch, &indices).map_err(|e| Error::arrow(context(), e))?;
            let mut columns: Vec<ArrayRef> = taken.columns().to_vec();
            columns.push(Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|&i| first_row + i as u64),
            )));
            RecordBatch::try_new(schema.clone(), columns)
                .map(Some)
                .map_err(|e| Error::arrow(context(), e))
        })
        .collect::<Result<_>>()?;

    let mut copies = Vec::new();
    if !suspects.is_empty() {
        let ids = batch.column(0).as_string::<i32>();
        let flagged: Vec<u32> = (0..ids.len())
            .filter(|&i| {
                ids.is_valid(i) && suspects.binary_search(&claim_id_hash(ids.value(i))).is_ok()
            })
            .map(|i| i as u32)
            .collect();
        if !flagged.is_empty() {
            let indices = UInt32Array::from(flagged.clone());
            let taken =
                take_record_batch(batch, &indices).map_err(|e| Error::arrow(context(), e))?;
            let (rejected, settled_at) = convert_rows(&taken, persons)?;
            let taken_ids = taken.column(0).as_string::<i32>();
            for (k, &i) in flagged.iter().enumerate() {
                copies.push((
                    taken_ids.value(k).to_string(),
                    rejected[k],
                    settled_at[k],
                    input_start + first_row + i as u64,
                ));
            }
        }
    }
    Ok(Scattered { pieces, copies })
}
