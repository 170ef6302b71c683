//! Parquet reading shared by every input: open a file, project the columns a stage needs, decode
//! its row groups in parallel, and coerce each column to the type the stage reads (text to
//! plain `Utf8`, or to `Dictionary(Int32, Utf8)` for the few-valued [`ColumnKind::Code`]
//! columns; any timestamp unit to milliseconds). A column of the wrong kind stops the run with
//! the file and column named; a missing nullable column reads as all null.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// The contract type of an input column, and how lenient ingest is about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// `Utf8`; also accepts `LargeUtf8`, `Utf8View` and dictionary-encoded strings.
    Text,
    /// `Utf8` in the contract, of few distinct values (a region, a level, a drug code): read as
    /// `Dictionary(Int32, Utf8)`, so that Parquet's dictionary pages are decoded into keys and
    /// the reader interns each distinct value once instead of materialising every row's text.
    Code,
    /// `Timestamp(ms)`; any unit or time zone is converted.
    TimestampMs,
    /// `Date32`.
    Date,
    /// `Decimal128(18, 2)` money. Kept as read (any decimal precision and scale, or text):
    /// converting to fen is per row, because an unreadable amount rejects the row, not the file.
    Money,
    /// `Int16`/`Int32`/`Int64`: any integer type is accepted and range-checked when cast.
    Int16,
    Int32,
    Int64,
    /// `Int32` in the contract, read as `Int32` when the file has it and as `Int64` from any
    /// other integer type: a value out of range rejects its row (the reader bounds it), not the
    /// file, and a file of the contract's type is not copied.
    Int32Wide,
    Boolean,
}

/// One column a stage reads.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: ColumnKind,
    pub nullable: bool,
}

pub const fn col(name: &'static str, kind: ColumnKind, nullable: bool) -> ColumnSpec {
    ColumnSpec {
        name,
        kind,
        nullable,
    }
}

/// A decoded file: its batches (one or more per row group, in file order) with columns in the
/// order of the specs asked for.
pub struct FileBatches {
    pub path: PathBuf,
    pub bytes: u64,
    pub rows: u64,
    pub batches: Vec<RecordBatch>,
}

impl FileBatches {
    /// The file row number of each batch's first row.
    pub fn first_rows(&self) -> Vec<u64> {
        first_rows(&self.batches, &mut 0)
    }
}

/// The file row number of each batch's first row, the first batch starting at `*next`, which
/// is moved past the last (for files read a window at a time).
fn first_rows(batches: &[RecordBatch], next: &mut u64) -> Vec<u64> {
    batches
        .iter()
        .map(|b| {
            let first = *next;
            *next += b.num_rows() as u64;
            first
        })
        .collect()
}

/// The first of `columns` (index, name) that is null in row `i`: a required value is missing.
pub fn first_null<'n>(
    batch: &RecordBatch,
    i: usize,
    columns: &[(usize, &'n str)],
) -> Option<&'n str> {
    columns
        .iter()
        .find(|(c, _)| batch.column(*c).is_null(i))
        .map(|(_, name)| *name)
}

/// Lists the Parquet files behind `--claims FILE_OR_DIR`, sorted by name so runs are repeatable.
///
/// In a directory, names starting with `.` or `_` are a dataset's bookkeeping (`_SUCCESS`,
/// `.part-0.parquet.crc`) and are passed over, as Spark and Arrow pass them over. Anything else
/// that is not a `*.parquet` file (the extension in any case: `DAY2.PARQUET` is one) — a
/// `claims.parq`, a `notes.txt`, a subdirectory — stops the run naming it: skipping it could
/// drop a day of claims without a word.
pub fn list_parquet(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let file = entry.path();
        let is_file = std::fs::metadata(&file)
            .map_err(|e| Error::io(&file, e))?
            .is_file();
        if !is_file || !name.to_ascii_lowercase().ends_with(".parquet") {
            return Err(Error::StrayFile { path: file });
        }
        files.push(file);
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::schema(
            path,
            "*",
            "no *.parquet files in this directory",
        ));
    }
    Ok(files)
}

/// Reads `specs` from `path`, decoding row groups in parallel on the current rayon pool.
pub fn read_file(path: &Path, specs: &[ColumnSpec]) -> Result<FileBatches> {
    let mut batches = Vec::new();
    let (bytes, rows) = read_windows(path, specs, usize::MAX, |window, _| {
        batches.extend(window);
        Ok(())
    })?;
    Ok(FileBatches {
        path: path.to_path_buf(),
        bytes,
        rows,
        batches,
    })
}

/// Row groups per window ([`read_windows`]) for a reader whose `each` works every row (converts,
/// scatters, writes): one per two threads, so that one window is decoded while the one before
/// is worked and both fit where two windows of every thread's group would not. On 2 threads a
/// spilled 10M month took 0.97× the time of windows of 2 groups not read ahead, at a lower peak.
pub fn working_window() -> usize {
    (rayon::current_num_threads() / 2).max(1)
}

