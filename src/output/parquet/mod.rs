//! Parquet writing for every file yibao produces (outputs, the state, the generator's inputs).
//!
//! - **Parallel, in bounded memory.** Rows are cut into row groups of exactly
//!   [`ROW_GROUP_ROWS`] rows (the last one shorter) and encoded as they arrive, a slice of rows
//!   at a time with every column as its own rayon task, so memory holds the row group's encoded
//!   pages and one slice of rows, never whole row groups as Arrow arrays. A row group's bytes
//!   depend only on its rows, so the file is the same for any thread count and any batching.
//! - **Atomic and durable.** A file is written as `NAME.tmp`, fsynced when closed, and renamed
//!   into place by [`Committed::commit`] once the whole run has succeeded: a reader never sees
//!   half a file, and a failed run leaves the previous outputs untouched. A writer dropped before
//!   `close` removes its temporary file; [`sync_dir`] makes the renames themselves durable.
//! - **Tuned by measurement** ([`FileSettings`]): see README "Performance" for the numbers behind
//!   the defaults.
//! - **Columns written by hand** ([`pages::HandChunk`]): text that comes as codes into a list
//!   of names, from the codes ([`coded`], without the Arrow writer's hashing of every row's
//!   text); distinct ids as prefixes and suffixes ([`prefixed`]); integers delta-packed from
//!   the Arrow buffer ([`packed`]). The Arrow writer takes the rest.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, ColumnPath};
use rayon::prelude::*;

use crate::error::{Error, Result};

mod coded;
mod packed;
mod pages;
mod prefixed;
use crate::disk::Sink;
use coded::CodedChunk;
use packed::PackedChunk;
use pages::{ChunkPages, HandChunk};
use prefixed::PrefixedChunk;

/// Rows per row group: about a million keeps per-group metadata small while letting readers
/// decode groups in parallel.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// How a file's columns are encoded.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The codec asked for. A column chunk yibao writes by hand asked for snappy keeps it only
    /// when snappy shrinks the chunk's first data pages (4 KiB of them, or all it has) to 7/8
    /// of their size or less, and is otherwise written uncompressed (`pages::ChunkPages`).
    pub compression: Compression,
    /// Columns whose values are (nearly) all distinct, such as `claim_id`: dictionary encoding
    /// would build a dictionary only to abandon it, so they are written `DELTA_BYTE_ARRAY`
    /// (each value as the length of the prefix it shares with the previous one and the rest).
    pub distinct_columns: &'static [&'static str],
    /// Distinct text columns written `DELTA_LENGTH_BYTE_ARRAY` instead (the lengths, then every
    /// value's bytes in one run): larger than `DELTA_BYTE_ARRAY` where ids share prefixes, but
    /// a reader that decodes the column whole copies the bytes at once instead of rebuilding
    /// each value from the one before.
    pub length_columns: &'static [&'static str],
    /// Integer columns (Int16/32/64, dates, timestamps, decimals of up to 18 digits) written
    /// `DELTA_BINARY_PACKED` instead of through a dictionary: no hashing of every value, and
    /// about as small (amounts are bit-packed to their range, sorted keys to their steps).
    pub delta_integers: bool,
    /// Integer columns written `PLAIN` even with `delta_integers`: hash keys, whose deltas are
    /// as wide as the keys themselves, so that delta packing saves nothing and costs every
    /// reader the unpacking.
    pub plain_columns: &'static [&'static str],
    pub statistics: EnabledStatistics,
    /// Columns written with chunk statistics whatever `statistics` says: the one a reader
    /// skips row groups by.
    pub statistics_columns: &'static [&'static str],
    /// Whether text columns (and lists of text) get `statistics`. An output in person-key order
    /// holds nearly every value of a few-valued text column (region, status, rule) in every row
    /// group, so their minimum and maximum let a reader skip nothing, and finding them costs a
    /// comparison of every row's text.
    pub text_statistics: bool,
    pub row_group_rows: usize,
    /// Rows per data page of every column but `plain_columns` (`None`: the writer's 20,000).
    /// Small pages let a reader that wants a few rows of a large file decode only the pages
    /// holding them, found through the offset index; the plain key columns it scans whole
    /// keep the default.
    pub value_page_rows: Option<usize>,
    /// Whether the file is written around the page cache (`O_DIRECT`, [`crate::disk`]): for files
    /// no later step of the run or the next run reads (the outputs), so that their bytes are
    /// never copied into the page cache. The state's files, which the next night reads, keep
    /// the page cache.
    pub around_page_cache: bool,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings::DEFAULT
    }
}

impl FileSettings {
    /// The settings measured best for yibao's files (README "Performance"): snappy where it
    /// pays, dictionary encoding for text, delta encoding for integers, chunk-level statistics,
    /// row groups of [`ROW_GROUP_ROWS`].
    pub const DEFAULT: FileSettings = FileSettings {
        compression: Compression::SNAPPY,
        distinct_columns: &[],
        length_columns: &[],
        delta_integers: true,
        plain_columns: &[],
        statistics: EnabledStatistics::Chunk,
        statistics_columns: &[],
        text_statistics: true,
        row_group_rows: ROW_GROUP_ROWS,
        value_page_rows: None,
        around_page_cache: false,
    };

    /// A file with a row per claim (settlements, anomalies, rejected rows, generated claims):
    /// [`Self::DEFAULT`] with `claim_id` written without a dictionary.
    pub const PER_CLAIM: FileSettings = FileSettings {
        distinct_columns: &["claim_id"],
        ..FileSettings::DEFAULT
    };

    /// An output with a row per claim in person-key order (settlements, anomalies, rejected
    /// rows): [`Self::PER_CLAIM`] with the ids also delta-encoded (an anomaly's related claim
    /// too: few flags share one), no statistics for text columns, which are in no order, and
    /// written around the page cache: the run never reads its outputs back.
    pub const OUTPUT: FileSettings = FileSettings {
        distinct_columns: &["claim_id", "person_id", "related_claim_id"],
        text_statistics: false,
        around_page_cache: true,
        ..FileSettings::PER_CLAIM
    };

