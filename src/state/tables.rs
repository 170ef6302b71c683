//! The state's three tables as Parquet files: their columns, and how a run's [`Changes`] become
//! rows of new files ([`super::read`] reads them back).
//!
//! Plain Parquet a reader such as DuckDB opens directly: money in fen (`Int64`), names (pools,
//! policy versions, benefits, statuses, visit types) as dictionary-encoded text.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rayon::prelude::*;

use super::store::{Piece, Store};
use super::{claim_key, Changes, ClaimRecord, PoolState, WrittenClaim, WrittenPool};
use crate::domain::{year_of, Status, VisitType};
use crate::error::{Error, Result};
use crate::ingest::claims::{Claims, NO_CODE};
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
/// `person_check` ([`super::person_check`]) lets a reader confirm a row's person without
/// reading its id.
pub fn pools_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("person_id", DataType::Utf8),
        field("person_key", DataType::Int64),
        field("person_check", DataType::Int64),
        field("year", DataType::Int32),
        field("pool", name_type()),
        field("fund_paid_fen", DataType::Int64),
        field("cost_fen", DataType::Int64),
        field("deductible_fen", DataType::Int64),
        field("claims", DataType::Int32),
    ]))
}

/// The fields of [`claim_columns`].
fn claim_fields() -> Vec<Field> {
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
    ]
}

/// The columns of a settled claim in the claim index.
fn record_fields() -> Vec<Field> {
    let fen = |name: &str| field(name, DataType::Int64);
    let mut fields = claim_fields();
    fields.extend([
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
    ]);
    fields
}

