//! A Parquet file writer that encodes the columns of each row group in parallel on the rayon
//! pool, and publishes the file atomically (`name.parquet.tmp`, then a rename).
//!
//! Row groups are cut only between the batches pushed to it, so the file's layout depends on
//! the batch sequence alone, never on the thread count: column chunks are encoded
//! independently and appended in column order.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Rows per row group the generator aims for (without splitting a pushed batch).
pub const ROW_GROUP_ROWS: usize = 1 << 20;

pub struct ParallelWriter {
    path: PathBuf,
    tmp: PathBuf,
    schema: SchemaRef,
    /// `None` once finished, so that `Drop` knows whether to clean up.
    writer: Option<SerializedFileWriter<BufWriter<File>>>,
    factory: ArrowRowGroupWriterFactory,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    target_rows: usize,
    row_groups: usize,
}

impl ParallelWriter {
    /// Starts `path` (as `path.tmp`) with row groups of at most `target_rows` rows, unless a
    /// single pushed batch is larger.
    pub fn create(path: &Path, schema: SchemaRef, target_rows: usize) -> Result<Self> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).map_err(|e| Error::parquet(path, e))?,
            ))
            .set_max_row_group_row_count(Some(target_rows.max(1)))
            .build();
        // ArrowWriter derives the Parquet schema and embeds the Arrow schema (so readers get
        // back Timestamp(ms), Int16, …); only its low-level parts are used afterwards.
        let arrow_writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, file),
            schema.clone(),
            Some(props),
        )
        .map_err(|e| Error::parquet(path, e))?;
        let (writer, factory) = arrow_writer
            .into_serialized_writer()
            .map_err(|e| Error::parquet(path, e))?;
        Ok(ParallelWriter {
            path: path.to_path_buf(),
            tmp,
            schema,
            writer: Some(writer),
            factory,
            pending: Vec::new(),
            pending_rows: 0,
            target_rows: target_rows.max(1),
            row_groups: 0,
        })
    }

    /// Queues a batch; writes the queued row group first when this batch would overflow it.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.pending_rows > 0 && self.pending_rows + batch.num_rows() > self.target_rows {
            self.flush()?;
        }
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        Ok(())
    }

    /// Encodes the queued batches as one row group, one rayon task per column.
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let column_writers = self
            .factory
            .create_column_writers(self.row_groups)
            .map_err(|e| Error::parquet(path, e))?;
        let pending = &self.pending;
        let schema = &self.schema;
        // The generator's schemas are flat, so column `i` is Parquet leaf `i`.
        let chunks: Vec<ArrowColumnChunk> = column_writers
            .into_par_iter()
            .enumerate()
            .map(|(i, mut column)| {
                let field = schema.field(i);
                for batch in pending {
                    for leaf in compute_leaves(field, batch.column(i))? {
                        column.write(&leaf)?;
                    }
                }
                column.close()
            })
            .collect::<parquet::errors::Result<_>>()
            .map_err(|e| Error::parquet(path, e))?;
        let writer = self.writer.as_mut().expect("writer used after finish");
        let mut row_group = writer
            .next_row_group()
            .map_err(|e| Error::parquet(path, e))?;
        for chunk in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .map_err(|e| Error::parquet(path, e))?;
        }
        row_group.close().map_err(|e| Error::parquet(path, e))?;
        self.row_groups += 1;
        self.pending.clear();
        self.pending_rows = 0;
        Ok(())
    }

    /// Writes what is queued and the footer, then renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        let writer = self.writer.take().expect("writer used after finish");
        let published = writer
            .into_inner()
            .map_err(|e| Error::parquet(&self.path, e))
            .and_then(|buffered| {
                buffered
                    .into_inner()
                    .map_err(|e| Error::io(&self.tmp, e.into_error()))
            })
            .and_then(|_file| {
                std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
            });
        if published.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        published
    }
}

impl Drop for ParallelWriter {
    /// A writer dropped before `finish` (an error on the way) leaves no `.tmp` file behind.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
