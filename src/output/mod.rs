//! Output: `settlements.parquet`, `rejected.parquet`, `anomalies.parquet` and `summary.json`
//! in `--out`. Every file is written under a temporary name and renamed only once all of them are
//! complete: outputs appear whole or not at all.

pub mod anomalies;
pub mod parquet;
pub mod rejected;
pub mod settlements;
pub mod summary;

use std::path::Path;

use rayon::prelude::*;

use crate::audit::Audited;
use crate::domain::{Reason, Status};
use crate::error::{Error, Result};
use crate::ingest::claims::Claims;
use crate::ingest::registry::Registry;
use crate::partition::Partitions;
use crate::policy::Policies;
use crate::settle::{Outcome, Settled};
use parquet::{FileSettings, PendingFile, ROW_GROUP_ROWS};

/// A text column of few distinct values — names from the policies, the claims' dictionaries, a
/// closed vocabulary — as codes into its list (`None`: null): no text is copied per row, and
/// the Parquet writer sees the values a string column would give it, so the files keep text
/// columns ([`batch_of`]).
pub(crate) fn coded(
    names: &[&str],
    codes: impl Iterator<Item = Option<u32>>,
) -> arrow::array::ArrayRef {
    coded_in(&name_list(names), codes)
}

/// A list of names for [`coded_in`]: a writer given the same list (the same array) batch
/// after batch maps its codes once, where a list built per batch is compared name by name.
pub(crate) fn name_list(names: &[&str]) -> arrow::array::ArrayRef {
    std::sync::Arc::new(arrow::array::StringArray::from_iter_values(
        names.iter().copied(),
    ))
}

/// [`coded`] into a list already built ([`name_list`]).
pub(crate) fn coded_in(
    list: &arrow::array::ArrayRef,
    codes: impl Iterator<Item = Option<u32>>,
) -> arrow::array::ArrayRef {
    use arrow::array::{DictionaryArray, UInt32Array};
    let keys: UInt32Array = optional(codes);
    std::sync::Arc::new(
        DictionaryArray::<arrow::datatypes::UInt32Type>::try_new(keys, list.clone())
            .expect("codes index their list"),
    )
}

/// [`coded`] with each of `items` coded by `code`: generic, not `dyn`, so that each column's
/// per-row code is inlined into its loop.
pub(crate) fn coded_by<T>(
    names: &[&str],
    items: &[T],
    code: impl Fn(&T) -> Option<u32>,
) -> arrow::array::ArrayRef {
    coded(names, items.iter().map(code))
}

/// A column of optional values: the values and a validity bit each, packed a word at a time.
/// Arrow's `FromIterator` of `Option`s appends each bit to a growing builder and each value to
/// a growing buffer, checking room for both per row; the output columns of 15 million anomaly
/// rows spent 3% of a month's CPU time there. No validity buffer when every value is present.
pub(crate) fn optional<T: arrow::datatypes::ArrowPrimitiveType>(
    items: impl Iterator<Item = Option<T::Native>>,
) -> arrow::array::PrimitiveArray<T> {
    use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer};
    let mut values = Vec::with_capacity(items.size_hint().0);
    let mut words: Vec<u64> = Vec::with_capacity(values.capacity().div_ceil(64));
    let mut word = 0u64;
    for item in items {
        let bit = values.len() % 64;
        word |= u64::from(item.is_some()) << bit;
        values.push(item.unwrap_or_default());
        if bit == 63 {
            words.push(word);
            word = 0;
        }
    }
    if values.len() % 64 != 0 {
        words.push(word);
    }
    let validity = NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(words), 0, values.len()));
    let nulls = (validity.null_count() > 0).then_some(validity);
    arrow::array::PrimitiveArray::new(ScalarBuffer::from(values), nulls)
}

/// An amount column of a file's `Decimal128(18, 2)` as its fen. Parquet stores such a decimal
/// as its unscaled `INT64`, which the integer chunks ([`parquet`]) write from the array as it
/// is: the same bytes as a `Decimal128` array of the amounts, without widening every amount to
/// 16 bytes and back (the same holds for `Int32` under a decimal of up to 9 digits).
pub(crate) fn fen(values: Vec<i64>) -> arrow::array::ArrayRef {
    std::sync::Arc::new(arrow::array::Int64Array::from(values))
}

/// The names of a list, to code a column by ([`coded`]).
pub(crate) fn names_of(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

/// `columns` as a batch of the file `schema`: its columns with the types the arrays have, coded
/// text ([`coded`]) where the file has text.
pub(crate) fn batch_of(
    schema: &arrow::datatypes::SchemaRef,
    columns: Vec<arrow::array::ArrayRef>,
    file: &str,
) -> Result<arrow::array::RecordBatch> {
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    arrow::array::RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )
    .map_err(|e| Error::arrow(file, e))
}

/// Marks a row that was never partitioned (rejected at ingest).
const NOT_SETTLED: u32 = u32::MAX;

/// Read-only view of a finished run, for the writers.
pub struct RunView<'a> {
    pub policies: &'a Policies,
    pub registry: &'a Registry,
    pub claims: &'a Claims,
    pub partitions: &'a Partitions,
    pub settled: &'a Settled,
    pub audited: &'a Audited,
    /// Global row → position in `partitions.order`.
    position: Vec<u32>,
}

