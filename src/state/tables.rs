//! The state's three tables as Parquet files: their columns, how a run's [`Changes`] become
//! rows, and how the rows of this run's persons and claim ids are read back into a [`Prior`].
//!
//! Plain Parquet a reader such as DuckDB opens directly: money in fen (`Int64`), names (pools,
//! policy versions, benefits, statuses) as dictionary-encoded text, resolved against the current
//! policies once per dictionary entry when read. A name the current policies do not have stops
//! the run: settling against state the policies cannot interpret would be silently wrong.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, DictionaryArray, Int16Array, Int32Array,
    Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMillisecondType,
};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use super::store::{Piece, Store};
use super::{
    claim_key, text_lists, Changes, ClaimRecord, Layers, PoolState, Prior, PriorClaim,
    WrittenClaim, INDEX_ONLY_TEXT,
};
use crate::domain::{year_of, Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::claims::NO_CODE;
use crate::ingest::registry::PersonIndex;
use crate::ingest::FastMap;
use crate::output::parquet::{Committed, FileSettings, PendingFile};
use crate::policy::{Policies, NONE};

fn name_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8))
}

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

/// `pools`: a row per (person, year, pool); a person settled with no pool gets one row with a
/// null pool and year, so that the file still marks it as the holder of the person's state.
pub fn pools_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("person_id", DataType::Utf8),
        field("person_key", DataType::Int64),
        field("year", DataType::Int32),
        field("pool", name_type()),
        field("fund_paid_fen", DataType::Int64),
        field("cost_fen", DataType::Int64),
        field("deductible_fen", DataType::Int64),
        field("claims", DataType::Int32),
    ]))
}

/// The columns of a settled claim, shared by `history` and `claims`.
fn record_fields() -> Vec<Field> {
    let fen = |name: &str| field(name, DataType::Int64);
    vec![
        field("person_id", DataType::Utf8),
        field("person_key", DataType::Int64),
        field("claim_id", DataType::Utf8),
        field(
            "settled_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
        ),
        field("service_date", DataType::Date32),
        field("year", DataType::Int32),
        field("status", name_type()),
        field("policy_id", name_type()),
        field("benefit", name_type()),
        field("pool", name_type()),
        field("ratio_bp", DataType::Int32),
        fen("total_fen"),
        fen("in_scope_fen"),
        fen("eligible_fen"),
        fen("deductible_fen"),
        fen("fund_paid_fen"),
        fen("copay_fen"),
        fen("over_cap_fen"),
        field("assisted", DataType::Boolean),
        field("visit_type", name_type()),
        field("medical_community_id", DataType::Utf8),
        field("critical_illness_pool", name_type()),
        fen("critical_illness_deductible_fen"),
        fen("critical_illness_paid_fen"),
        field("assistance_pool", name_type()),
        fen("assistance_deductible_fen"),
        fen("assistance_paid_fen"),
    ]
}

/// `history`: a person's settled claims the rules look back at, with what they compare.
pub fn history_schema() -> SchemaRef {
    let mut fields = record_fields();
    fields.extend([
        field("reversed", DataType::Boolean),
        field("institution_id", DataType::Utf8),
        field("drug_code", DataType::Utf8),
        field("days_supply", DataType::Int32),
    ]);
    Arc::new(Schema::new(fields))
}

/// `claims`: the claim index, a row per claim a run settled (reversals, and reversals rejected
/// in settlement, included: their ids stay taken), looked up by `claim_key` and, for the claim
/// a reversal cancelled, `reverses_key`.
pub fn claims_schema() -> SchemaRef {
    let mut fields = vec![field("claim_key", DataType::Int64)];
    fields.extend(record_fields());
    fields.extend([
        field("reverses_claim_id", DataType::Utf8),
        field("reverses_key", DataType::Int64),
    ]);
    Arc::new(Schema::new(fields))
}

/// State files are read whole or by key column, never filtered by statistics.
const SETTINGS: FileSettings = FileSettings {
    statistics: parquet::file::properties::EnabledStatistics::None,
    distinct_columns: &["claim_id"],
    ..FileSettings::DEFAULT
};

/// Names as a dictionary column: `ids` index `names` ([`NONE`] is null).
fn names_array(names: &[&str], ids: impl Iterator<Item = u16>) -> ArrayRef {
    let keys: Int16Array = ids.map(|id| (id != NONE).then_some(id as i16)).collect();
    let values: ArrayRef = Arc::new(StringArray::from_iter_values(names.iter().copied()));
    Arc::new(DictionaryArray::try_new(keys, values).expect("ids index their names"))
}

fn name_list(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// Names of the closed vocabularies and the policies, as written.
struct NameLists<'p> {
    statuses: Vec<&'static str>,
    visits: Vec<&'static str>,
    versions: Vec<&'p str>,
    labels: Vec<&'p str>,
    pools: Vec<&'p str>,
}

