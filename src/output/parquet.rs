//! Atomic Parquet output: each file is written as `NAME.tmp` and renamed into place only when the
//! whole run has succeeded, so a reader never sees half a file and a failed run leaves the
//! previous outputs untouched.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// Rows per row group: about a million keeps per-group metadata small while letting readers
/// decode groups in parallel.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// A Parquet file being written to its temporary name.
pub struct PendingFile {
    tmp: PathBuf,
    path: PathBuf,
    writer: ArrowWriter<File>,
    pub rows: u64,
}

impl PendingFile {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<PendingFile> {
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| Error::parquet(&tmp, e))?;
        Ok(PendingFile {
            tmp,
            path: path.to_path_buf(),
            writer,
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|e| Error::parquet(&self.tmp, e))
    }

    /// Flushes and closes the temporary file; [`Committed::commit`] renames it into place.
    pub fn close(self) -> Result<Committed> {
        self.writer
            .close()
            .map_err(|e| Error::parquet(&self.tmp, e))?;
        Ok(Committed {
            tmp: self.tmp,
            path: self.path,
        })
    }
}

/// A complete temporary file waiting for the run to succeed.
pub struct Committed {
    pub tmp: PathBuf,
    pub path: PathBuf,
}

impl Committed {
    pub fn commit(self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