impl<'a> RunView<'a> {
    pub fn new(
        policies: &'a Policies,
        registry: &'a Registry,
        claims: &'a Claims,
        partitions: &'a Partitions,
        settled: &'a Settled,
        audited: &'a Audited,
    ) -> RunView<'a> {
        let mut position = vec![NOT_SETTLED; claims.len()];
        for (pos, &row) in partitions.order.iter().enumerate() {
            position[row as usize] = pos as u32;
        }
        RunView {
            policies,
            registry,
            claims,
            partitions,
            settled,
            audited,
            position,
        }
    }

    /// The audit flags of global row `row` (none for rows rejected at ingest).
    pub fn flags(&self, row: usize) -> u16 {
        match self.position[row] {
            NOT_SETTLED => 0,
            pos => self.audited.flags[pos as usize],
        }
    }

    /// The settlement of global row `row`.
    pub fn outcome(&self, row: usize) -> Outcome {
        match self.position[row] {
            NOT_SETTLED => Outcome::unsettled(
                Status::Rejected,
                self.claims.rejected[row].unwrap_or(Reason::NullKey),
            ),
            pos => self.settled.outcomes[pos as usize],
        }
    }
}

/// Row counts of what was written, for the summary.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Written {
    pub settlements: u64,
    pub rejected: u64,
    pub anomalies: u64,
    /// Wall seconds spent building and writing each file: where the output stage goes.
    pub seconds: FileSeconds,
}

/// Wall seconds per output file.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FileSeconds {
    pub settlements: f64,
    pub rejected: f64,
    pub anomalies: f64,
}

/// The three Parquet outputs being written, under temporary names until committed. A run
/// writes one partition after another, in key order ([`crate::partition`]); each file grows by
/// appending, so a whole run and a spilled run write the same bytes.
pub struct OutputFiles {
    settlements: PendingFile,
    rejected: PendingFile,
    anomalies: PendingFile,
    pub written: Written,
}

/// Settlement rows per batch built in parallel.
const SETTLEMENT_BATCH_ROWS: usize = 64 * 1024;

impl OutputFiles {
    /// Opens the files in `out`.
    pub fn create(out: &Path) -> Result<OutputFiles> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let open = |name: &str, schema, settings: &FileSettings| {
            PendingFile::create_with(&out.join(name), schema, settings)
        };
        let output = &FileSettings::OUTPUT;
        Ok(OutputFiles {
            settlements: open("settlements.parquet", settlements::schema(), output)?,
            rejected: open("rejected.parquet", rejected::schema(), output)?,
            anomalies: open("anomalies.parquet", anomalies::schema(), output)?,
            written: Written::default(),
        })
    }

    /// Appends the rows of one settled partition (or of a whole run).
    pub fn append(&mut self, view: &RunView) -> Result<()> {
        let rows = view.partitions.output_rows();
        let mut lap = std::time::Instant::now();
        let mut took = || {
            let t = lap.elapsed().as_secs_f64();
            lap = std::time::Instant::now();
            t
        };
        // Settlement batches are built in parallel, a window at a time to bound memory.
        let schema = settlements::schema();
        let chunks: Vec<&[u32]> = rows.chunks(SETTLEMENT_BATCH_ROWS).collect();
        let window = rayon::current_num_threads().max(1) * 2;
        for group in chunks.chunks(window) {
            let batches: Vec<_> = group
                .par_iter()
                .map(|rows| settlements::batch(view, rows, &schema))
                .collect::<Result<_>>()?;
            for batch in &batches {
                self.settlements.write(batch)?;
            }
        }
        self.written.seconds.settlements += took();
        let rejected_rows = rejected::rows(view, &rows);
        for chunk in rejected_rows.chunks(ROW_GROUP_ROWS) {
            self.rejected.write(&rejected::batch(view, chunk)?)?;
        }
        self.written.seconds.rejected += took();
        // Like settlements: batches built in parallel, a window at a time.
        let chunks: Vec<_> = view
            .audited
            .anomalies
            .chunks(SETTLEMENT_BATCH_ROWS)
            .collect();
        for group in chunks.chunks(window) {
            let batches: Vec<_> = group
                .par_iter()
                .map(|chunk| anomalies::batch(view, chunk))
                .collect::<Result<_>>()?;
            for batch in &batches {
                self.anomalies.write(batch)?;
            }
        }
        self.written.seconds.anomalies += took();
        self.written.settlements = self.settlements.rows;
        self.written.rejected = self.rejected.rows;
        self.written.anomalies = self.anomalies.rows;
        Ok(())
    }

    /// Finishes every file and returns them with their counts; the caller commits them after
    /// `summary.json` is ready.
    pub fn close(self) -> Result<(Written, Vec<parquet::Committed>)> {
        let pending = vec![
            self.settlements.close()?,
            self.rejected.close()?,
            self.anomalies.close()?,
        ];
        Ok((self.written, pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::Int64Type;

    #[test]
    fn optional_values_are_the_arrays_arrow_collects() {
        // Across word boundaries (64 and 128 bits), ending mid-word.
        for len in [0, 1, 63, 64, 65, 130] {
            let items: Vec<Option<i64>> = (0..len as i64)
                .map(|i| (i % 3 != 1).then_some(i * 100))
                .collect();
            let built = optional::<Int64Type>(items.iter().copied());
            assert_eq!(
                built,
                items.iter().copied().collect::<Int64Array>(),
                "{len}"
            );
            assert_eq!(
                built.null_count(),
                items.iter().filter(|v| v.is_none()).count()
            );
        }
        let full = optional::<Int64Type>((0..100).map(Some));
        assert!(
            full.nulls().is_none(),
            "no validity when every value is present"
        );
        assert_eq!(full.value(99), 99);
    }
}