impl<'p> NameLists<'p> {
    fn new(policies: &'p Policies) -> Self {
        NameLists {
            statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
            visits: VisitType::ALL.iter().map(|v| v.as_str()).collect(),
            versions: policies.versions.iter().map(|v| v.id.as_str()).collect(),
            labels: name_list(&policies.labels),
            pools: name_list(&policies.pools),
        }
    }
}

fn arc(a: impl Array + 'static) -> ArrayRef {
    Arc::new(a)
}

fn pools_batch(rows: &[(&str, PoolState)], names: &NameLists) -> Result<RecordBatch> {
    let present = |s: &PoolState| s.pool != NONE;
    let int64 = |f: fn(&PoolState) -> i64| {
        arc(rows
            .iter()
            .map(|(_, s)| present(s).then(|| f(s)))
            .collect::<Int64Array>())
    };
    RecordBatch::try_new(
        pools_schema(),
        vec![
            arc(StringArray::from_iter_values(rows.iter().map(|(p, _)| *p))),
            arc(Int64Array::from_iter_values(
                rows.iter().map(|(p, _)| claim_key(p) as i64),
            )),
            arc(rows
                .iter()
                .map(|(_, s)| present(s).then_some(s.year))
                .collect::<Int32Array>()),
            names_array(&names.pools, rows.iter().map(|(_, s)| s.pool)),
            int64(|s| s.fund_fen),
            int64(|s| s.cost_fen),
            int64(|s| s.deductible_fen),
            arc(rows
                .iter()
                .map(|(_, s)| present(s).then_some(s.claims))
                .collect::<Int32Array>()),
        ],
    )
    .map_err(|e| Error::arrow("state pools", e))
}

/// The record columns of `rows`, in [`record_fields`] order.
fn record_columns(rows: &[WrittenClaim], names: &NameLists) -> Vec<ArrayRef> {
    let int64 = |f: fn(&ClaimRecord) -> i64| {
        arc(Int64Array::from_iter_values(
            rows.iter().map(|c| f(&c.record)),
        ))
    };
    let ids = |f: fn(&ClaimRecord) -> u16| rows.iter().map(move |c| f(&c.record));
    vec![
        arc(StringArray::from_iter_values(
            rows.iter().map(|c| c.person_id),
        )),
        arc(Int64Array::from_iter_values(
            rows.iter().map(|c| claim_key(c.person_id) as i64),
        )),
        arc(StringArray::from_iter_values(
            rows.iter().map(|c| c.claim_id),
        )),
        arc(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|c| c.record.settled_at),
        )),
        arc(Date32Array::from_iter_values(
            rows.iter().map(|c| c.record.service_day),
        )),
        arc(Int32Array::from_iter_values(
            rows.iter().map(|c| year_of(c.record.service_day)),
        )),
        names_array(&names.statuses, ids(|r| r.status as u16)),
        names_array(&names.versions, ids(|r| r.version)),
        names_array(&names.labels, ids(|r| r.label)),
        names_array(&names.pools, ids(|r| r.pool)),
        arc(rows
            .iter()
            .map(|c| c.record.ratio_bp.map(|b| b as i32))
            .collect::<Int32Array>()),
        int64(|r| r.total_fen),
        int64(|r| r.in_scope_fen),
        int64(|r| r.eligible_fen),
        int64(|r| r.deductible_fen),
        int64(|r| r.fund_fen),
        int64(|r| r.copay_fen),
        int64(|r| r.over_cap_fen),
        arc(BooleanArray::from_iter(
            rows.iter().map(|c| Some(c.record.assisted)),
        )),
        names_array(&names.visits, ids(|r| r.visit as u16)),
        arc(rows
            .iter()
            .map(|c| c.medical_community)
            .collect::<StringArray>()),
        names_array(&names.pools, ids(|r| r.layers.ci_pool)),
        int64(|r| r.layers.ci_deductible_fen),
        int64(|r| r.layers.ci_fen),
        names_array(&names.pools, ids(|r| r.layers.assistance_pool)),
        int64(|r| r.layers.assistance_deductible_fen),
        int64(|r| r.layers.assistance_fen),
    ]
}

fn history_batch(rows: &[WrittenClaim], names: &NameLists) -> Result<RecordBatch> {
    let mut columns = record_columns(rows, names);
    columns.extend([
        arc(BooleanArray::from_iter(
            rows.iter().map(|c| Some(c.record.reversed)),
        )),
        arc(rows.iter().map(|c| c.institution).collect::<StringArray>()),
        arc(rows.iter().map(|c| c.drug).collect::<StringArray>()),
        arc(rows
            .iter()
            .map(|c| c.record.days_supply)
            .collect::<Int32Array>()),
    ]);
    RecordBatch::try_new(history_schema(), columns).map_err(|e| Error::arrow("state history", e))
}