    fn properties(&self, schema: &SchemaRef) -> WriterProperties {
        let mut builder = WriterProperties::builder()
            .set_compression(self.compression)
            .set_write_batch_size(WRITE_BATCH_ROWS)
            .set_statistics_enabled(self.statistics)
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)));
        let no_dictionary = |builder: WriterPropertiesBuilder, name: &str, encoding| {
            let path = ColumnPath::from(name);
            builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, encoding)
        };
        for name in self.distinct_columns {
            builder = no_dictionary(builder, name, Encoding::DELTA_BYTE_ARRAY);
        }
        for name in self.length_columns {
            builder = no_dictionary(builder, name, Encoding::DELTA_LENGTH_BYTE_ARRAY);
        }
        if !self.text_statistics {
            for field in schema.fields() {
                let path = match field.data_type() {
                    DataType::LargeUtf8 => vec![field.name().clone()],
                    text if is_text(text) => vec![field.name().clone()],
                    DataType::List(item) if item.data_type() == &DataType::Utf8 => {
                        vec![field.name().clone(), "list".into(), item.name().clone()]
                    }
                    _ => continue,
                };
                builder = builder
                    .set_column_statistics_enabled(ColumnPath::new(path), EnabledStatistics::None);
            }
        }
        for name in self.statistics_columns {
            builder = builder
                .set_column_statistics_enabled(ColumnPath::from(*name), EnabledStatistics::Chunk);
        }
        if self.delta_integers {
            for field in schema.fields() {
                if is_integer(field.data_type()) {
                    let encoding = match self.plain_columns.contains(&field.name().as_str()) {
                        true => Encoding::PLAIN,
                        false => Encoding::DELTA_BINARY_PACKED,
                    };
                    builder = no_dictionary(builder, field.name(), encoding);
                }
            }
        }
        if let Some(rows) = self.value_page_rows {
            for field in schema.fields() {
                if !self.plain_columns.contains(&field.name().as_str()) {
                    builder = builder.set_column_data_page_row_count_limit(
                        ColumnPath::from(field.name().as_str()),
                        rows,
                    );
                }
            }
        }
        builder.build()
    }
}

/// Whether Parquet stores `data_type` as INT32 or INT64 (what `DELTA_BINARY_PACKED` encodes).
fn is_integer(data_type: &DataType) -> bool {
    use DataType::*;
    match data_type {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => true,
        Date32 | Date64 | Timestamp(..) | Time32(_) | Time64(_) | Duration(_) => true,
        Decimal128(precision, _) => *precision <= 18,
        _ => false,
    }
}

/// A Parquet file being written to its temporary name.
pub struct PendingFile {
    tmp: PathBuf,
    path: PathBuf,
    schema: SchemaRef,
    /// `None` once closed, so that `Drop` knows whether to clean up.
    writer: Option<SerializedFileWriter<Sink>>,
    factory: ArrowRowGroupWriterFactory,
    row_group_rows: usize,
    /// The column writers of the row group being filled (created with its first rows): they
    /// hold its pages encoded and compressed, far smaller than the rows as Arrow arrays.
    columns: Vec<ColumnChunk>,
    /// Per column, how it is written by hand ([`coded`], [`packed`]): `None` where the file's
    /// settings ask for what only the Arrow writer does (another codec or encoding, page
    /// statistics, a bloom filter, a nested column).
    by_hand: Vec<Option<ByHand>>,
    /// Rows of the filling row group given to `write`…
    filling_rows: usize,
    /// …of which these are not yet encoded (fewer than [`ENCODE_ROWS`] until the group ends).
    queued: Vec<RecordBatch>,
    queued_rows: usize,
    row_groups_written: usize,
    pub rows: u64,
}

/// Rows queued before they are encoded, every column as its own rayon task: enough to keep the
/// threads busy per task, few enough that memory holds a slice of rows, not row groups.
const ENCODE_ROWS: usize = 64 * 1024;