/// `history`: the settled claims the rules look back at, with what they compare (a claim's
/// settlement is in the claim index), and the accepted refunds (status `reversal`, with the
/// `reverses_key` of the claim they cancelled).
pub fn history_schema() -> SchemaRef {
    let mut fields = claim_fields();
    fields.extend([
        field("status", name_type()),
        field("reversed", DataType::Boolean),
        field("total_fen", DataType::Int64),
        field("visit_type", name_type()),
        field("medical_community_id", DataType::Utf8),
        field("institution_id", DataType::Utf8),
        field("drug_code", DataType::Utf8),
        field("days_supply", DataType::Int32),
        field("claim_key", DataType::Int64),
        field("reverses_key", DataType::Int64),
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

/// Rows per row group of a state file: a spilled run reads its partitions' rows by row group,
/// and groups of an eighth of the outputs' let 8 partitions of a 10M month's state each read
/// little more than their own.
const STATE_ROW_GROUP_ROWS: usize = 1 << 17;

/// State files are read by key column; only `person_key` has statistics, by which a run that
/// settles a range of person keys (a spilled partition) skips the row groups of others. Ids
/// are written without a dictionary: claim ids are all distinct, and person ids repeat only on
/// consecutive rows (rows are in person-key order), where each shares its whole prefix with
/// the one before. Pages are not compressed: a night decodes every page of the files it scans
/// for its persons, and on the 30-night bench uncompressed pages cut that read by a third
/// (ingest 3.3–3.4 → 2.2–2.4 s) for a fifth more bytes on disk. Hash keys are written `PLAIN`:
/// random 64-bit values delta-pack to their own width, and a night reads these columns of
/// every row it scans.
const SETTINGS: FileSettings = FileSettings {
    statistics: parquet::file::properties::EnabledStatistics::None,
    distinct_columns: &["claim_id", "person_id"],
    plain_columns: &["claim_key", "reverses_key", "person_key", "person_check"],
    statistics_columns: &["person_key"],
    row_group_rows: STATE_ROW_GROUP_ROWS,
    compression: parquet::basic::Compression::UNCOMPRESSED,
    ..FileSettings::DEFAULT
};

/// The history: [`SETTINGS`] with its claim ids written `DELTA_LENGTH_BYTE_ARRAY`. A night
/// decodes the claim ids of every history row it scans, and copies their bytes at once where
/// `DELTA_BYTE_ARRAY` rebuilds each id from the one before: on the 30-night bench the night on
/// the compacted state took 0.967x the wall time (paired medians of 12), for a history file a
/// fifth larger (360 MB against 292).
const HISTORY_SETTINGS: FileSettings = FileSettings {
    distinct_columns: &["person_id"],
    length_columns: &["claim_id"],
    ..SETTINGS
};

/// The claim index: [`SETTINGS`] with its records in pages of [`INDEX_PAGE_ROWS`]. A night
/// finds its keys in the key columns' pages, then reads the records of the few rows they
/// select (a few thousand of ten million): it decodes the pages holding one, and skips the
/// others unread. Its ids are written `DELTA_LENGTH_BYTE_ARRAY`: reaching a row of a page skips
/// the ids before it, which `DELTA_BYTE_ARRAY` rebuilds one from another and this skips by
/// their lengths (on the 30-night bench the records' read took two thirds of the CPU time, and
/// the night 0.959x the wall time, paired medians of 12, for an index 7% larger).
const INDEX_SETTINGS: FileSettings = FileSettings {
    value_page_rows: Some(INDEX_PAGE_ROWS),
    distinct_columns: &[],
    length_columns: &["claim_id", "person_id"],
    ..SETTINGS
};

/// Rows per page of the claim index's records: a night's hits (a reversal's original, a
/// repeated id: about 1% of its claims) then fall in about a third of a month's pages.
pub(super) const INDEX_PAGE_ROWS: usize = 1024;

/// Names as a dictionary column: `ids` index the names of `list` ([`NONE`] is null), as codes
/// the file writer encodes from ([`crate::output::coded_in`]) under the file's 16-bit
/// dictionary type.
fn names_array(list: &ArrayRef, ids: impl Iterator<Item = u16>) -> ArrayRef {
    crate::output::coded_in(list, ids.map(|id| (id != NONE).then_some(u32::from(id))))
}

/// A list of names as the columns coded into it take it ([`crate::output::name_list`]).
fn list_of(names: &[String]) -> ArrayRef {
    crate::output::name_list(&crate::output::names_of(names))
}

/// The run's dictionaries a [`ClaimRecord`] codes its institution, drug and medical
/// community in, as the lists their columns are coded into: built once per part of a run, so
/// that the writer maps each list's codes once.
#[derive(Clone)]
pub struct TextLists {
    institutions: ArrayRef,
    drugs: ArrayRef,
    medical_communities: ArrayRef,
}

impl TextLists {
    pub fn of(claims: &Claims) -> TextLists {
        TextLists {
            institutions: list_of(&claims.institutions),
            drugs: list_of(&claims.drugs),
            medical_communities: list_of(&claims.medical_communities),
        }
    }
}

/// A column of texts coded in `list` ([`NO_CODE`] is null).
fn texts_array(list: &ArrayRef, codes: impl Iterator<Item = u32>) -> ArrayRef {
    crate::output::coded_in(list, codes.map(|c| (c != NO_CODE).then_some(c)))
}

/// The lists of the closed vocabularies and the policies' names, built once for a run's
/// writer.
struct NameLists {
    statuses: ArrayRef,
    visits: ArrayRef,
    versions: ArrayRef,
    labels: ArrayRef,
    pools: ArrayRef,
}

impl NameLists {
    fn new(policies: &Policies) -> Self {
        let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        let visits: Vec<&str> = VisitType::ALL.iter().map(|v| v.as_str()).collect();
        let versions: Vec<&str> = policies.versions.iter().map(|v| v.id.as_str()).collect();
        NameLists {
            statuses: crate::output::name_list(&statuses),
            visits: crate::output::name_list(&visits),
            versions: crate::output::name_list(&versions),
            labels: list_of(&policies.labels),
            pools: list_of(&policies.pools),
        }
    }
}

fn arc(a: impl Array + 'static) -> ArrayRef {
    Arc::new(a)
}

fn pools_batch(rows: &[WrittenPool], names: &NameLists) -> Result<RecordBatch> {
    let present = |s: &PoolState| s.pool != NONE;
    let int64 = |f: fn(&PoolState) -> i64| {
        arc(rows
            .iter()
            .map(|r| present(&r.state).then(|| f(&r.state)))
            .collect::<Int64Array>())
    };
    crate::output::batch_of(
        &pools_schema(),
        vec![
            arc(StringArray::from_iter_values(
                rows.iter().map(|r| r.person_id),
            )),
            arc(Int64Array::from_iter_values(
                rows.iter().map(|r| r.person_key as i64),
            )),
            arc(Int64Array::from_iter_values(person_checks(rows))),
            arc(rows
                .iter()
                .map(|r| present(&r.state).then_some(r.state.year))
                .collect::<Int32Array>()),
            names_array(&names.pools, rows.iter().map(|r| r.state.pool)),
            int64(|s| s.fund_fen),
            int64(|s| s.cost_fen),
            int64(|s| s.deductible_fen),
            arc(rows
                .iter()
                .map(|r| present(&r.state).then_some(r.state.claims))
                .collect::<Int32Array>()),
        ],
        "state pools",
    )
}

/// [`super::person_check`] of each row's person, computed once per person: rows are by person,
/// and a person's rows share the key and the id's text (the same slice, so a person is told
/// from the one before without comparing texts).
fn person_checks<'r>(rows: &'r [WrittenPool]) -> impl Iterator<Item = i64> + 'r {
    let mut last: Option<(&str, i64)> = None;
    rows.iter().map(move |r| match last {
        Some((q, check)) if std::ptr::eq(q, r.person_id) => check,
        _ => {
            let check = super::person_check(r.person_id) as i64;
            last = Some((r.person_id, check));
            check
        }
    })
}

/// The record columns of `rows`, in [`record_fields`] order.
fn record_columns(rows: &[&WrittenClaim], names: &NameLists, texts: &TextLists) -> Vec<ArrayRef> {
    let int64 = |f: fn(&ClaimRecord) -> i64| {
        arc(Int64Array::from_iter_values(
            rows.iter().map(|c| f(&c.record)),
        ))
    };
    let ids = |f: fn(&ClaimRecord) -> u16| rows.iter().map(move |c| f(&c.record));
    let mut columns = claim_columns(rows);
    columns.extend([
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
        texts_array(
            &texts.medical_communities,
            rows.iter().map(|c| c.record.medical_community),
        ),
        names_array(&names.pools, ids(|r| r.layers.ci_pool)),
        int64(|r| r.layers.ci_deductible_fen),
        int64(|r| r.layers.ci_fen),
        names_array(&names.pools, ids(|r| r.layers.assistance_pool)),
        int64(|r| r.layers.assistance_deductible_fen),
        int64(|r| r.layers.assistance_fen),
    ]);
    columns
}

/// The columns that name a claim, first in `history` and the claim record: `person_id`,
/// `person_key`, `claim_id`, `settled_at`, `service_date`, `year`.
fn claim_columns(rows: &[&WrittenClaim]) -> Vec<ArrayRef> {
    vec![
        arc(StringArray::from_iter_values(
            rows.iter().map(|c| c.person_id),
        )),
        arc(Int64Array::from_iter_values(
            rows.iter().map(|c| c.person_key as i64),
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
    ]
}

fn history_batch(changes: &Changes, names: &NameLists, texts: &TextLists) -> Result<RecordBatch> {
    let rows: Vec<&WrittenClaim> = history_of(changes).collect();
    let rows = &rows[..];
    let mut columns = claim_columns(rows);
    columns.extend([
        names_array(&names.statuses, rows.iter().map(|c| c.record.status as u16)),
        arc(BooleanArray::from_iter(
            rows.iter().map(|c| Some(c.record.reversed)),
        )),
        arc(Int64Array::from_iter_values(
            rows.iter().map(|c| c.record.total_fen),
        )),
        names_array(&names.visits, rows.iter().map(|c| c.record.visit as u16)),
        texts_array(
            &texts.medical_communities,
            rows.iter().map(|c| c.record.medical_community),
        ),
        texts_array(
            &texts.institutions,
            rows.iter().map(|c| c.record.institution),
        ),
        texts_array(&texts.drugs, rows.iter().map(|c| c.record.drug)),
        arc(rows
            .iter()
            .map(|c| c.record.days_supply)
            .collect::<Int32Array>()),
        arc(Int64Array::from_iter_values(
            rows.iter().map(|c| c.claim_key as i64),
        )),
        reverses_keys(rows),
    ]);
    crate::output::batch_of(&history_schema(), columns, "state history")
}

/// The claims of `changes` that go to the history.
fn history_of<'c, 'a>(changes: &'c Changes<'a>) -> impl Iterator<Item = &'c WrittenClaim<'a>> {
    changes
        .claims
        .iter()
        .zip(&changes.history)
        .filter(|(_, &h)| h)
        .map(|(c, _)| c)
}

/// `reverses_key`: the key of the claim each accepted refund cancelled.
fn reverses_keys(rows: &[&WrittenClaim]) -> ArrayRef {
    arc(rows
        .iter()
        .map(|c| c.reverses.map(|r| claim_key(r) as i64))
        .collect::<Int64Array>())
}

fn claims_batch(
    rows: &[&WrittenClaim],
    names: &NameLists,
    texts: &TextLists,
) -> Result<RecordBatch> {
    let mut columns = vec![arc(Int64Array::from_iter_values(
        rows.iter().map(|c| c.claim_key as i64),
    ))];
    columns.extend(record_columns(rows, names, texts));
    columns.extend([
        arc(rows.iter().map(|c| c.reverses).collect::<StringArray>()),
        reverses_keys(rows),
    ]);
    crate::output::batch_of(&claims_schema(), columns, "state claims")
}

/// The key of a state file's metadata naming the order of each of its row groups: a
/// comma-separated list, a row group each, of the key column its rows ascend by (as unsigned
/// 64-bit keys), or nothing. The claim index's row groups are in order of `claim_key`, but for
/// those of its accepted refunds, in order of `reverses_key`: a reader searches each for a
/// run's keys where it would otherwise scan every key of the year
/// ([`super::read::lookup_claims`]).
pub const ROW_GROUP_ORDER: &str = "yibao.row_group_order";

/// Rows of an ordered run of the claim index copied into place at once.
const ORDERED_SLICE_ROWS: usize = 64 * 1024;

/// Rows of an ordered run of the claim index built at once, as many slices in parallel as
/// there are threads.
const INDEX_SLICE_ROWS: usize = 16 * 1024;

/// One table's new file being written, with the service years it holds.
pub struct TableFile {
    name: String,
    schema: SchemaRef,
    file: PendingFile,
    years: Option<(i32, i32)>,
    /// Per row group written, the key column its rows ascend by ("" for none), once a group is
    /// ordered: written as [`ROW_GROUP_ORDER`].
    orders: Vec<&'static str>,
}

impl TableFile {
    /// A new `pools` file.
    pub fn pools(store: &Store) -> Result<TableFile> {
        TableFile::create_with(store, "pools", pools_schema(), &SETTINGS)
    }

    /// A new `history` file.
    pub fn history(store: &Store) -> Result<TableFile> {
        TableFile::create_with(store, "history", history_schema(), &HISTORY_SETTINGS)
    }

    /// A new `claims` (index) file.
    pub fn index(store: &Store) -> Result<TableFile> {
        TableFile::create_with(store, "claims", claims_schema(), &INDEX_SETTINGS)
    }

    fn create_with(
        store: &Store,
        table: &str,
        schema: SchemaRef,
        settings: &FileSettings,
    ) -> Result<TableFile> {
        let name = store.new_file(table);
        Ok(TableFile {
            file: PendingFile::create_with(&store.path(&name), schema.clone(), settings)?,
            schema,
            name,
            years: None,
            orders: Vec::new(),
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Appends `batch`, whose rows are of the service years `years`.
    pub fn write(&mut self, batch: RecordBatch, years: impl Iterator<Item = i32>) -> Result<()> {
        self.note_years(years);
        if batch.num_rows() > 0 {
            self.file.write(&batch)?;
        }
        Ok(())
    }

    /// Counts rows of the service years `years` in, written apart from them.
    pub fn note_years(&mut self, years: impl Iterator<Item = i32>) {
        for y in years {
            self.years = Some(match self.years {
                None => (y, y),
                Some((a, b)) => (a.min(y), b.max(y)),
            });
        }
    }

    /// Ends the row group being filled: its rows, and those of every group since the last end,
    /// ascend by the key column `by` ("" for none). Rows written between two ends with a key
    /// column are an ordered run of row groups of their own.
    pub fn end_row_group(&mut self, by: &'static str) -> Result<()> {
        self.file.end_row_group()?;
        self.orders.resize(self.file.row_groups(), by);
        Ok(())
    }

    /// Closes the file (fsynced, under its temporary name).
    pub fn close(mut self) -> Result<(Piece, Committed)> {
        if !self.orders.is_empty() {
            self.end_row_group("")?;
            self.file
                .append_key_value(ROW_GROUP_ORDER, self.orders.join(","));
        }
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
                runs: 1,
                // A run writes what the rules reach of its own claims.
                retained: true,
                ordered: false,
            },
            committed,
        ))
    }
}

/// The three new files a run writes into the state directory, a part at a time.
pub struct StateWriter {
    names: NameLists,
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

impl StateWriter {
    pub fn create(store: &Store, policies: &Policies) -> Result<StateWriter> {
        Ok(StateWriter {
            names: NameLists::new(policies),
            pools: TableFile::pools(store)?,
            history: TableFile::history(store)?,
            claims: TableFile::index(store)?,
        })
    }

    /// Appends the pools and history of one batch of changes (persons in output order); their
    /// claims go to the index with the rest of their window's ([`Self::append_index`]).
    pub fn append(&mut self, changes: &Changes, texts: &TextLists) -> Result<()> {
        let names = &self.names;
        let (pools, history) = rayon::join(
            || pools_batch(&changes.pools, names),
            || history_batch(changes, names, texts),
        );
        let year = |c: &WrittenClaim| year_of(c.record.service_day);
        self.pools.write(
            pools?,
            changes
                .pools
                .iter()
                .filter(|r| r.state.pool != NONE)
                .map(|r| r.state.year),
        )?;
        self.history
            .write(history?, history_of(changes).map(year))?;
        Ok(())
    }

    /// Appends the claims of `changes` to the index as one ordered run: the claims by
    /// `claim_key`, then the accepted refunds (claims with an original) by the key of the claim
    /// each cancelled, each in row groups of their own ([`ROW_GROUP_ORDER`]). Rows of one key
    /// keep their order in `changes`.
    pub fn append_index(&mut self, changes: &[Changes], texts: &TextLists) -> Result<()> {
        let (mut by_claim, mut by_target) = (Vec::new(), Vec::new());
        for (c, change) in changes.iter().enumerate() {
            for (i, claim) in change.claims.iter().enumerate() {
                let at = (c as u32, i as u32);
                match claim.reverses {
                    Some(original) => by_target.push((claim_key(original), at)),
                    None => by_claim.push((claim.claim_key, at)),
                }
            }
        }
        let year = |c: &WrittenClaim| year_of(c.record.service_day);
        self.claims
            .note_years(changes.iter().flat_map(|c| c.claims.iter().map(year)));
        by_claim.par_sort_unstable();
        by_target.par_sort_unstable();
        let names = &self.names;
        for (order, by) in [(by_claim, "claim_key"), (by_target, "reverses_key")] {
            self.claims.end_row_group("")?;
            // A window of slices built in parallel, then written in order.
            let slices: Vec<&[(u64, (u32, u32))]> = order.chunks(INDEX_SLICE_ROWS).collect();
            for window in slices.chunks(rayon::current_num_threads().max(1)) {
                let batches: Vec<RecordBatch> = window
                    .par_iter()
                    .map(|slice| {
                        let rows: Vec<&WrittenClaim> = slice
                            .iter()
                            .map(|&(_, (c, i))| &changes[c as usize].claims[i as usize])
                            .collect();
                        claims_batch(&rows, names, texts)
                    })
                    .collect::<Result<_>>()?;
                for batch in batches {
                    self.claims.write(batch, std::iter::empty())?;
                }
            }
            self.claims.end_row_group(by)?;
        }
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

/// Writes the rows of `batches` at `order` (batch, row), copied [`ORDERED_SLICE_ROWS`] at a
/// time.
pub fn write_in_order(
    file: &mut TableFile,
    batches: &[&RecordBatch],
    order: impl ExactSizeIterator<Item = (u32, u32)>,
) -> Result<()> {
    let mut at = Vec::with_capacity(order.len().min(ORDERED_SLICE_ROWS));
    let mut order = order.peekable();
    while order.peek().is_some() {
        at.clear();
        at.extend(
            order
                .by_ref()
                .take(ORDERED_SLICE_ROWS)
                .map(|(b, i)| (b as usize, i as usize)),
        );
        let slice = arrow::compute::interleave_record_batch(batches, &at)
            .map_err(|e| Error::arrow("state claims", e))?;
        let slice = RecordBatch::try_new(file.schema(), slice.columns().to_vec())
            .map_err(|e| Error::arrow("state claims", e))?;
        file.write(slice, std::iter::empty())?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    /// The claim index's keys with a year and each row's place in the input (`n`), as a table
    /// written with the index's settings.
    pub fn keyed_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            field("claim_key", DataType::Int64),
            field("reverses_key", DataType::Int64),
            field("year", DataType::Int32),
            field("n", DataType::Int64),
        ]))
    }

    /// `rows` of `(claim key, reverses key)`, numbered from `first`.
    pub fn keyed_batch(rows: &[(u64, Option<u64>)], first: i64) -> RecordBatch {
        RecordBatch::try_new(
            keyed_schema(),
            vec![
                arc(Int64Array::from_iter_values(
                    rows.iter().map(|r| r.0 as i64),
                )),
                arc(rows
                    .iter()
                    .map(|r| r.1.map(|k| k as i64))
                    .collect::<Int64Array>()),
                arc(Int32Array::from(vec![2024; rows.len()])),
                arc(Int64Array::from_iter_values(
                    (0..rows.len() as i64).map(|i| first + i),
                )),
            ],
        )
        .unwrap()
    }

    /// A claim of `person_id` as a run hands it to the state (a refund where it `reverses`
    /// another): 1 yuan paid, served on 2024-01-01.
    pub fn written_claim<'a>(
        person_id: &'a str,
        claim_id: &'a str,
        reverses: Option<&'a str>,
    ) -> WrittenClaim<'a> {
        let record = super::super::EarlierClaim {
            settled_at: 0,
            total_fen: 100,
            service_day: 19_723,
            institution: 0,
            drug: crate::ingest::claims::NO_CODE,
            medical_community: crate::ingest::claims::NO_CODE,
            days_supply: None,
            status: Status::Paid,
            visit: VisitType::Outpatient,
            reversed: false,
        }
        .as_record();
        WrittenClaim {
            person_id,
            person_key: claim_key(person_id),
            claim_id,
            claim_key: claim_key(claim_id),
            record,
            reverses,
            original_in_run: false,
        }
    }

    /// The run's dictionaries of [`written_claim`]'s codes (its institution is code 0).
    pub fn written_texts() -> TextLists {
        TextLists::of(&Claims {
            institutions: vec!["I0".into()],
            ..Claims::default()
        })
    }

    impl TableFile {
        /// A new file of `schema` written as the claim index is.
        pub fn for_tests(store: &Store, schema: SchemaRef) -> TableFile {
            TableFile::create_with(store, "claims", schema, &INDEX_SETTINGS).unwrap()
        }
    }

    /// Writes `runs` as index runs into a new file of `store`; returns its path.
    pub fn write_keyed(store: &Store, runs: Vec<Vec<RecordBatch>>) -> std::path::PathBuf {
        let mut file = TableFile::for_tests(store, keyed_schema());
        for run in runs {
            write_index_run(&mut file, run).unwrap();
        }
        let (piece, committed) = file.close().unwrap();
        committed.commit().unwrap();
        store.path(&piece.file)
    }

    /// Every column of `path`'s table named in `names`, as text (nulls as `None`).
    fn text_columns(path: &std::path::Path, names: &[&str]) -> Vec<Vec<Option<String>>> {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        names
            .iter()
            .map(|name| {
                let mut texts = Vec::new();
                for batch in &batches {
                    let column = batch.column_by_name(name).unwrap();
                    let column = arrow::compute::cast(column, &DataType::Utf8).unwrap();
                    texts.extend(
                        column
                            .as_string::<i32>()
                            .iter()
                            .map(|t| t.map(String::from)),
                    );
                }
                texts
            })
            .collect()
    }

    #[test]
    fn pools_and_history_are_written_with_the_names_and_texts_their_codes_stand_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let policies =
            Policies::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
                .unwrap();
        let texts = TextLists::of(&Claims {
            institutions: vec!["I0".into(), "I1".into()],
            drugs: vec!["D0".into()],
            medical_communities: vec!["M0".into()],
            ..Claims::default()
        });
        let mut paid = written_claim("P0", "C1", None);
        paid.record.institution = 1;
        paid.record.drug = 0;
        let mut stay = written_claim("P0", "C2", None);
        stay.record.status = Status::NotCovered;
        stay.record.visit = VisitType::Inpatient;
        stay.record.medical_community = 0;
        let pool = |person_id: &'static str, state: PoolState| WrittenPool {
            person_id,
            person_key: claim_key(person_id),
            state,
        };
        let changes = Changes {
            pools: vec![
                pool(
                    "P0",
                    PoolState {
                        claims: 2,
                        fund_fen: 100,
                        ..PoolState::empty(2024, 1)
                    },
                ),
                pool("P1", PoolState::empty(0, NONE)),
            ],
            claims: vec![paid, stay],
            history: vec![true, true],
        };
        let mut writer = StateWriter::create(&store, &policies).unwrap();
        writer.append(&changes, &texts).unwrap();
        let (pools, history, _) = writer.close().unwrap().place(&store).unwrap();
        let history = text_columns(
            &store.path(&history.file),
            &[
                "claim_id",
                "status",
                "visit_type",
                "institution_id",
                "drug_code",
                "medical_community_id",
            ],
        );
        let text = |t: &[Option<&str>]| -> Vec<Option<String>> {
            t.iter().map(|t| t.map(String::from)).collect()
        };
        assert_eq!(
            history,
            [
                text(&[Some("C1"), Some("C2")]),
                text(&[Some("paid"), Some("not_covered")]),
                text(&[Some("outpatient"), Some("inpatient")]),
                text(&[Some("I1"), Some("I0")]),
                text(&[Some("D0"), None]),
                text(&[None, Some("M0")]),
            ]
        );
        let pools = text_columns(&store.path(&pools.file), &["person_id", "pool"]);
        assert_eq!(
            pools,
            [
                text(&[Some("P0"), Some("P1")]),
                text(&[Some(policies.pools[1].as_str()), None]),
            ]
        );
    }

    #[test]
    fn a_parts_index_is_written_as_claims_by_key_then_refunds_by_the_key_they_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let policies = Policies::default();
        let mut writer = StateWriter::create(&store, &policies).unwrap();
        let written = written_claim;
        let changes = |claims: Vec<WrittenClaim<'static>>| Changes {
            pools: Vec::new(),
            history: vec![false; claims.len()],
            claims,
        };
        let part = [
            changes(vec![
                written("P0", "C9", None),
                written("P0", "R1", Some("C3")),
                written("P0", "C3", None),
            ]),
            changes(vec![
                written("P1", "C1", None),
                written("P1", "R2", Some("C1")),
                written("P1", "C3", None),
                written("P1", "R3", Some("C3")),
            ]),
        ];
        writer.append_index(&part, &written_texts()).unwrap();
        let (_, _, claims) = writer.close().unwrap().place(&store).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(store.path(&claims.file)).unwrap(),
        )
        .unwrap();
        let orders = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == ROW_GROUP_ORDER))
            .and_then(|kv| kv.value.clone());
        assert_eq!(orders.as_deref(), Some("claim_key,reverses_key"));
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, [4, 3]);
        // Keys as they lie, for the search; ids by their lengths, for a record's read to skip.
        let encodings = |name: &str| {
            let group = reader.metadata().row_group(0);
            let at = (0..group.num_columns())
                .find(|&c| group.column(c).column_path().string() == name)
                .unwrap();
            group.column(at).encodings().collect::<Vec<_>>()
        };
        assert!(encodings("claim_key").contains(&parquet::basic::Encoding::PLAIN));
        for id in ["claim_id", "person_id"] {
            assert!(
                encodings(id).contains(&parquet::basic::Encoding::DELTA_LENGTH_BYTE_ARRAY),
                "{id}: {:?}",
                encodings(id)
            );
        }
        let rows: Vec<(String, String, u64)> = reader
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let text = |name| b.column_by_name(name).unwrap().as_string::<i32>().clone();
                let (person, id) = (text("person_id"), text("claim_id"));
                let key = |name| {
                    b.column_by_name(name)
                        .unwrap()
                        .as_primitive::<Int64Type>()
                        .clone()
                };
                let (claim, target) = (key("claim_key"), key("reverses_key"));
                (0..b.num_rows())
                    .map(|i| {
                        let k = if target.is_valid(i) {
                            target.value(i)
                        } else {
                            claim.value(i)
                        };
                        (
                            person.value(i).to_string(),
                            id.value(i).to_string(),
                            k as u64,
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        // The claims by the unsigned key of their ids, C3 of P0 before C3 of P1 (the order they
        // came in); then the refunds by their originals' keys, R1 before R3 (both of C3).
        let by_key = |ids: &[(&str, &str)]| {
            let mut rows: Vec<(String, String, u64)> = ids
                .iter()
                .map(|&(p, id)| (p.to_string(), id.to_string(), claim_key(id)))
                .collect();
            rows.sort_by_key(|r| r.2);
            rows
        };
        let mut expected = by_key(&[("P0", "C9"), ("P0", "C3"), ("P1", "C1"), ("P1", "C3")]);
        let refunds = by_key(&[("P0", "C3"), ("P1", "C1"), ("P1", "C3")]);
        let refunds: Vec<(String, String, u64)> = refunds
            .into_iter()
            .map(|(p, original, k)| {
                let id = match (p.as_str(), original.as_str()) {
                    ("P0", _) => "R1",
                    (_, "C1") => "R2",
                    _ => "R3",
                };
                (p, id.to_string(), k)
            })
            .collect();
        expected.extend(refunds);
        assert_eq!(rows, expected);
    }

    /// Writes `run` in two ordered runs of row groups, as [`StateWriter::append_index`] writes a
    /// part: the rows without a `reverses_key` by `claim_key`, then the others by
    /// `reverses_key`, rows of one key in the order they came in.
    fn write_index_run(file: &mut TableFile, run: Vec<RecordBatch>) -> Result<()> {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        let (mut by_claim, mut by_target) = (Vec::new(), Vec::new());
        for (b, batch) in run.iter().enumerate() {
            let column = |name| {
                batch
                    .column_by_name(name)
                    .expect("the claim index has its keys")
                    .as_primitive::<Int64Type>()
            };
            let (claims, targets) = (column("claim_key"), column("reverses_key"));
            for i in 0..batch.num_rows() {
                let at = (b as u32, i as u32);
                if targets.is_valid(i) {
                    by_target.push((targets.value(i) as u64, at));
                } else {
                    by_claim.push((claims.value(i) as u64, at));
                }
            }
        }
        by_claim.par_sort_unstable();
        by_target.par_sort_unstable();
        let batches: Vec<&RecordBatch> = run.iter().collect();
        for (rows, by) in [(by_claim, "claim_key"), (by_target, "reverses_key")] {
            if rows.is_empty() {
                continue;
            }
            file.end_row_group("")?;
            write_in_order(file, &batches, rows.iter().map(|&(_, at)| at))?;
            file.end_row_group(by)?;
        }
        Ok(())
    }
}