fn claims_batch(rows: &[WrittenClaim], names: &NameLists) -> Result<RecordBatch> {
    let mut columns = vec![arc(Int64Array::from_iter_values(
        rows.iter().map(|c| claim_key(c.claim_id) as i64),
    ))];
    columns.extend(record_columns(rows, names));
    columns.extend([
        arc(rows.iter().map(|c| c.reverses).collect::<StringArray>()),
        arc(rows
            .iter()
            .map(|c| c.reverses.map(|r| claim_key(r) as i64))
            .collect::<Int64Array>()),
    ]);
    RecordBatch::try_new(claims_schema(), columns).map_err(|e| Error::arrow("state claims", e))
}

/// One table's new file being written, with the service years it holds.
struct TableFile {
    name: String,
    file: PendingFile,
    years: Option<(i32, i32)>,
}

impl TableFile {
    fn create(store: &Store, table: &str, schema: SchemaRef) -> Result<TableFile> {
        let name = store.new_file(table);
        Ok(TableFile {
            file: PendingFile::create_with(&store.path(&name), schema, &SETTINGS)?,
            name,
            years: None,
        })
    }

    fn write(&mut self, batch: RecordBatch, years: impl Iterator<Item = i32>) -> Result<()> {
        for y in years {
            self.years = Some(match self.years {
                None => (y, y),
                Some((a, b)) => (a.min(y), b.max(y)),
            });
        }
        if batch.num_rows() > 0 {
            self.file.write(&batch)?;
        }
        Ok(())
    }

    fn close(self) -> Result<(Piece, Committed)> {
        let rows = self.file.rows;
        let committed = self.file.close()?;
        let bytes = std::fs::metadata(&committed.tmp)
            .map_err(|e| Error::io(&committed.tmp, e))?
            .len();
        Ok((
            Piece {
                file: self.name,
                rows,
                bytes,
                min_year: self.years.map(|y| y.0),
                max_year: self.years.map(|y| y.1),
            },
            committed,
        ))
    }
}

/// The three new files a run writes into the state directory, a part at a time.
pub struct StateWriter<'p> {
    names: NameLists<'p>,
    pools: TableFile,
    history: TableFile,
    claims: TableFile,
}

/// The new files of a run, complete and fsynced, waiting for the commit.
pub struct NewFiles {
    pub pools: Piece,
    pub history: Piece,
    pub claims: Piece,
    pending: Vec<Committed>,
}

impl NewFiles {
    pub fn bytes(&self) -> u64 {
        self.pools.bytes + self.history.bytes + self.claims.bytes
    }

    /// Moves the files to their names (still named by no manifest).
    pub fn place(self, store: &Store) -> Result<(Piece, Piece, Piece)> {
        for file in self.pending {
            file.commit()?;
        }
        crate::output::parquet::sync_dir(&store.dir)?;
        Ok((self.pools, self.history, self.claims))
    }
}

