//! The I/O floor (`yibao bench-floor`): what merely reading the claim columns the engine needs and
//! writing a file of the settlement schema costs, through the same Parquet reader and writer and
//! with no settlement at all, a window of row groups at a time (so it runs on any month). `adjudicate`'s wall time over this is the engine's overhead; issue 6
//! holds it within 1.5×.
//!
//! The floor's settlement file has every column of `settlements.parquet` with realistic values
//! (the keys as read, money columns copied from the claim's amounts, text columns from claim
//! text), so its encoding cost is that of a real output, not of constant columns.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    new_null_array, Array, ArrayRef, Decimal128Array, Float32Array, ListArray, RecordBatch,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ingest::claims::CLAIM_COLUMNS;
use crate::ingest::read::{list_parquet, read_windows, working_window};
use crate::output::parquet::{FileSettings, PendingFile};
use crate::output::settlements;

/// One measurement of the floor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    pub claims: u64,
    pub threads: usize,
    pub read_seconds: f64,
    pub write_seconds: f64,
    pub wall_seconds: f64,
    pub rows_per_second: f64,
    pub peak_rss_bytes: Option<u64>,
    pub out: PathBuf,
}

/// Reads `claims` (a file or directory) and writes `out/settlements.parquet` (then removes it,
/// so the floor leaves nothing behind unless `keep`).
pub fn measure(claims: &Path, out: &Path, threads: Option<usize>, keep: bool) -> Result<Floor> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        pool = pool.num_threads(n.max(1));
    }
    let pool = pool
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {threads:?} threads: {e}")))?;
    pool.install(|| {
        let started = Instant::now();
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let schema = floor_schema();
        let path = out.join("settlements.parquet");
        let mut file = PendingFile::create_with(&path, schema.clone(), &FileSettings::OUTPUT)?;
        // A window of row groups at a time, as the engine reads (and as any month fits).
        let threads = rayon::current_num_threads().max(1);
        let mut write_seconds = 0.0;
        for claims_file in list_parquet(claims)? {
            read_windows(&claims_file, CLAIM_COLUMNS, working_window(), |read, _| {
                let lap = Instant::now();
                for group in read.chunks(threads * 2) {
                    let batches: Vec<RecordBatch> = group
                        .par_iter()
                        .map(|b| settlement_shaped(b, &schema))
                        .collect::<Result<_>>()?;
                    for batch in &batches {
                        file.write(batch)?;
                    }
                }
                write_seconds += lap.elapsed().as_secs_f64();
                Ok(())
            })?;
        }
        let rows = file.rows;
        file.close()?.commit()?;
        let wall_seconds = started.elapsed().as_secs_f64();
        let read_seconds = wall_seconds - write_seconds;
        if !keep {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(Floor {
            claims: rows,
            threads: rayon::current_num_threads(),
            read_seconds,
            write_seconds,
            wall_seconds,
            rows_per_second: rows as f64 / wall_seconds.max(1e-9),
            peak_rss_bytes: crate::output::summary::peak_rss_bytes(),
            out: out.to_path_buf(),
        })
    })
}

/// The settlement schema with every column nullable: the floor does not validate, so a row with
/// a null key is written as read.
fn floor_schema() -> SchemaRef {
    let fields: Vec<Field> = settlements::schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// A settlement-shaped batch from a decoded claims batch (columns in `CLAIM_COLUMNS` order).
fn settlement_shaped(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let input = |name: &str| -> ArrayRef {
        let i = CLAIM_COLUMNS
            .iter()
            .position(|c| c.name == name)
            .expect("a contract claim column");
        batch.column(i).clone()
    };
    let n = batch.num_rows();
    let money = |name: &str| -> Result<ArrayRef> {
        let a = input(name);
        Ok(match a.data_type() {
            DataType::Decimal128(18, 2) => a,
            _ => arrow::compute::cast(&a, &DataType::Decimal128(18, 2))
                .map_err(|e| Error::arrow("bench-floor", e))?,
        })
    };
    let ratio: ArrayRef = Arc::new(
        Decimal128Array::from_iter_values((0..n).map(|i| 5_000 + (i % 4) as i128 * 1_000))
            .with_precision_and_scale(5, 4)
            .map_err(|e| Error::arrow("bench-floor", e))?,
    );
    let empty_lists: ArrayRef = Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Utf8, true)),
        OffsetBuffer::new_zeroed(n),
        new_null_array(&DataType::Utf8, 0),
        None,
    ));
    let (total, in_scope) = (money("total_amount")?, money("in_scope_amount")?);
    let columns: Vec<ArrayRef> = vec![
        input("claim_id"),
        input("person_id"),
        input("region"),
        input("settled_at"),
        input("institution_level"),
        input("region"),
        input("diagnosis"),
        input("visit_type"),
        input("prescriber_level"),
        in_scope.clone(),
        in_scope.clone(),
        ratio,
        in_scope.clone(),
        total.clone(),
        in_scope.clone(),
        total.clone(),
        total.clone(),
        in_scope.clone(),
        total.clone(),
        empty_lists,
        Arc::new(Float32Array::from(vec![0.0f32; n])),
        in_scope.clone(),
        total.clone(),
        total,
        input("referral"),
    ];
    debug_assert!(columns.iter().all(|c| c.len() == n));
    // The coded claim columns arrive as dictionaries; the writer takes them as the engine's
    // outputs take coded text.
    crate::output::batch_of(schema, columns, "bench-floor")
}