impl PendingFile {
    /// Starts `path` as `path.tmp` with the default settings.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<PendingFile> {
        Self::create_with(path, schema, &FileSettings::default())
    }

    pub fn create_with(
        path: &Path,
        schema: SchemaRef,
        settings: &FileSettings,
    ) -> Result<PendingFile> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let file =
            Sink::create(&tmp, settings.around_page_cache).map_err(|e| Error::io(&tmp, e))?;
        // ArrowWriter derives the Parquet schema and embeds the Arrow schema (so readers get
        // back Timestamp(ms), Int16, …); only its low-level parts are used afterwards.
        let props = settings.properties(&schema);
        let arrow_writer = ArrowWriter::try_new(file, schema.clone(), Some(props.clone()))
            .map_err(|e| Error::parquet(&tmp, e))?;
        let (writer, factory) = arrow_writer
            .into_serialized_writer()
            .map_err(|e| Error::parquet(&tmp, e))?;
        let leaves = factory
            .create_column_writers(0)
            .map_err(|e| Error::parquet(&tmp, e))?
            .len();
        // Column `i` must be Parquet leaf `i` (lists of primitives are one leaf; structs are not
        // used in any yibao file).
        assert_eq!(
            leaves,
            schema.fields().len(),
            "struct columns are not supported"
        );
        let by_hand = by_hand(&schema, writer.schema_descr(), &props);
        Ok(PendingFile {
            tmp,
            path: path.to_path_buf(),
            schema,
            writer: Some(writer),
            factory,
            by_hand,
            row_group_rows: settings.row_group_rows.max(1),
            columns: Vec::new(),
            filling_rows: 0,
            queued: Vec::new(),
            queued_rows: 0,
            row_groups_written: 0,
            rows: 0,
        })
    }

    /// Appends `batch`, cutting it where a row group ends. Rows are encoded as they come, a
    /// slice of [`ENCODE_ROWS`] at a time, each column in parallel.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let mut at = 0;
        while at < batch.num_rows() {
            let take = (self.row_group_rows - self.filling_rows).min(batch.num_rows() - at);
            self.queued.push(if take == batch.num_rows() {
                batch.clone()
            } else {
                batch.slice(at, take)
            });
            self.queued_rows += take;
            self.filling_rows += take;
            at += take;
            if self.filling_rows == self.row_group_rows {
                self.finish_row_group()?;
            } else if self.queued_rows >= ENCODE_ROWS {
                self.encode_queued(false)?;
            }
        }
        Ok(())
    }

    /// Ends the filling row group, if it holds rows: the rows written next start a new one.
    pub fn end_row_group(&mut self) -> Result<()> {
        if self.filling_rows > 0 {
            self.finish_row_group()?;
        }
        Ok(())
    }

    /// Row groups appended to the file so far.
    pub fn row_groups(&self) -> usize {
        self.row_groups_written
    }

    /// Adds `key` = `value` to the file's key-value metadata (written by [`Self::close`]).
    pub fn append_key_value(&mut self, key: &str, value: String) {
        self.writer
            .as_mut()
            .expect("writer used after close")
            .append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                key.to_string(),
                value,
            ));
    }

    /// Encodes the queued rows into the filling row group's column writers: all of them at the
    /// group's end, else the whole [`WRITE_CALL_ROWS`] steps (the rest stays queued, so that
    /// steps fall on the same rows however the batches were cut).
    fn encode_queued(&mut self, group_ends: bool) -> Result<()> {
        let rows = if group_ends {
            self.queued_rows
        } else {
            self.queued_rows / WRITE_CALL_ROWS * WRITE_CALL_ROWS
        };
        if rows == 0 {
            return Ok(());
        }
        let (now, rest) = split_rows(std::mem::take(&mut self.queued), rows);
        self.queued = rest;
        self.queued_rows -= rows;
        if self.columns.is_empty() {
            let writers = self
                .factory
                .create_column_writers(self.row_groups_written)
                .map_err(|e| Error::parquet(&self.tmp, e))?;
            // A text column is written from codes for the whole row group when its first rows
            // come as codes.
            self.columns = writers
                .into_iter()
                .zip(&self.by_hand)
                .enumerate()
                .map(|(c, (writer, by_hand))| {
                    let first = now[0].column(c);
                    let chunk: Box<dyn HandChunk> = match by_hand {
                        Some(ByHand::Text(how)) if coded::is_coded(first.as_ref()) => {
                            Box::new(CodedChunk::new(how.pages()?))
                        }
                        Some(ByHand::Distinct(how, prefixed))
                            if first.data_type() == &DataType::Utf8 =>
                        {
                            Box::new(PrefixedChunk::new(how.pages()?, *prefixed))
                        }
                        Some(ByHand::Integers(how, statistics)) => {
                            Box::new(PackedChunk::new(how.pages()?, *statistics)?)
                        }
                        _ => return Ok(ColumnChunk::Arrow(Box::new(writer))),
                    };
                    Ok(ColumnChunk::ByHand(chunk))
                })
                .collect::<parquet::errors::Result<_>>()
                .map_err(|e| Error::parquet(&self.tmp, e))?;
        }
        let schema = &self.schema;
        self.columns
            .par_iter_mut()
            .enumerate()
            .try_for_each(|(c, column)| {
                let arrays: Vec<&ArrayRef> = now.iter().map(|b| b.column(c)).collect();
                match column {
                    ColumnChunk::ByHand(chunk) => {
                        for array in arrays {
                            chunk.write(array.as_ref())?;
                        }
                    }
                    ColumnChunk::Arrow(column) => {
                        let field = schema.field(c);
                        for piece in aligned(&arrays, WRITE_CALL_ROWS)? {
                            for leaf in compute_leaves(field, &without_empty_nulls(piece)?)? {
                                column.write(&leaf)?;
                            }
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e: parquet::errors::ParquetError| Error::parquet(&self.tmp, e))
    }

    /// Encodes the rest of the filling row group and appends it to the file.
    fn finish_row_group(&mut self) -> Result<()> {
        self.encode_queued(true)?;
        let tmp = &self.tmp;
        let chunks: Vec<ClosedChunk> = std::mem::take(&mut self.columns)
            .into_par_iter()
            .map(|column| match column {
                ColumnChunk::Arrow(column) => column.close().map(ClosedChunk::Arrow),
                ColumnChunk::ByHand(chunk) => chunk
                    .close()
                    .map(|(bytes, close)| ClosedChunk::ByHand(bytes, close)),
            })
            .collect::<parquet::errors::Result<_>>()
            .map_err(|e| Error::parquet(tmp, e))?;
        let writer = self.writer.as_mut().expect("writer used after close");
        let mut row_group = writer
            .next_row_group()
            .map_err(|e| Error::parquet(tmp, e))?;
        for chunk in chunks {
            match chunk {
                ClosedChunk::Arrow(chunk) => chunk.append_to_row_group(&mut row_group),
                ClosedChunk::ByHand(bytes, close) => row_group.append_column(&bytes, close),
            }
            .map_err(|e| Error::parquet(tmp, e))?;
        }
        row_group.close().map_err(|e| Error::parquet(tmp, e))?;
        writer.inner().row_group_written();
        self.row_groups_written += 1;
        self.filling_rows = 0;
        Ok(())
    }

    /// Encodes what is queued, writes the footer, fsyncs and closes the temporary file;
    /// [`Committed::commit`] renames it into place.
    pub fn close(mut self) -> Result<Committed> {
        if self.filling_rows > 0 {
            self.finish_row_group()?;
        }
        let writer = self.writer.take().expect("writer used after close");
        let closed = writer
            .into_inner()
            .map_err(|e| Error::parquet(&self.tmp, e))
            .and_then(|sink| sink.finish().map_err(|e| Error::io(&self.tmp, e)));
        match closed {
            Ok(()) => Ok(Committed {
                tmp: std::mem::take(&mut self.tmp),
                path: std::mem::take(&mut self.path),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&self.tmp);
                Err(e)
            }
        }
    }
}

impl Drop for PendingFile {
    /// A file dropped before `close` (an error on the way) leaves no `.tmp` behind.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// One column of the row group being filled.
enum ColumnChunk {
    Arrow(Box<ArrowColumnWriter>),
    ByHand(Box<dyn HandChunk>),
}

/// One column of a finished row group, ready to append.
enum ClosedChunk {
    Arrow(ArrowColumnChunk),
    ByHand(bytes::Bytes, parquet::column::writer::ColumnCloseResult),
}

/// Where and how a column written by hand goes.
struct Chunking {
    descr: ColumnDescPtr,
    compression: Compression,
    page_rows: usize,
}

impl Chunking {
    /// A row group's pages of the column, empty.
    fn pages(&self) -> parquet::errors::Result<ChunkPages> {
        ChunkPages::new(self.descr.clone(), self.compression, self.page_rows)
    }
}

/// A column written by hand: text from codes ([`coded`]), distinct text as prefixes and
/// suffixes or as lengths and values ([`prefixed`]), or integers delta-packed ([`packed`])
/// with or without chunk statistics.
enum ByHand {
    Text(Chunking),
    /// `DELTA_BYTE_ARRAY` when `true`, else `DELTA_LENGTH_BYTE_ARRAY`.
    Distinct(Chunking, bool),
    Integers(Chunking, bool),
}

/// Per column of `schema`, whether it is written by hand under `props`: a top-level column,
/// snappy or uncompressed, data pages of version 1 without page statistics or a bloom filter;
/// text without statistics, dictionary-encoded ([`coded`]), `DELTA_BYTE_ARRAY` or
/// `DELTA_LENGTH_BYTE_ARRAY` ([`prefixed`]), or integers `DELTA_BINARY_PACKED` ([`packed`]).
fn by_hand(
    schema: &SchemaRef,
    parquet: &parquet::schema::types::SchemaDescriptor,
    props: &WriterProperties,
) -> Vec<Option<ByHand>> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, field)| {
            let path = ColumnPath::from(field.name().as_str());
            let compression = props.compression(&path);
            let statistics = props.statistics_enabled(&path);
            let chunk = props.writer_version() == WriterVersion::PARQUET_1_0
                && props.bloom_filter_properties(&path).is_none()
                && matches!(compression, Compression::SNAPPY | Compression::UNCOMPRESSED);
            let chunking = || Chunking {
                descr: parquet.column(c),
                compression,
                page_rows: props.column_data_page_row_count_limit(&path),
            };
            if !chunk {
                return None;
            }
            // Text without statistics. A dictionary field's text is written by hand when its
            // rows come as codes ([`coded`]); a file's batches give a column one type
            // throughout (queued rows are concatenated), so a row group never mixes codes with
            // other keys.
            let bare_text = is_text(field.data_type()) && statistics == EnabledStatistics::None;
            if bare_text && props.dictionary_enabled(&path) {
                return Some(ByHand::Text(chunking()));
            }
            let distinct = bare_text
                && field.data_type() == &DataType::Utf8
                && !props.dictionary_enabled(&path);
            match props.encoding(&path) {
                Some(Encoding::DELTA_BYTE_ARRAY) if distinct => {
                    return Some(ByHand::Distinct(chunking(), true));
                }
                Some(Encoding::DELTA_LENGTH_BYTE_ARRAY) if distinct => {
                    return Some(ByHand::Distinct(chunking(), false));
                }
                _ => {}
            }
            if packed::is_packable(field.data_type())
                && !props.dictionary_enabled(&path)
                && props.encoding(&path) == Some(Encoding::DELTA_BINARY_PACKED)
                && statistics != EnabledStatistics::Page
            {
                let with_statistics = statistics == EnabledStatistics::Chunk;
                return Some(ByHand::Integers(chunking(), with_statistics));
            }
            None
        })
        .collect()
}

/// Whether Parquet stores `data_type` as text: `Utf8`, or a dictionary of it (the state's name
/// columns, whose type tells a reader to hand them back as a dictionary).
fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, value) => value.as_ref() == &DataType::Utf8,
        other => other == &DataType::Utf8,
    }
}