impl<'p> StateWriter<'p> {
    pub fn create(store: &Store, policies: &'p Policies) -> Result<StateWriter<'p>> {
        Ok(StateWriter {
            names: NameLists::new(policies),
            pools: TableFile::create(store, "pools", pools_schema())?,
            history: TableFile::create(store, "history", history_schema())?,
            claims: TableFile::create(store, "claims", claims_schema())?,
        })
    }

    /// Appends one batch of changes (persons in output order).
    pub fn append(&mut self, changes: &Changes) -> Result<()> {
        let names = &self.names;
        let ((pools, history), claims) = rayon::join(
            || {
                rayon::join(
                    || pools_batch(&changes.pools, names),
                    || history_batch(&changes.history, names),
                )
            },
            || claims_batch(&changes.claims, names),
        );
        let year = |c: &WrittenClaim| year_of(c.record.service_day);
        self.pools.write(
            pools?,
            changes
                .pools
                .iter()
                .filter(|(_, s)| s.pool != NONE)
                .map(|(_, s)| s.year),
        )?;
        self.history
            .write(history?, changes.history.iter().map(year))?;
        self.claims
            .write(claims?, changes.claims.iter().map(year))?;
        Ok(())
    }

    /// Finishes the three files (fsynced, under temporary names).
    pub fn close(self) -> Result<NewFiles> {
        let (pools, a) = self.pools.close()?;
        let (history, b) = self.history.close()?;
        let (claims, c) = self.claims.close()?;
        Ok(NewFiles {
            pools,
            history,
            claims,
            pending: vec![a, b, c],
        })
    }
}

/// The rows of `path` whose `key_column` passes `select`, read in two passes a row group a task:
/// the key column alone, then `columns` of the selected rows only. `map` gets each batch of
/// selected rows with their key.
fn read_matching<T: Send>(
    path: &Path,
    key_column: &str,
    select: impl Fn(u64) -> bool + Sync,
    columns: &[&str],
    map: impl Fn(&[u64], RecordBatch) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let open = || File::open(path).map_err(|e| Error::io(path, e));
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(|e| Error::parquet(path, e))?;
    let schema = builder.schema().clone();
    let root = |name: &str| {
        schema
            .index_of(name)
            .map_err(|_| Error::schema(path, name, "missing from a state file"))
    };
    let key_mask = ProjectionMask::roots(builder.parquet_schema(), [root(key_column)?]);
    let mask = ProjectionMask::roots(
        builder.parquet_schema(),
        columns
            .iter()
            .map(|c| root(c))
            .collect::<Result<Vec<_>>>()?,
    );
    let groups: Vec<usize> = (0..builder.metadata().num_row_groups()).collect();
    let reader = |g: usize, mask: &ProjectionMask, selection: Option<RowSelection>| {
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(open()?)
            .map_err(|e| Error::parquet(path, e))?
            .with_row_groups(vec![g])
            .with_projection(mask.clone())
            .with_batch_size(64 * 1024);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        builder.build().map_err(|e| Error::parquet(path, e))
    };
    let per_group: Vec<Vec<T>> = groups
        .par_iter()
        .map(|&g| {
            let (mut rows, mut keys, mut at) = (Vec::new(), Vec::new(), 0usize);
            for batch in reader(g, &key_mask, None)? {
                let batch = batch.map_err(|e| Error::schema(path, key_column, e.to_string()))?;
                let column = int64s(&batch, key_column);
                for i in 0..batch.num_rows() {
                    let key = column.value(i) as u64;
                    if column.is_valid(i) && select(key) {
                        rows.push(at + i);
                        keys.push(key);
                    }
                }
                at += batch.num_rows();
            }
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let selection =
                RowSelection::from_consecutive_ranges(rows.iter().map(|&r| r..r + 1), at);
            let mut out = Vec::new();
            let mut first = 0;
            for batch in reader(g, &mask, Some(selection))? {
                let batch = batch.map_err(|e| Error::schema(path, "*", e.to_string()))?;
                let n = batch.num_rows();
                out.push(map(&keys[first..first + n], batch)?);
                first += n;
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(per_group.into_iter().flatten().collect())
}

/// Reads `columns` of `path` (all row groups, or the rows `selection` picks).
fn read_columns(
    path: &Path,
    columns: &[&str],
    selection: Option<RowSelection>,
) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(columns.len());
    for name in columns {
        match schema.index_of(name) {
            Ok(i) => roots.push(i),
            Err(_) => return Err(Error::schema(path, *name, "missing from a state file")),
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder.with_projection(mask).with_batch_size(64 * 1024);
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    let reader = builder.build().map_err(|e| Error::parquet(path, e))?;
    reader
        .map(|b| b.map_err(|e| Error::schema(path, "*", e.to_string())))
        .collect()
}

/// A column of a batch read by [`read_columns`].
fn column<'b>(batch: &'b RecordBatch, name: &str) -> &'b ArrayRef {
    batch.column_by_name(name).expect("a projected column")
}

/// A text column as plain `Utf8`.
fn strings(path: &Path, batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let c = column(batch, name);
    let c = if c.data_type() == &DataType::Utf8 {
        c.clone()
    } else {
        arrow::compute::cast(c, &DataType::Utf8)
            .map_err(|e| Error::schema(path, name, e.to_string()))?
    };
    Ok(c.as_string::<i32>().clone())
}

/// A name column resolved once per distinct name: `resolve` gives a name's id, or why it
/// cannot be used.
fn names<T: Copy>(
    path: &Path,
    batch: &RecordBatch,
    name: &str,
    mut resolve: impl FnMut(&str) -> std::result::Result<T, String>,
) -> Result<Vec<Option<T>>> {
    let dictionary = arrow::compute::cast(
        column(batch, name),
        &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
    )
    .map_err(|e| Error::schema(path, name, e.to_string()))?;
    let dictionary = dictionary.as_dictionary::<Int32Type>();
    let values = dictionary.values().as_string::<i32>();
    let mut ids = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        ids.push(if values.is_null(i) {
            Err(String::new())
        } else {
            resolve(values.value(i))
        });
    }
    let keys = dictionary.keys();
    let mut out = Vec::with_capacity(keys.len());
    for row in 0..keys.len() {
        out.push(match keys.is_valid(row) {
            false => None,
            true => match &ids[keys.value(row) as usize] {
                Ok(id) => Some(*id),
                Err(reason) => {
                    return Err(Error::value(path, name, row as u64, reason.clone()));
                }
            },
        });
    }
    Ok(out)
}

fn int64s<'b>(batch: &'b RecordBatch, name: &str) -> &'b Int64Array {
    column(batch, name).as_primitive::<Int64Type>()
}

fn int32s<'b>(batch: &'b RecordBatch, name: &str) -> &'b Int32Array {
    column(batch, name).as_primitive::<Int32Type>()
}

fn value_or_zero(a: &Int64Array, i: usize) -> i64 {
    if a.is_valid(i) {
        a.value(i)
    } else {
        0
    }
}