/// Reads `specs` from `path` a window of `window` row groups at a time (each window decoded in
/// parallel, the next while `each` takes this one), handing each window's batches, in file
/// order, to `each` with the file row number of each batch's first row: memory holds two
/// windows, not the file. Returns the file's size in bytes and its row count.
pub fn read_windows(
    path: &Path,
    specs: &[ColumnSpec],
    window: usize,
    mut each: impl FnMut(Vec<RecordBatch>, Vec<u64>) -> Result<()> + Send,
) -> Result<(u64, u64)> {
    let open = || File::open(path).map_err(|e| Error::io(path, e));
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(|e| Error::parquet(path, e))?;
    let file_schema = builder.schema().clone();
    let options = dictionary_options(specs, &file_schema);
    let row_groups = builder.metadata().num_row_groups();
    let rows = footer_rows(path, builder.metadata())?;

    // Which file columns to decode, and where each spec's column is in the projected batch.
    let mut roots = Vec::new();
    for spec in specs {
        match file_schema.index_of(spec.name) {
            Ok(i) => {
                check_kind(path, spec, file_schema.field(i).data_type())?;
                roots.push(i);
            }
            Err(_) if spec.nullable => {}
            Err(_) => {
                return Err(Error::schema(path, spec.name, "required column is missing"));
            }
        }
    }
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let target = Arc::new(target_schema(specs, &file_schema));

    let groups: Vec<usize> = (0..row_groups).collect();
    let decode = |window: &[usize]| -> Result<Vec<RecordBatch>> {
        let per_group: Vec<Result<Vec<RecordBatch>>> = window
            .par_iter()
            .map(|&rg| {
                Error::decoding(path, || {
                    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
                        open()?,
                        options.clone(),
                    )
                    .map_err(|e| Error::parquet(path, e))?
                    .with_row_groups(vec![rg])
                    .with_projection(mask.clone())
                    .with_batch_size(64 * 1024)
                    .build()
                    .map_err(|e| Error::parquet(path, e))?;
                    reader
                        .map(|batch| {
                            let batch = batch.map_err(|e| Error::corrupt(path, e))?;
                            coerce(path, &batch, specs, &target)
                        })
                        .collect()
                })
            })
            .collect();
        let mut batches = Vec::new();
        for group in per_group {
            batches.extend(group?);
        }
        Ok(batches)
    };
    // The next window is decoded while `each` takes this one: a window's conversion has steps
    // that hold one thread (numbering, dictionaries), and the decoding fills the other.
    let mut windows = groups.chunks(window.max(1));
    let mut next_row = 0;
    let mut decoded = windows.next().map(decode).transpose()?;
    while let Some(batches) = decoded.take() {
        let starts = first_rows(&batches, &mut next_row);
        let ahead = windows.next();
        let (handed, next) =
            rayon::join(|| each(batches, starts), || ahead.map(decode).transpose());
        // A window's own failure is met before the next window's, as in file order.
        handed?;
        decoded = next?;
    }
    // The pages gave the rows the footer counts, or the file is damaged: every sizing and every
    // summary of the run takes the footer's count as the file's rows.
    if next_row != rows {
        return Err(Error::corrupt(
            path,
            format!("the footer counts {rows} rows, the pages hold {next_row}"),
        ));
    }
    Ok((bytes, rows))
}

/// How [`ColumnKind::Code`] columns are read.
fn code_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Reader options asking for the [`ColumnKind::Code`] columns stored as `Utf8` as dictionaries
/// (the decoder keeps Parquet's dictionary pages as keys); other columns as the file has them.
fn dictionary_options(specs: &[ColumnSpec], file: &Schema) -> ArrowReaderOptions {
    let coded = |name: &str| {
        specs
            .iter()
            .any(|s| s.kind == ColumnKind::Code && s.name == name)
    };
    let fields: Vec<Field> = file
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 if coded(f.name()) => f.as_ref().clone().with_data_type(code_type()),
            _ => f.as_ref().clone(),
        })
        .collect();
    ArrowReaderOptions::new().with_schema(Arc::new(Schema::new_with_metadata(
        fields,
        file.metadata().clone(),
    )))
}

/// The row count of a Parquet file, from its footer.
pub fn row_count(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
    footer_rows(path, builder.metadata())
}

/// The row count a file's footer gives, held to its row groups' own counts: a damaged footer can
/// count anything (a negative count read as a size asks for nearly 2^64 rows), and every sizing
/// and every summary of the run takes this count as the file's rows.
fn footer_rows(path: &Path, metadata: &parquet::file::metadata::ParquetMetaData) -> Result<u64> {
    let footer = metadata.file_metadata().num_rows();
    let groups: i128 = metadata
        .row_groups()
        .iter()
        .map(|g| g.num_rows() as i128)
        .sum();
    let negative_group = metadata.row_groups().iter().any(|g| g.num_rows() < 0);
    if footer < 0 || negative_group || footer as i128 != groups {
        return Err(Error::corrupt(
            path,
            format!("the footer counts {footer} rows, its row groups {groups}"),
        ));
    }
    Ok(footer as u64)
}