/// A complete temporary file waiting for the run to succeed.
#[must_use = "a closed file appears only when committed"]
pub struct Committed {
    pub tmp: PathBuf,
    pub path: PathBuf,
}

impl Committed {
    pub fn commit(self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes `bytes` to `path` through a fsynced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    (|| {
        let mut file = File::create(&tmp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()
    })()
    .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// fsyncs a directory, so that the names created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Rows the column writer encodes per step (parquet's `write_batch_size`, its default):
/// it decides where a page ends after each step, so steps must fall on the same rows whatever
/// the batches were.
const WRITE_BATCH_ROWS: usize = 1024;

/// Rows per call into a column writer, on a fixed grid from the row group's start. The writer
/// cuts each call into mini-batches — of up to the page row limit when the call's rows have no
/// validity buffer, of [`WRITE_BATCH_ROWS`] when they have one — and closes a page after a
/// mini-batch, so where pages end depends on where calls start and on the buffers: calls on the
/// grid, buffers only where a null is ([`without_empty_nulls`]), and a file's bytes depend only
/// on its rows.
const WRITE_CALL_ROWS: usize = 8 * WRITE_BATCH_ROWS;

/// `batches` cut after their first `rows` rows: (those rows, the rest).
fn split_rows(batches: Vec<RecordBatch>, rows: usize) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut left = rows;
    for batch in batches {
        let n = batch.num_rows();
        if left >= n {
            left -= n;
            head.push(batch);
        } else if left == 0 {
            tail.push(batch);
        } else {
            head.push(batch.slice(0, left));
            tail.push(batch.slice(left, n - left));
            left = 0;
        }
    }
    (head, tail)
}

/// `array` without its validity buffer when that marks no null. The column writer takes the
/// buffer's presence, not its count, to choose how to cut a call into mini-batches (see
/// [`WRITE_CALL_ROWS`]); whether rows carry one depends on how they were built or joined.
fn without_empty_nulls(array: ArrayRef) -> parquet::errors::Result<ArrayRef> {
    if array.null_count() > 0 || array.nulls().is_none() {
        return Ok(array);
    }
    let data = array
        .to_data()
        .into_builder()
        .nulls(None)
        .build()
        .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?;
    Ok(arrow::array::make_array(data))
}

/// A row group's column as pieces of `step` rows (but the last): the batches as written, sliced
/// every `step` rows from the group's start, with the rows around each batch boundary joined
/// into one piece. Copies at most `step` rows per boundary.
fn aligned(arrays: &[&ArrayRef], step: usize) -> parquet::errors::Result<Vec<ArrayRef>> {
    let mut pieces = Vec::new();
    let mut carry: Vec<ArrayRef> = Vec::new();
    let mut carried = 0;
    let join = |carry: &mut Vec<ArrayRef>| -> parquet::errors::Result<ArrayRef> {
        let parts: Vec<&dyn Array> = carry.iter().map(|a| a.as_ref()).collect();
        let joined = arrow::compute::concat(&parts)
            .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?;
        carry.clear();
        Ok(joined)
    };
    for array in arrays {
        let (mut at, len) = (0, array.len());
        if carried > 0 {
            let head = (step - carried).min(len);
            carry.push(array.slice(0, head));
            carried += head;
            at = head;
            if carried < step {
                continue;
            }
            pieces.push(join(&mut carry)?);
            carried = 0;
        }
        while len - at >= step {
            pieces.push(if at == 0 && step == len {
                (*array).clone()
            } else {
                array.slice(at, step)
            });
            at += step;
        }
        if at < len {
            carry.push(array.slice(at, len - at));
            carried = len - at;
        }
    }
    if carried > 0 {
        pieces.push(join(&mut carry)?);
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::rng::{mix64, SplitMix64};
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    fn int64_values(array: &ArrayRef) -> Vec<i64> {
        array
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    fn batch(schema: &SchemaRef, from: i64, n: i64) -> RecordBatch {
        let ids: Vec<i64> = (from..from + n).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("c{i}")).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn write_file(dir: &Path, threads: usize, batch_rows: &[i64]) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("claim_id", DataType::Utf8, false),
        ]));
        let settings = FileSettings {
            row_group_rows: 1000,
            distinct_columns: &["claim_id"],
            ..FileSettings::default()
        };
        let path = dir.join(format!("t{threads}.parquet"));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut file = PendingFile::create_with(&path, schema.clone(), &settings).unwrap();
            let mut from = 0;
            for &n in batch_rows {
                file.write(&batch(&schema, from, n)).unwrap();
                from += n;
            }
            file.close().unwrap().commit().unwrap();
        });
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn pieces_fall_on_whole_steps_whatever_the_batches() {
        let arrays: Vec<ArrayRef> = [5, 3, 9, 1, 4]
            .iter()
            .scan(0i64, |from, &n| {
                let a: ArrayRef = Arc::new(Int64Array::from_iter_values(*from..*from + n));
                *from += n;
                Some(a)
            })
            .collect();
        let refs: Vec<&ArrayRef> = arrays.iter().collect();
        let pieces = aligned(&refs, 4).unwrap();
        let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert_eq!(lengths, vec![4, 4, 4, 4, 4, 2]);
        let values: Vec<i64> = pieces.iter().flat_map(int64_values).collect();
        assert_eq!(values, (0..22).collect::<Vec<_>>());
    }

    #[test]
    fn row_groups_are_cut_by_rows_and_bytes_do_not_depend_on_threads() {
        let dir = tempfile::tempdir().unwrap();
        let one = write_file(dir.path(), 1, &[300, 2500, 1, 1199, 7]);
        let four = write_file(dir.path(), 4, &[300, 2500, 1, 1199, 7]);
        assert_eq!(one, four);
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            File::open(dir.path().join("t1.parquet")).unwrap(),
        )
        .unwrap();
        let sizes: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(sizes, vec![1000, 1000, 1000, 1000, 7]);
        let (mut rows, mut ids) = (Vec::new(), Vec::new());
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            rows.extend(int64_values(batch.column(0)));
            let texts = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            ids.extend(texts.iter().map(|t| t.unwrap().to_string()));
        }
        assert_eq!(rows, (0..4007).collect::<Vec<_>>());
        // The ids, prefixed against the value before them across batches and pages.
        assert_eq!(ids, (0..4007).map(|i| format!("c{i}")).collect::<Vec<_>>());
        // Batched differently, the same rows give the same file.
        assert_eq!(write_file(dir.path(), 2, &[4007]), one);
    }

    #[test]
    fn snappy_is_kept_only_by_chunks_it_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("noise", DataType::Int64, false),
            Field::new("steady", DataType::Int64, false),
            Field::new("late", DataType::Int64, true),
        ]));
        // Delta-packed, random values leave snappy nothing to find; a value that steps once
        // every hundred rows packs to runs of zero bits, which it shrinks several times over.
        let noise: Vec<i64> = (0..50_000u64).map(|i| mix64(i) as i64).collect();
        let steady: Vec<i64> = (0..50_000).map(|i| i / 100).collect();
        // Null on the whole first page (its levels a few bytes, which snappy cannot shrink),
        // steady after it: judged on the pages that hold values.
        let late: Vec<Option<i64>> = (0..50_000)
            .map(|i| (i >= 20_000).then_some(i / 100))
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(noise.clone())),
                Arc::new(Int64Array::from(steady.clone())),
                Arc::new(Int64Array::from(late)),
            ],
        )
        .unwrap();
        let mut file = PendingFile::create_with(&path, schema, &FileSettings::OUTPUT).unwrap();
        file.write(&batch).unwrap();
        file.close().unwrap().commit().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let chunk = |c: usize| reader.metadata().row_group(0).column(c).clone();
        assert_eq!(chunk(0).compression(), Compression::UNCOMPRESSED);
        assert_eq!(chunk(1).compression(), Compression::SNAPPY);
        assert_eq!(chunk(2).compression(), Compression::SNAPPY);
        assert!(chunk(1).compressed_size() * 4 < chunk(1).uncompressed_size());
        assert_eq!(chunk(0).compressed_size(), chunk(0).uncompressed_size());
        let (mut noise_read, mut steady_read) = (Vec::new(), Vec::new());
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            noise_read.extend(int64_values(batch.column(0)));
            steady_read.extend(int64_values(batch.column(1)));
        }
        assert!(noise_read == noise && steady_read == steady);
    }

    #[test]
    fn integers_are_delta_encoded_distinct_text_delta_prefixed_other_text_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("claim_id", DataType::Utf8, false),
            Field::new("fund_paid", DataType::Decimal128(18, 2), false),
            Field::new("day", DataType::Date32, true),
            Field::new("status", DataType::Utf8, false),
        ]));
        let n = 5000;
        let amounts =
            arrow::array::Decimal128Array::from_iter_values((0..n).map(|i| i * 37 % 1000))
                .with_precision_and_scale(18, 2)
                .unwrap();
        let days =
            arrow::array::Date32Array::from_iter((0..n).map(|i| (i % 7 != 0).then_some(i as i32)));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("C2024{i:08}")),
                )),
                Arc::new(amounts.clone()),
                Arc::new(days.clone()),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["paid", "capped"][i as usize % 2]),
                )),
            ],
        )
        .unwrap();
        let mut file = PendingFile::create_with(&path, schema, &FileSettings::OUTPUT).unwrap();
        file.write(&batch).unwrap();
        file.close().unwrap().commit().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        // Statistics for the numbers and days, none for text (in no order in an output).
        let has_statistics: Vec<bool> = reader
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .map(|c| c.statistics().is_some())
            .collect();
        assert_eq!(has_statistics, [false, true, true, false]);
        let encodings: Vec<Vec<Encoding>> = reader
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .map(|c| c.encodings().collect())
            .collect();
        assert!(encodings[0].contains(&Encoding::DELTA_BYTE_ARRAY));
        assert!(encodings[1].contains(&Encoding::DELTA_BINARY_PACKED));
        assert!(encodings[2].contains(&Encoding::DELTA_BINARY_PACKED));
        for integer in &encodings[..3] {
            assert!(!integer.contains(&Encoding::RLE_DICTIONARY), "{integer:?}");
        }
        assert!(encodings[3].contains(&Encoding::RLE_DICTIONARY));
        let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        assert_eq!(read, batch);
    }

    #[test]
    fn pages_do_not_depend_on_how_rows_with_and_without_nulls_were_batched() {
        // The column writer cuts a write call into mini-batches by whether the call's rows hold
        // nulls (up to the page row limit when none do, `write_batch_size` when some do) and
        // closes a page after a mini-batch: calls must start on the same rows in every run.
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
        let rows: Vec<Option<String>> = (0..60_000)
            .map(|i| (i < 40_960 || i % 3 != 0).then(|| format!("v{}", i % 5)))
            .collect();
        let write = |name: &str, cuts: &[usize]| {
            let path = dir.path().join(name);
            let mut file = PendingFile::create(&path, schema.clone()).unwrap();
            let mut from = 0;
            for &to in cuts {
                let array = StringArray::from(rows[from..to].to_vec());
                file.write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).unwrap())
                    .unwrap();
                from = to;
            }
            file.close().unwrap().commit().unwrap();
            std::fs::read(&path).unwrap()
        };
        let whole = write("whole.parquet", &[60_000]);
        assert_eq!(write("cut.parquet", &[40_960, 60_000]), whole);
        assert_eq!(
            write("small.parquet", &[700, 20_000, 41_000, 60_000]),
            whole
        );
    }

    /// Rows of three text columns as the writers' batches bring them: `region` coded into a
    /// list that changes order and grows from batch to batch, `reason` coded with nulls, and
    /// `note` null in every row; one batch brings `region` as plain text.
    fn coded_rows(cuts: &[usize]) -> (SchemaRef, Vec<RecordBatch>, Vec<[Option<String>; 3]>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("region", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let region = |i: usize| format!("3304{:02}", (i / 1000 + i % 3) % 9);
        let reason =
            |i: usize| (!i.is_multiple_of(7)).then(|| ["cap", "scope", "waiting"][i % 11 % 3]);
        let mut expected = Vec::new();
        let mut batches = Vec::new();
        let mut from = 0;
        for (k, &to) in cuts.iter().enumerate() {
            // Each batch's list of regions: rotated by k, so the same code means another name.
            let mut names: Vec<String> = (0..9).map(|r| format!("3304{r:02}")).collect();
            names.rotate_left(k % 9);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let code_of = |text: &str| names.iter().position(|n| *n == text).unwrap() as u32;
            let regions: ArrayRef = if k == 2 {
                Arc::new(StringArray::from_iter_values((from..to).map(region)))
            } else {
                crate::output::coded(&names, (from..to).map(|i| Some(code_of(&region(i)))))
            };
            let reasons = crate::output::coded(
                &["waiting", "scope", "cap"],
                (from..to).map(|i| {
                    reason(i).map(|r| {
                        ["waiting", "scope", "cap"]
                            .iter()
                            .position(|n| *n == r)
                            .unwrap() as u32
                    })
                }),
            );
            let notes = crate::output::coded(&["never"], (from..to).map(|_| None));
            let fields: Vec<Field> = [&regions, &reasons, &notes]
                .iter()
                .zip(schema.fields())
                .map(|(a, f)| f.as_ref().clone().with_data_type(a.data_type().clone()))
                .collect();
            batches.push(
                RecordBatch::try_new(Arc::new(Schema::new(fields)), vec![regions, reasons, notes])
                    .unwrap(),
            );
            expected
                .extend((from..to).map(|i| [Some(region(i)), reason(i).map(String::from), None]));
            from = to;
        }
        (schema, batches, expected)
    }

    /// The rows of a batch of three text columns.
    fn three_texts(batch: &RecordBatch) -> Vec<[Option<String>; 3]> {
        let text = |c: usize| {
            let column = batch
                .column(c)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            column
                .iter()
                .map(|v| v.map(String::from))
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (text(0), text(1), text(2));
        (0..batch.num_rows())
            .map(|i| [a[i].clone(), b[i].clone(), c[i].clone()])
            .collect()
    }

    #[test]
    fn coded_text_reads_back_as_the_names_whatever_the_lists_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let settings = FileSettings {
            row_group_rows: 50_000,
            ..FileSettings::OUTPUT
        };
        let write = |name: &str, cuts: &[usize]| {
            let (schema, batches, expected) = coded_rows(cuts);
            let path = dir.path().join(name);
            let mut file = PendingFile::create_with(&path, schema, &settings).unwrap();
            for batch in &batches {
                file.write(batch).unwrap();
            }
            file.close().unwrap().commit().unwrap();
            (path, expected)
        };
        let (path, expected) = write("a.parquet", &[7, 30_000, 30_001, 94_000, 120_000]);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let metadata = reader.metadata().clone();
        assert_eq!(metadata.num_row_groups(), 3);
        for group in metadata.row_groups() {
            for column in group.columns() {
                let encodings: Vec<Encoding> = column.encodings().collect();
                assert!(
                    encodings.contains(&Encoding::RLE_DICTIONARY),
                    "{encodings:?}"
                );
                assert!(column.dictionary_page_offset().is_some());
            }
        }
        let mut read = Vec::new();
        for batch in reader.build().unwrap() {
            read.extend(three_texts(&batch.unwrap()));
        }
        assert_eq!(read.len(), 120_000);
        assert_eq!(read, expected);
        // Through the page index, from inside a page of the second row group.
        let selected = three_texts(&read_selected(&path, 61_111, 30_000));
        assert_eq!(selected, expected[61_111..91_111]);
        // The same rows cut into other batches, their lists rotated otherwise and the plain
        // text elsewhere: a chunk's dictionary is in the order its names are first used, and
        // its pages are cut by rows, so the bytes are the same.
        let (again, _) = write("b.parquet", &[50_000, 50_001, 61_000, 99_999, 120_000]);
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&path).unwrap()
        );
    }

    #[test]
    fn integers_written_by_hand_read_back_with_the_arrow_writers_statistics() {
        use arrow::array::{Decimal128Array, Int16Array, Int32Array, TimestampMillisecondArray};
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("fund_paid", DataType::Decimal128(18, 2), true),
            Field::new("ratio", DataType::Decimal128(5, 4), true),
            Field::new("window_days", DataType::Int16, true),
            Field::new(
                "settled_at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("k", DataType::Int32, false),
        ]));
        let mut rng = SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        let n = 45_000usize;
        let rows: Vec<[i64; 6]> = (0..n)
            .map(|i| {
                let r = next();
                [
                    // Extremes, whose deltas wrap.
                    match i % 5 {
                        0 => i64::MIN,
                        1 => i64::MAX,
                        _ => r as i64,
                    },
                    (r % 10_000_000) as i64 - 1_000,
                    (r >> 20) as i64 % 10_001,
                    (r >> 40) as i64 % 400,
                    1_709_251_200_000 + i as i64 * 997 + (r % 1000) as i64,
                    match i % 3 {
                        0 => i64::from(i32::MIN),
                        1 => i64::from(i32::MAX),
                        _ => i64::from(r as i32),
                    },
                ]
            })
            .collect();
        let null = |i: usize, every: usize| i % every == 3;
        let batch = |from: usize, to: usize| {
            let at = from..to;
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(at.clone().map(|i| rows[i][0]))),
                    Arc::new(
                        at.clone()
                            .map(|i| (!null(i, 4)).then_some(i128::from(rows[i][1])))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(18, 2)
                            .unwrap(),
                    ),
                    Arc::new(
                        at.clone()
                            .map(|i| (!null(i, 7)).then_some(i128::from(rows[i][2])))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(5, 4)
                            .unwrap(),
                    ),
                    Arc::new(
                        at.clone()
                            .map(|i| (i % 50 != 0).then_some(rows[i][3] as i16))
                            .collect::<Int16Array>(),
                    ),
                    Arc::new(TimestampMillisecondArray::from_iter_values(
                        at.clone().map(|i| rows[i][4]),
                    )),
                    Arc::new(Int32Array::from_iter_values(at.map(|i| rows[i][5] as i32))),
                ],
            )
            .unwrap()
        };
        let write = |name: &str, statistics| {
            let settings = FileSettings {
                row_group_rows: 30_000,
                statistics,
                ..FileSettings::OUTPUT
            };
            let path = dir.path().join(name);
            let mut file = PendingFile::create_with(&path, schema.clone(), &settings).unwrap();
            for (from, to) in [(0, 1), (1, 29_999), (29_999, 31_000), (31_000, n)] {
                file.write(&batch(from, to)).unwrap();
            }
            file.close().unwrap().commit().unwrap();
            ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap()
        };
        // Chunk statistics: written by hand; page statistics: by the Arrow writer.
        let by_hand = write("hand.parquet", EnabledStatistics::Chunk);
        let by_arrow = write("arrow.parquet", EnabledStatistics::Page);
        let (hand_meta, arrow_meta) = (by_hand.metadata().clone(), by_arrow.metadata().clone());
        assert_eq!(hand_meta.num_row_groups(), 2);
        for (hand, arrow) in hand_meta.row_groups().iter().zip(arrow_meta.row_groups()) {
            for (h, a) in hand.columns().iter().zip(arrow.columns()) {
                let encodings: Vec<Encoding> = h.encodings().collect();
                assert_eq!(encodings, [Encoding::RLE, Encoding::DELTA_BINARY_PACKED]);
                let (hs, as_) = (h.statistics().unwrap(), a.statistics().unwrap());
                assert_eq!(
                    hs.min_bytes_opt(),
                    as_.min_bytes_opt(),
                    "{}",
                    h.column_path()
                );
                assert_eq!(
                    hs.max_bytes_opt(),
                    as_.max_bytes_opt(),
                    "{}",
                    h.column_path()
                );
                assert_eq!(
                    hs.null_count_opt(),
                    as_.null_count_opt(),
                    "{}",
                    h.column_path()
                );
            }
        }
        let whole = batch(0, n);
        for reader in [by_hand, by_arrow] {
            let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
            assert_eq!(
                arrow::compute::concat_batches(&schema, &read).unwrap(),
                whole
            );
        }
        // A reader that skips pages by the offset index lands on the same rows.
        assert_eq!(
            read_selected(&dir.path().join("hand.parquet"), 41_234, 500),
            whole.slice(41_234, 500)
        );
    }

    #[test]
    fn decimals_given_as_their_unscaled_integers_write_the_bytes_of_decimal_arrays() {
        use arrow::array::{Decimal128Array, Int32Array};
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("fund_paid", DataType::Decimal128(18, 2), false),
            Field::new("cap_remaining", DataType::Decimal128(18, 2), true),
            Field::new("ratio", DataType::Decimal128(5, 4), true),
        ]));
        let fen: Vec<i64> = (0..50_000i64)
            .map(|i| (i * 7_919) % 123_457 - 500)
            .collect();
        let left = |i: usize| (i % 9 != 4).then_some(fen[i] * 3);
        let ratio = |i: usize| (i % 11 != 2).then_some((i % 10_001) as i32);
        let decimal = |values: Vec<Option<i128>>, p: u8, s: i8| -> ArrayRef {
            Arc::new(
                Decimal128Array::from(values)
                    .with_precision_and_scale(p, s)
                    .unwrap(),
            )
        };
        let n = fen.len();
        let as_decimals = RecordBatch::try_new(
            schema.clone(),
            vec![
                decimal(fen.iter().map(|&v| Some(i128::from(v))).collect(), 18, 2),
                decimal((0..n).map(|i| left(i).map(i128::from)).collect(), 18, 2),
                decimal((0..n).map(|i| ratio(i).map(i128::from)).collect(), 5, 4),
            ],
        )
        .unwrap();
        let as_integers = crate::output::batch_of(
            &schema,
            vec![
                crate::output::fen(fen.clone()),
                Arc::new((0..n).map(left).collect::<Int64Array>()),
                Arc::new((0..n).map(ratio).collect::<Int32Array>()),
            ],
            "test",
        )
        .unwrap();
        let write = |name: &str, batch: &RecordBatch| {
            let path = dir.path().join(name);
            let mut file =
                PendingFile::create_with(&path, schema.clone(), &FileSettings::OUTPUT).unwrap();
            file.write(&batch.slice(0, 20_000)).unwrap();
            file.write(&batch.slice(20_000, n - 20_000)).unwrap();
            file.close().unwrap().commit().unwrap();
            std::fs::read(&path).unwrap()
        };
        let (decimals, integers) = (
            write("decimals.parquet", &as_decimals),
            write("integers.parquet", &as_integers),
        );
        assert_eq!(decimals, integers);
        let read: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(integers))
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect();
        assert_eq!(
            arrow::compute::concat_batches(&schema, &read).unwrap(),
            as_decimals
        );
    }

    #[test]
    fn distinct_text_written_by_hand_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("claim_id", DataType::Utf8, false),
            Field::new("related_claim_id", DataType::Utf8, true),
        ]));
        let n = 45_000usize;
        // Ids sharing long prefixes, an empty one, and Chinese text (prefixes cut inside a
        // character are bytes like any other).
        let id = |i: usize| match i % 1000 {
            0 => String::new(),
            1 => format!("嘉兴{i}号"),
            _ => format!("C2024{:09}", i * 7919 % 1_000_003),
        };
        let related = |i: usize| (!i.is_multiple_of(3)).then(|| format!("R{}", i / 3));
        let batch = |from: usize, to: usize| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values((from..to).map(id))),
                    Arc::new(StringArray::from_iter((from..to).map(related))),
                ],
            )
            .unwrap()
        };
        let both = &["claim_id", "related_claim_id"];
        let prefixed = FileSettings {
            row_group_rows: 30_000,
            distinct_columns: both,
            ..FileSettings::OUTPUT
        };
        let lengths = FileSettings {
            distinct_columns: &[],
            length_columns: both,
            ..prefixed
        };
        for (settings, encoding) in [
            (prefixed, Encoding::DELTA_BYTE_ARRAY),
            (lengths, Encoding::DELTA_LENGTH_BYTE_ARRAY),
        ] {
            let path = dir.path().join(format!("ids-{encoding}.parquet"));
            let mut file = PendingFile::create_with(&path, schema.clone(), &settings).unwrap();
            assert!(file.by_hand.iter().all(Option::is_some));
            for (from, to) in [(0, 3), (3, 20_001), (20_001, 40_000), (40_000, n)] {
                file.write(&batch(from, to)).unwrap();
            }
            file.close().unwrap().commit().unwrap();
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
            for group in reader.metadata().row_groups() {
                for column in group.columns() {
                    let encodings: Vec<Encoding> = column.encodings().collect();
                    assert_eq!(encodings, [Encoding::RLE, encoding]);
                }
            }
            let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
            assert_eq!(
                arrow::compute::concat_batches(&schema, &read).unwrap(),
                batch(0, n)
            );
            // Across the row groups' boundary, from inside a page.
            assert_eq!(read_selected(&path, 20_003, 20_000), batch(20_003, 40_003));
        }
    }

    #[test]
    fn codes_given_for_a_dictionary_field_are_written_by_hand_and_read_back_as_its_type() {
        let dir = tempfile::tempdir().unwrap();
        let name_type = DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![Field::new("pool", name_type, true)]));
        let names = ["basic", "two_diseases", "critical"];
        let code = |i: usize| (!i.is_multiple_of(7)).then_some((i * i % 3) as u32);
        let list = crate::output::name_list(&names);
        let path = dir.path().join("names.parquet");
        let settings = FileSettings {
            row_group_rows: 25_000,
            ..FileSettings::OUTPUT
        };
        let mut file = PendingFile::create_with(&path, schema.clone(), &settings).unwrap();
        assert!(matches!(file.by_hand[0], Some(ByHand::Text(_))));
        for (from, to) in [(0, 10_000), (10_000, 30_001), (30_001, 40_000)] {
            let codes = crate::output::coded_in(&list, (from..to).map(code));
            let batch = crate::output::batch_of(&schema, vec![codes], "names").unwrap();
            file.write(&batch).unwrap();
        }
        file.close().unwrap().commit().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        for group in reader.metadata().row_groups() {
            let encodings: Vec<Encoding> = group.column(0).encodings().collect();
            assert!(encodings.contains(&Encoding::RLE_DICTIONARY));
        }
        let mut read = Vec::new();
        for batch in reader.build().unwrap() {
            use arrow::array::AsArray;
            let batch = batch.unwrap();
            let pools = batch
                .column(0)
                .as_dictionary_opt::<arrow::datatypes::Int16Type>()
                .expect("read back as the field's 16-bit dictionary");
            let values = pools.values().as_string::<i32>();
            read.extend(
                pools
                    .keys()
                    .iter()
                    .map(|k| k.map(|k| values.value(k as usize).to_string())),
            );
        }
        let expected: Vec<Option<String>> = (0..40_000)
            .map(|i| code(i).map(|c| names[c as usize].to_string()))
            .collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn value_pages_are_cut_at_their_rows_and_plain_keys_keep_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("amount", DataType::Int64, true),
            Field::new("claim_id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let settings = FileSettings {
            compression: Compression::UNCOMPRESSED,
            statistics: EnabledStatistics::None,
            distinct_columns: &["claim_id"],
            plain_columns: &["key"],
            value_page_rows: Some(1024),
            ..FileSettings::DEFAULT
        };
        let rows = 5_000i64;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i * 7919))),
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|i| (i % 3 > 0).then_some(i)),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("c{i}")),
                )),
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| (i % 5 > 0).then(|| format!("n{}", i % 4))),
                )),
            ],
        )
        .unwrap();
        let mut file = PendingFile::create_with(&path, schema, &settings).unwrap();
        file.write(&batch).unwrap();
        file.close().unwrap().commit().unwrap();
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            File::open(&path).unwrap(),
            options,
        )
        .unwrap();
        let pages = reader.metadata().page_index_for_row_group(0);
        let first_rows: Vec<Vec<i64>> = (0..4)
            .map(|c| {
                let locations = pages.page_locations(c).unwrap();
                locations.iter().map(|p| p.first_row_index).collect()
            })
            .collect();
        assert_eq!(first_rows[0], [0], "the key column is one page");
        for column in &first_rows[1..] {
            assert_eq!(column, &[0, 1024, 2048, 3072, 4096]);
        }
        let schema = reader.schema().clone();
        let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        let read = arrow::compute::concat_batches(&schema, &read).unwrap();
        assert_eq!(read.columns(), batch.columns());
    }

    /// `rows` rows of `path` from `from` on, read through its page index: pages wholly outside
    /// them are skipped by the offset index's page locations and first rows.
    fn read_selected(path: &Path, from: usize, rows: usize) -> RecordBatch {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
        let options = ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
            File::open(path).unwrap(),
            options,
        )
        .unwrap();
        assert!(reader.metadata().page_index().is_some());
        for group in reader.metadata().row_groups() {
            assert!(group
                .columns()
                .iter()
                .all(|c| c.offset_index_range().is_some()));
        }
        let schema = reader.schema().clone();
        let selection =
            RowSelection::from(vec![RowSelector::skip(from), RowSelector::select(rows)]);
        let read: Vec<RecordBatch> = reader
            .with_row_selection(selection)
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        arrow::compute::concat_batches(&schema, &read).unwrap()
    }

    #[test]
    fn a_dropped_file_leaves_nothing_and_a_closed_one_appears_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let path = dir.path().join("x.parquet");
        drop(PendingFile::create(&path, schema.clone()).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let closed = PendingFile::create(&path, schema).unwrap().close().unwrap();
        assert!(!path.exists());
        closed.commit().unwrap();
        assert!(path.exists());
    }
}