/// The policy ids of the names a state file holds.
struct Resolver<'p> {
    policies: &'p Policies,
}

impl Resolver<'_> {
    fn pool(&self, name: &str) -> std::result::Result<u16, String> {
        self.policies
            .pools
            .id(name)
            .ok_or_else(|| format!("pool `{name}` is not in the current policies"))
    }

    fn version(&self, name: &str) -> std::result::Result<u16, String> {
        self.policies
            .version_id(name)
            .ok_or_else(|| format!("policy version `{name}` is not in the current policies"))
    }

    fn label(&self, name: &str) -> std::result::Result<u16, String> {
        self.policies
            .labels
            .id(name)
            .ok_or_else(|| format!("benefit `{name}` is not in the current policies"))
    }
}

fn status(name: &str) -> std::result::Result<Status, String> {
    Status::parse(name).ok_or_else(|| format!("unknown status `{name}`"))
}

fn visit(name: &str) -> std::result::Result<VisitType, String> {
    VisitType::parse(name).ok_or_else(|| format!("unknown visit type `{name}`"))
}

/// The record columns every history and claims row has.
const RECORD_COLUMNS: &[&str] = &[
    "person_id",
    "person_key",
    "claim_id",
    "settled_at",
    "service_date",
    "year",
    "status",
    "policy_id",
    "benefit",
    "pool",
    "ratio_bp",
    "total_fen",
    "in_scope_fen",
    "eligible_fen",
    "deductible_fen",
    "fund_paid_fen",
    "copay_fen",
    "over_cap_fen",
    "assisted",
    "visit_type",
    "medical_community_id",
    "critical_illness_pool",
    "critical_illness_deductible_fen",
    "critical_illness_paid_fen",
    "assistance_pool",
    "assistance_deductible_fen",
    "assistance_paid_fen",
];

/// A claim record read back, its texts still as text.
struct ReadRecord {
    person_id: String,
    claim_id: String,
    record: ClaimRecord,
    medical_community: Option<String>,
    institution: Option<String>,
    drug: Option<String>,
    reverses: Option<String>,
}

/// Reads the record columns of `batch` (rows where `take` says so).
fn read_records(
    path: &Path,
    batch: &RecordBatch,
    resolver: &Resolver,
    history: bool,
    take: impl Fn(usize) -> bool,
) -> Result<Vec<ReadRecord>> {
    let text = |name| strings(path, batch, name);
    let (person_id, claim_id, community) = (
        text("person_id")?,
        text("claim_id")?,
        text("medical_community_id")?,
    );
    let settled_at = column(batch, "settled_at").as_primitive::<TimestampMillisecondType>();
    let service = column(batch, "service_date").as_primitive::<Date32Type>();
    let status = names(path, batch, "status", status)?;
    let version = names(path, batch, "policy_id", |n| resolver.version(n))?;
    let label = names(path, batch, "benefit", |n| resolver.label(n))?;
    let pool = names(path, batch, "pool", |n| resolver.pool(n))?;
    let ci_pool = names(path, batch, "critical_illness_pool", |n| resolver.pool(n))?;
    let assistance_pool = names(path, batch, "assistance_pool", |n| resolver.pool(n))?;
    let visit = names(path, batch, "visit_type", visit)?;
    let ratio = int32s(batch, "ratio_bp");
    let fen = |name| int64s(batch, name);
    let assisted = column(batch, "assisted").as_boolean();
    let (reversed, institution, drug, days_supply) = if history {
        (
            Some(column(batch, "reversed").as_boolean().clone()),
            Some(text("institution_id")?),
            Some(text("drug_code")?),
            Some(int32s(batch, "days_supply").clone()),
        )
    } else {
        (None, None, None, None)
    };
    let reverses = match history {
        true => None,
        false => Some(text("reverses_claim_id")?),
    };
    let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let mut out = Vec::new();
    for i in 0..batch.num_rows() {
        if !take(i) {
            continue;
        }
        let required = |a: &StringArray, name: &str| match a.is_valid(i) {
            true => Ok(a.value(i).to_string()),
            false => Err(Error::value(path, name, i as u64, "null")),
        };
        let Some(status) = status[i] else {
            return Err(Error::value(path, "status", i as u64, "null"));
        };
        out.push(ReadRecord {
            person_id: required(&person_id, "person_id")?,
            claim_id: required(&claim_id, "claim_id")?,
            record: ClaimRecord {
                settled_at: settled_at.value(i),
                service_day: service.value(i),
                status,
                version: version[i].unwrap_or(NONE),
                label: label[i].unwrap_or(NONE),
                pool: pool[i].unwrap_or(NONE),
                ratio_bp: ratio.is_valid(i).then(|| ratio.value(i) as u32),
                total_fen: value_or_zero(fen("total_fen"), i),
                in_scope_fen: value_or_zero(fen("in_scope_fen"), i),
                eligible_fen: value_or_zero(fen("eligible_fen"), i),
                deductible_fen: value_or_zero(fen("deductible_fen"), i),
                fund_fen: value_or_zero(fen("fund_paid_fen"), i),
                copay_fen: value_or_zero(fen("copay_fen"), i),
                over_cap_fen: value_or_zero(fen("over_cap_fen"), i),
                assisted: assisted.is_valid(i) && assisted.value(i),
                reversed: reversed
                    .as_ref()
                    .is_some_and(|r| r.is_valid(i) && r.value(i)),
                visit: visit[i].unwrap_or(VisitType::Outpatient),
                institution: NO_CODE,
                drug: NO_CODE,
                days_supply: days_supply
                    .as_ref()
                    .and_then(|d| d.is_valid(i).then(|| d.value(i))),
                medical_community: NO_CODE,
                layers: Layers {
                    ci_pool: ci_pool[i].unwrap_or(NONE),
                    ci_deductible_fen: value_or_zero(fen("critical_illness_deductible_fen"), i),
                    ci_fen: value_or_zero(fen("critical_illness_paid_fen"), i),
                    assistance_pool: assistance_pool[i].unwrap_or(NONE),
                    assistance_deductible_fen: value_or_zero(fen("assistance_deductible_fen"), i),
                    assistance_fen: value_or_zero(fen("assistance_paid_fen"), i),
                },
            },
            medical_community: opt(&community, i),
            institution: institution.as_ref().and_then(|a| opt(a, i)),
            drug: drug.as_ref().and_then(|a| opt(a, i)),
            reverses: reverses.as_ref().and_then(|a| opt(a, i)),
        });
    }
    Ok(out)
}