fn check_kind(path: &Path, spec: &ColumnSpec, dt: &DataType) -> Result<()> {
    let text = |dt: &DataType| {
        matches!(
            dt,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    };
    let ok = match spec.kind {
        ColumnKind::Text | ColumnKind::Code => {
            text(dt) || matches!(dt, DataType::Dictionary(_, v) if text(v))
        }
        ColumnKind::TimestampMs => matches!(dt, DataType::Timestamp(_, _)),
        ColumnKind::Date => matches!(dt, DataType::Date32),
        ColumnKind::Money => matches!(dt, DataType::Decimal128(_, _)) || text(dt),
        ColumnKind::Int16 | ColumnKind::Int32 | ColumnKind::Int64 | ColumnKind::Int32Wide => {
            dt.is_integer()
        }
        ColumnKind::Boolean => matches!(dt, DataType::Boolean),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::schema(
            path,
            spec.name,
            format!("has type {dt}, expected {:?}", spec.kind),
        ))
    }
}

/// The contract's Arrow schema for `specs`: the type each kind is written as (money as
/// `Decimal128(18, 2)`), with the specs' nullability. Writers of inputs (the generator) use it,
/// so a column is defined once, where it is read.
pub fn contract_schema(specs: &[ColumnSpec]) -> Schema {
    Schema::new(
        specs
            .iter()
            .map(|s| Field::new(s.name, target_type(s.kind, None), s.nullable))
            .collect::<Vec<_>>(),
    )
}

fn target_type(kind: ColumnKind, file_type: Option<&DataType>) -> DataType {
    match kind {
        ColumnKind::Text | ColumnKind::Code => DataType::Utf8,
        ColumnKind::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, None),
        ColumnKind::Date => DataType::Date32,
        ColumnKind::Money => match file_type {
            Some(DataType::Decimal128(p, s)) => DataType::Decimal128(*p, *s),
            Some(_) => DataType::Utf8,
            None => DataType::Decimal128(18, 2),
        },
        ColumnKind::Int16 => DataType::Int16,
        ColumnKind::Int32 | ColumnKind::Int32Wide => DataType::Int32,
        ColumnKind::Int64 => DataType::Int64,
        ColumnKind::Boolean => DataType::Boolean,
    }
}

fn target_schema(specs: &[ColumnSpec], file: &Schema) -> Schema {
    Schema::new(
        specs
            .iter()
            .map(|s| {
                let file_type = file.field_with_name(s.name).ok().map(|f| f.data_type());
                let read_type = match (s.kind, file_type) {
                    (ColumnKind::Code, _) => code_type(),
                    (ColumnKind::Int32Wide, Some(DataType::Int32)) => DataType::Int32,
                    (ColumnKind::Int32Wide, _) => DataType::Int64,
                    (kind, _) => target_type(kind, file_type),
                };
                Field::new(s.name, read_type, true)
            })
            .collect::<Vec<_>>(),
    )
}

fn coerce(
    path: &Path,
    batch: &RecordBatch,
    specs: &[ColumnSpec],
    target: &SchemaRef,
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = specs
        .iter()
        .zip(target.fields())
        .map(|(spec, field)| match batch.column_by_name(spec.name) {
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            Some(array) if array.data_type() == field.data_type() => Ok(array.clone()),
            Some(array) => {
                let cast_array = if let (ColumnKind::TimestampMs, DataType::Timestamp(_, Some(_))) =
                    (spec.kind, array.data_type())
                {
                    // Drop the zone first: the contract's timestamps are zone-less local times.
                    let unit = match array.data_type() {
                        DataType::Timestamp(u, _) => *u,
                        _ => unreachable!(),
                    };
                    cast(array, &DataType::Timestamp(unit, None))
                        .and_then(|a| cast(&a, field.data_type()))
                } else {
                    cast(array, field.data_type())
                };
                let converted = cast_array
                    .map_err(|e| Error::schema(path, spec.name, format!("cannot convert: {e}")))?;
                // A cast that turns values into nulls (an Int64 too big for Int32) loses data.
                if converted.null_count() != array.null_count() {
                    return Err(Error::schema(
                        path,
                        spec.name,
                        format!("values do not fit {}", field.data_type()),
                    ));
                }
                Ok(converted)
            }
        })
        .collect::<Result<_>>()?;
    RecordBatch::try_new(target.clone(), columns)
        .map_err(|e| Error::arrow(path.display().to_string(), e))
}