/// Keys to look up, sorted, behind a bitmap of their top bits: most keys that are not in the
/// set are turned away by one bit, without a search.
#[derive(Debug, Default)]
pub struct Keys {
    sorted: Vec<u64>,
    filter: Vec<u64>,
    /// A key's bit is `key >> shift` (0 when there are no keys).
    shift: u32,
}

impl Keys {
    pub fn new(mut keys: Vec<u64>) -> Keys {
        keys.par_sort_unstable();
        keys.dedup();
        Keys::from_sorted(keys)
    }

    /// `sorted` must be ascending.
    fn from_sorted(sorted: Vec<u64>) -> Keys {
        if sorted.is_empty() {
            return Keys::default();
        }
        // About 32 bits a key, at most 64 MiB.
        let bits = (sorted.len() as u64 * 32)
            .next_power_of_two()
            .clamp(64, 1 << 29)
            .trailing_zeros();
        let mut filter = vec![0u64; 1 << (bits - 6)];
        let shift = 64 - bits;
        for &k in &sorted {
            let bit = (k >> shift) as usize;
            filter[bit >> 6] |= 1 << (bit & 63);
        }
        Keys {
            sorted,
            filter,
            shift,
        }
    }

    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        if self.sorted.is_empty() {
            return false;
        }
        let bit = (key >> self.shift) as usize;
        self.filter[bit >> 6] & (1 << (bit & 63)) != 0 && self.sorted.binary_search(&key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

/// The persons a run settles: their [`crate::partition::person_key`]s with their dense ids.
#[derive(Debug, Default)]
pub struct PersonKeys {
    keys: Keys,
    /// `(key, dense id)`, ascending: a key two persons share (never seen, but possible) names both.
    persons: Vec<(u64, u32)>,
}

impl PersonKeys {
    pub fn new(mut persons: Vec<(u64, u32)>) -> PersonKeys {
        persons.par_sort_unstable();
        let mut keys: Vec<u64> = persons.iter().map(|p| p.0).collect();
        keys.dedup();
        PersonKeys {
            keys: Keys::from_sorted(keys),
            persons,
        }
    }

    /// The dense ids of the persons with key `key`.
    fn with_key(&self, key: u64) -> &[(u64, u32)] {
        let from = self.persons.partition_point(|p| p.0 < key);
        let to = from + self.persons[from..].partition_point(|p| p.0 == key);
        &self.persons[from..to]
    }
}

/// What the claim index holds of this run's claim ids.
#[derive(Default)]
pub struct IndexHits {
    /// Ids of indexed claims whose key is a run claim's: the candidates of `duplicate_claim_id`
    /// (confirmed on the text by ingest).
    pub known: Vec<String>,
    /// The indexed claims this run's reversals name, with what they need.
    records: Vec<ReadRecord>,
    /// Ids the index records as reversed (by an accepted reversal) among those.
    reversed: Vec<String>,
    /// Bytes of the index files read.
    pub bytes_read: u64,
}

/// Looks this run's claim ids (`claim_keys`) and reversal targets (`target_keys`) up in the
/// claim index of `store`'s version: reads each file's two key columns, then only the rows
/// whose key is one of them.
pub fn lookup_claims(
    store: &Store,
    claim_keys: &Keys,
    target_keys: &Keys,
    policies: &Policies,
) -> Result<IndexHits> {
    let first_year = store.manifest.first_year();
    let resolver = Resolver { policies };
    let pieces: Vec<&Piece> = store
        .manifest
        .claims
        .iter()
        .filter(|p| p.max_year.is_some_and(|y| y >= first_year))
        .collect();
    let found: Vec<IndexHits> = pieces
        .par_iter()
        .map(|piece| -> Result<IndexHits> {
            let path = store.path(&piece.file);
            let mut hits = IndexHits {
                bytes_read: piece.bytes,
                ..IndexHits::default()
            };
            let mut rows: Vec<usize> = Vec::new();
            let mut at = 0;
            for batch in read_columns(&path, &["claim_key", "reverses_key"], None)? {
                let (key, reverses) = (int64s(&batch, "claim_key"), int64s(&batch, "reverses_key"));
                for i in 0..batch.num_rows() {
                    let hit = claim_keys.contains(key.value(i) as u64)
                        || target_keys.contains(key.value(i) as u64)
                        || (reverses.is_valid(i) && target_keys.contains(reverses.value(i) as u64));
                    if hit {
                        rows.push(at + i);
                    }
                }
                at += batch.num_rows();
            }
            if rows.is_empty() {
                return Ok(hits);
            }
            let selection =
                RowSelection::from_consecutive_ranges(rows.iter().map(|&r| r..r + 1), at);
            let mut columns = vec!["claim_key", "reverses_key", "reverses_claim_id"];
            columns.extend_from_slice(RECORD_COLUMNS);
            for batch in read_columns(&path, &columns, Some(selection))? {
                let records = read_records(&path, &batch, &resolver, false, |_| true)?;
                let key = int64s(&batch, "claim_key");
                for (i, r) in records.into_iter().enumerate() {
                    if year_of(r.record.service_day) < first_year {
                        continue;
                    }
                    let k = key.value(i) as u64;
                    if claim_keys.contains(k) {
                        hits.known.push(r.claim_id.clone());
                    }
                    if r.record.status == Status::Reversal {
                        if let Some(target) = &r.reverses {
                            if target_keys.contains(claim_key(target)) {
                                hits.reversed.push(target.clone());
                            }
                        }
                    }
                    if target_keys.contains(k) {
                        hits.records.push(r);
                    }
                }
            }
            Ok(hits)
        })
        .collect::<Result<_>>()?;
    let mut all = IndexHits::default();
    for h in found {
        all.known.extend(h.known);
        all.records.extend(h.records);
        all.reversed.extend(h.reversed);
        all.bytes_read += h.bytes_read;
    }
    Ok(all)
}

/// What [`load_prior`] read.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReadStats {
    pub pool_rows: u64,
    pub history_rows: u64,
    pub index_records: u64,
    pub bytes_read: u64,
}

/// Reads the pools and history of the persons `wanted` from `store`'s version (by key column
/// first, then the rows of those persons only), and joins the index records `hits` found for
/// this run's reversals.
pub fn load_prior(
    store: &Store,
    wanted: &PersonKeys,
    persons: &PersonIndex,
    policies: &Policies,
    hits: IndexHits,
) -> Result<(Prior, ReadStats)> {
    let manifest = &store.manifest;
    let first_year = manifest.first_year();
    let resolver = Resolver { policies };
    let mut stats = ReadStats {
        bytes_read: hits.bytes_read,
        ..ReadStats::default()
    };
    // The dense ids of a batch's rows (selected by key), `None` where the id is not the wanted
    // person's (a key two persons share).
    let persons_of = |path: &Path, keys: &[u64], batch: &RecordBatch| -> Result<Vec<Option<u32>>> {
        let ids = strings(path, batch, "person_id")?;
        Ok(keys
            .iter()
            .enumerate()
            .map(|(i, &key)| {
                let id = ids.is_valid(i).then(|| ids.value(i))?;
                wanted
                    .with_key(key)
                    .iter()
                    .map(|&(_, p)| p)
                    .find(|&p| persons.id(p) == id)
            })
            .collect())
    };
    let select = |key: u64| wanted.keys.contains(key);
    // Pools: every file's rows of the wanted persons (a file a task, a row group a task), then
    // each person's rows from the newest file holding it.
    const POOL_COLUMNS: &[&str] = &[
        "person_id",
        "year",
        "pool",
        "fund_paid_fen",
        "cost_fen",
        "deductible_fen",
        "claims",
    ];
    let found: Vec<Vec<(u32, u32, Option<PoolState>)>> = manifest
        .pools
        .par_iter()
        .enumerate()
        .map(|(n, piece)| {
            let path = store.path(&piece.file);
            let groups =
                read_matching(&path, "person_key", select, POOL_COLUMNS, |keys, batch| {
                    let person = persons_of(&path, keys, &batch)?;
                    let pool = names(&path, &batch, "pool", |name| resolver.pool(name))?;
                    let year = int32s(&batch, "year");
                    let claims = int32s(&batch, "claims");
                    let (fund, cost, deductible) = (
                        int64s(&batch, "fund_paid_fen"),
                        int64s(&batch, "cost_fen"),
                        int64s(&batch, "deductible_fen"),
                    );
                    Ok((0..batch.num_rows())
                        .filter_map(|i| {
                            let p = person[i]?;
                            let state = match (pool[i], year.is_valid(i)) {
                                (Some(pool), true) => Some(PoolState {
                                    year: year.value(i),
                                    pool,
                                    fund_fen: value_or_zero(fund, i),
                                    cost_fen: value_or_zero(cost, i),
                                    deductible_fen: value_or_zero(deductible, i),
                                    claims: if claims.is_valid(i) {
                                        claims.value(i)
                                    } else {
                                        0
                                    },
                                }),
                                _ => None,
                            };
                            Some((p, n as u32, state))
                        })
                        .collect::<Vec<_>>())
                })?;
            Ok(groups.into_iter().flatten().collect())
        })
        .collect::<Result<_>>()?;
    stats.bytes_read += manifest.pools.iter().map(|p| p.bytes).sum::<u64>();
    const NOBODY: u32 = u32::MAX;
    let mut holder = vec![NOBODY; persons.len()];
    for &(p, n, _) in found.iter().flatten() {
        let h = &mut holder[p as usize];
        if *h == NOBODY || n > *h {
            *h = n;
        }
    }
    let mut pools: Vec<(u32, PoolState)> = Vec::new();
    for (p, n, state) in found.into_iter().flatten() {
        match state {
            Some(state) if holder[p as usize] == n && state.year >= first_year => {
                pools.push((p, state))
            }
            _ => {}
        }
    }
    stats.pool_rows = pools.len() as u64;
    // History: a person's rows from the file written with the pools file that holds it.
    let mut columns = RECORD_COLUMNS.to_vec();
    columns.extend(["reversed", "institution_id", "drug_code", "days_supply"]);
    let history: Vec<Vec<(u32, ReadRecord)>> = manifest
        .history
        .par_iter()
        .enumerate()
        .map(|(n, piece)| -> Result<Vec<(u32, ReadRecord)>> {
            let path = store.path(&piece.file);
            let groups = read_matching(&path, "person_key", select, &columns, |keys, batch| {
                let person: Vec<Option<u32>> = persons_of(&path, keys, &batch)?
                    .into_iter()
                    .map(|p| p.filter(|&p| holder[p as usize] == n as u32))
                    .collect();
                let records =
                    read_records(&path, &batch, &resolver, true, |i| person[i].is_some())?;
                Ok(person
                    .iter()
                    .flatten()
                    .copied()
                    .zip(records)
                    .filter(|(_, r)| year_of(r.record.service_day) >= first_year)
                    .collect::<Vec<_>>())
            })?;
            Ok(groups.into_iter().flatten().collect())
        })
        .collect::<Result<_>>()?;
    stats.bytes_read += manifest.history.iter().map(|p| p.bytes).sum::<u64>();

    // Texts as codes of the Prior's own lists, numbered in read order.
    let mut lists = text_lists();
    let mut index: [FastMap<String, u32>; 3] = Default::default();
    for (list, map) in lists.iter().zip(index.iter_mut()) {
        for (i, t) in list.iter().enumerate() {
            map.insert(t.clone(), i as u32);
        }
    }
    let mut code = |which: usize, text: Option<String>| -> u32 {
        let Some(text) = text else { return NO_CODE };
        if let Some(&c) = index[which].get(&text) {
            return c;
        }
        let c = lists[which].len() as u32;
        lists[which].push(text.clone());
        index[which].insert(text, c);
        c
    };
    let mut claims = Vec::new();
    for (p, r) in history.into_iter().flatten() {
        stats.history_rows += 1;
        let mut record = r.record;
        record.institution = code(0, r.institution);
        record.drug = code(1, r.drug);
        record.medical_community = code(2, r.medical_community);
        claims.push(PriorClaim {
            person: p,
            claim_id: r.claim_id.into(),
            record,
            in_history: true,
        });
    }
    let reversed: std::collections::HashSet<&str> =
        hits.reversed.iter().map(String::as_str).collect();
    for r in hits.records.iter() {
        let Some(p) = persons.get(&r.person_id) else {
            continue;
        };
        stats.index_records += 1;
        let mut record = r.record;
        record.institution = INDEX_ONLY_TEXT;
        record.drug = INDEX_ONLY_TEXT;
        record.medical_community = code(2, r.medical_community.clone());
        record.reversed = reversed.contains(r.claim_id.as_str());
        claims.push(PriorClaim {
            person: p,
            claim_id: r.claim_id.as_str().into(),
            record,
            in_history: false,
        });
    }
    Ok((Prior::new(persons.len(), pools, claims, lists), stats))
}
