//! Claims ingest: decode every claims file (row groups in parallel), validate each row, and turn
//! the columns the engine needs into plain per-row vectors — dense person ids, level and visit
//! codes, interned diagnosis / institution / drug ids, money in fen. A row that is not a valid
//! claim is marked with its [`Reason`] and carried to `rejected.parquet`; it never stops the run.

use std::collections::HashMap;

use crate::ingest::FastMap;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, Int32Type, TimestampMillisecondType};
use rayon::prelude::*;

use super::read::{col, first_null, list_parquet, read_windows, ColumnKind::*, ColumnSpec};
use super::registry::PersonIndex;
use crate::domain::{day_of, format_date, Day, Level, Millis, Reason, Referral, VisitType};
use crate::error::Result;
use crate::limits;
use crate::money::Yuan;

/// Marks a row whose `person_id` is null.
pub const NO_PERSON: u32 = u32::MAX;
/// Marks a null interned string (drug code, institution).
pub const NO_CODE: u32 = u32::MAX;

/// The claim columns of CONTRACT.md, in contract order.
pub const CLAIM_COLUMNS: &[ColumnSpec] = &[
    col("claim_id", Text, false),
    col("person_id", Text, false),
    col("region", Code, false),
    col("settled_at", TimestampMs, false),
    col("service_date", Date, true),
    col("institution_id", Code, false),
    col("institution_level", Code, false),
    col("prescriber_level", Code, true),
    col("visit_type", Code, true),
    col("diagnosis", Code, false),
    col("total_amount", Money, false),
    col("in_scope_amount", Money, false),
    col("drug_code", Code, true),
    col("days_supply", Int32Wide, true),
    col("reverses_claim_id", Text, true),
    // Added by yibao (optional): Weihai's referral rules.
    col("referral", Code, true),
    col("medical_community_id", Code, true),
];

/// Where a claims batch came from, and the text columns kept from it as read: the claim ids (for
/// output and the reversals' lookups) and the ids reversals name. The other settlement keys are
/// kept per row in [`Claims`] as codes (person, region, level text) and times, and written back
/// from them exactly as read.
#[derive(Debug, Clone)]
pub struct ClaimBatch {
    /// Global index of the batch's first row.
    pub offset: usize,
    pub file: usize,
    /// Row number of the batch's first row inside its file.
    pub file_row: u64,
    /// Row number of each row inside its file, when the rows are not consecutive (a batch read
    /// back from a spill partition); `None` means `file_row + i`.
    pub file_rows: Option<UInt64Array>,
    /// Source file of each row, when the batch mixes files (claims put in output order by
    /// [`Claims::gather`]); `None` means `file`.
    pub files: Option<Vec<u32>>,
    pub claim_id: StringArray,
    pub reverses_claim_id: StringArray,
}

/// An input file, for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub rows: u64,
}

/// Invokes `$apply!(column, …)` with every per-row column of [`Claims`] (all but the text
/// batches and the rejected rows' details): the one list of them that moving rows uses.
macro_rules! row_columns {
    ($apply:ident) => {
        $apply!(
            person,
            region,
            settled_at,
            settled_at_null,
            service_day,
            service_date_null,
            level,
            level_text,
            prescriber,
            visit,
            diagnosis,
            institution,
            drug,
            days_supply,
            total_fen,
            in_scope_fen,
            is_reversal,
            referral,
            medical_community,
            rejected
        )
    };
}
// The spill files' tests check every column by it.
#[cfg(test)]
pub(crate) use row_columns;

/// All claims of the run, column-wise, indexed by global row (file order, then row order).
#[derive(Debug, Default)]
pub struct Claims {
    pub sources: Vec<SourceFile>,
    pub batches: Vec<ClaimBatch>,
    pub person: Vec<u32>,
    /// Interned `region` (the insured region's code as read), or [`NO_CODE`] when null.
    pub region: Vec<u32>,
    pub settled_at: Vec<Millis>,
    pub settled_at_null: Vec<bool>,
    /// `service_date`, or `settled_at`'s day when null: the day that picks the policy version and
    /// the year-to-date year.
    pub service_day: Vec<Day>,
    pub service_date_null: Vec<bool>,
    pub level: Vec<Level>,
    /// Interned `institution_level` text as read (an unknown level is written back as it came),
    /// or [`NO_CODE`] when null.
    pub level_text: Vec<u32>,
    pub prescriber: Vec<Option<Level>>,
    pub visit: Vec<VisitType>,
    pub diagnosis: Vec<u32>,
    pub institution: Vec<u32>,
    pub drug: Vec<u32>,
    pub days_supply: Vec<Option<i32>>,
    pub total_fen: Vec<i64>,
    pub in_scope_fen: Vec<i64>,
    pub is_reversal: Vec<bool>,
    /// `referral` (inpatient stays).
    pub referral: Vec<Option<Referral>>,
    /// Interned `medical_community_id` (医共体) of the institution, or [`NO_CODE`].
    pub medical_community: Vec<u32>,
    /// Set for rows that are not valid claims.
    pub rejected: Vec<Option<Reason>>,
    /// The offending value, for `rejected.parquet`'s `detail`.
    pub reject_detail: HashMap<usize, String>,
    pub regions: Vec<String>,
    pub level_texts: Vec<String>,
    pub diagnoses: Vec<String>,
    pub institutions: Vec<String>,
    pub drugs: Vec<String>,
    pub medical_communities: Vec<String>,
}

/// The run dictionaries' indexes while claims are appended (text → code).
#[derive(Default)]
struct Dictionaries {
    region: FastMap<String, u32>,
    level: FastMap<String, u32>,
    diagnosis: FastMap<String, u32>,
    institution: FastMap<String, u32>,
    drug: FastMap<String, u32>,
    community: FastMap<String, u32>,
}

/// A spilled run's claims converted a window of batches at a time, in input order, against the
/// month's text dictionaries and person index: the codes a run held in memory would give, so a
/// window's rows can be written to their spill partitions as converted and never converted again
/// ([`super::converted`]).
#[derive(Default)]
pub struct ClaimWindows {
    window: Claims,
    dictionaries: Dictionaries,
}

impl ClaimWindows {
    /// Converts the next window in place of the last one's rows; persons not in the registry
    /// get new dense ids in `persons`.
    pub fn convert(
        &mut self,
        inputs: Vec<InputBatch>,
        persons: &mut PersonIndex,
    ) -> Result<&Claims> {
        self.window.clear_rows();
        self.window
            .append(inputs, persons, &mut self.dictionaries)?;
        Ok(&self.window)
    }

    /// The month's text dictionaries, once every window is converted: claims with no rows.
    pub fn into_texts(mut self) -> Claims {
        self.window.clear_rows();
        self.window
    }
}

/// One batch converted, before its interned ids are merged into the global dictionaries.
struct Converted {
    batch: ClaimBatch,
    person: Vec<u32>,
    unseen_persons: Vec<(usize, String)>,
    region: Local,
    settled_at: Vec<Millis>,
    settled_at_null: Vec<bool>,
    service_day: Vec<Day>,
    service_date_null: Vec<bool>,
    level: Vec<Level>,
    level_text: Local,
    prescriber: Vec<Option<Level>>,
    visit: Vec<VisitType>,
    diagnosis: Local,
    institution: Local,
    drug: Local,
    days_supply: Vec<Option<i32>>,
    total_fen: Vec<i64>,
    in_scope_fen: Vec<i64>,
    is_reversal: Vec<bool>,
    referral: Vec<Option<Referral>>,
    medical_community: Local,
    rejected: Vec<Option<Reason>>,
    detail: Vec<(usize, String)>,
}

/// A text column as read: plain, or dictionary-encoded (the [`Code`] columns).
#[derive(Clone, Copy)]
enum Texts<'a> {
    Plain(&'a StringArray),
    Dict(&'a DictionaryArray<Int32Type>, &'a StringArray),
}

impl<'a> Texts<'a> {
    fn of(array: &'a ArrayRef) -> Texts<'a> {
        match array.as_dictionary_opt::<Int32Type>() {
            Some(d) => Texts::Dict(d, d.values().as_string::<i32>()),
            None => Texts::Plain(array.as_string::<i32>()),
        }
    }

    /// The dictionary slot of row `i`, or `None` when it is null.
    #[inline]
    fn slot(keys: &DictionaryArray<Int32Type>, values: &StringArray, i: usize) -> Option<usize> {
        let k = keys.keys();
        (k.is_valid(i) && values.is_valid(k.value(i) as usize)).then(|| k.value(i) as usize)
    }

    #[inline]
    fn is_null(&self, i: usize) -> bool {
        match self {
            Texts::Plain(a) => a.is_null(i),
            Texts::Dict(d, v) => Self::slot(d, v, i).is_none(),
        }
    }

    #[inline]
    fn is_valid(&self, i: usize) -> bool {
        !self.is_null(i)
    }

    /// Row `i`'s text; `""` when null.
    #[inline]
    fn value(&self, i: usize) -> &'a str {
        match self {
            Texts::Plain(a) => a.value(i),
            Texts::Dict(d, v) => Self::slot(d, v, i).map_or("", |s| v.value(s)),
        }
    }

    /// Whether every value is within the id bounds ([`limits::ids_clean`]): for a dictionary,
    /// every distinct value.
    fn clean(&self) -> bool {
        match self {
            Texts::Plain(a) => limits::ids_clean(a),
            Texts::Dict(_, v) => limits::ids_clean(v),
        }
    }
}

/// A batch-local string dictionary: codes per row, and the distinct values in first-seen order.
#[derive(Default)]
struct Local {
    codes: Vec<u32>,
    values: Vec<String>,
}

impl Local {
    fn build(texts: &Texts) -> Local {
        match *texts {
            Texts::Plain(array) => Local::build_plain(array),
            Texts::Dict(keys, values) => Local::build_dict(keys, values),
        }
    }

    /// As [`Local::build_plain`] would number the rows' values, hashing each distinct value once:
    /// a slot's code is given at its first row.
    fn build_dict(keys: &DictionaryArray<Int32Type>, values: &StringArray) -> Local {
        const UNSEEN: u32 = u32::MAX - 1;
        let mut slot_code = vec![UNSEEN; values.len()];
        let mut map: FastMap<&str, u32> = FastMap::default();
        let mut local = Local {
            codes: Vec::with_capacity(keys.len()),
            values: Vec::new(),
        };
        for i in 0..keys.len() {
            let Some(slot) = Texts::slot(keys, values, i) else {
                local.codes.push(NO_CODE);
                continue;
            };
            if slot_code[slot] == UNSEEN {
                let v = values.value(slot);
                let next = map.len() as u32;
                slot_code[slot] = *map.entry(v).or_insert_with(|| {
                    local.values.push(v.to_string());
                    next
                });
            }
            local.codes.push(slot_code[slot]);
        }
        local
    }

    fn build_plain(array: &StringArray) -> Local {
        let mut map: FastMap<&str, u32> = FastMap::default();
        let mut local = Local {
            codes: Vec::with_capacity(array.len()),
            values: Vec::new(),
        };
        for i in 0..array.len() {
            if array.is_null(i) {
                local.codes.push(NO_CODE);
                continue;
            }
            let v = array.value(i);
            let next = map.len() as u32;
            let code = *map.entry(v).or_insert_with(|| {
                local.values.push(v.to_string());
                next
            });
            local.codes.push(code);
        }
        local
    }

    /// The global code of each local value, appending values new to `global` in order.
    fn remap(&mut self, global: &mut Vec<String>, index: &mut FastMap<String, u32>) -> Vec<u32> {
        std::mem::take(&mut self.values)
            .into_iter()
            .map(|v| {
                let next = global.len() as u32;
                *index.entry(v).or_insert_with_key(|k| {
                    global.push(k.clone());
                    next
                })
            })
            .collect()
    }
}

/// Appends `codes` re-coded through `remap` ([`Local::remap`]) to `out`.
fn extend_recoded(out: &mut Vec<u32>, codes: &[u32], remap: &[u32]) {
    out.extend(codes.iter().map(|&c| {
        if c == NO_CODE {
            NO_CODE
        } else {
            remap[c as usize]
        }
    }));
}

impl Claims {
    /// Whether the claim at `row` is a fill: a drug with days of supply, what `early_refill`
    /// compares.
    #[inline]
    pub fn is_fill(&self, row: usize) -> bool {
        self.drug[row] != NO_CODE && self.days_supply[row].is_some()
    }

    pub fn len(&self) -> usize {
        self.person.len()
    }

    pub fn is_empty(&self) -> bool {
        self.person.is_empty()
    }

    /// The batch holding global row `row`, and the row's index inside it.
    #[inline]
    pub fn locate(&self, row: usize) -> (&ClaimBatch, usize) {
        let (b, i) = self.locate_index(row);
        (&self.batches[b], i)
    }

    /// The index of the batch holding global row `row`, and the row's index inside it.
    #[inline]
    pub fn locate_index(&self, row: usize) -> (usize, usize) {
        let b = self.batches.partition_point(|b| b.offset <= row) - 1;
        (b, row - self.batches[b].offset)
    }

    /// [`Self::locate_index`] of each of `rows`: one walk over the batches while the rows
    /// ascend (a part in output order, a partition's rows of a window), a search where they
    /// step back.
    pub fn locate_rows(&self, rows: impl IntoIterator<Item = usize>) -> Vec<(usize, usize)> {
        let rows = rows.into_iter();
        let mut at = Vec::with_capacity(rows.size_hint().0);
        let mut b = 0;
        for row in rows {
            if row < self.batches[b].offset {
                b = self.locate_index(row).0;
            }
            while b + 1 < self.batches.len() && self.batches[b + 1].offset <= row {
                b += 1;
            }
            at.push((b, row - self.batches[b].offset));
        }
        at
    }

    /// Row number of global row `row` inside its input file, and the file's index.
    pub fn source_row(&self, row: usize) -> (usize, u64) {
        self.source_at(self.locate_index(row))
    }

    /// [`Self::source_row`] of the row at `(batch, index)` ([`Self::locate_rows`]).
    pub fn source_at(&self, (b, i): (usize, usize)) -> (usize, u64) {
        let batch = &self.batches[b];
        let in_file = match &batch.file_rows {
            Some(rows) => rows.value(i),
            None => batch.file_row + i as u64,
        };
        let file = batch.files.as_ref().map_or(batch.file, |f| f[i] as usize);
        (file, in_file)
    }

    /// [`Self::reverses_claim_id`] of the row at `(batch, index)` ([`Self::locate_rows`]).
    pub fn reverses_claim_id_at(&self, (b, i): (usize, usize)) -> Option<&str> {
        let ids = &self.batches[b].reverses_claim_id;
        ids.is_valid(i).then(|| ids.value(i))
    }

    /// [`Self::claim_id`] of the row at `(batch, index)` ([`Self::locate_rows`]).
    pub fn claim_id_at(&self, (b, i): (usize, usize)) -> Option<&str> {
        let ids = &self.batches[b].claim_id;
        ids.is_valid(i).then(|| ids.value(i))
    }

    pub fn claim_id(&self, row: usize) -> Option<&str> {
        self.claim_id_at(self.locate_index(row))
    }

    /// Whether every settlement key of `row` (claim id, person id, region, settlement time,
    /// institution level) is present: only such a row can be a settlement row.
    pub fn keys_complete(&self, row: usize) -> bool {
        let (batch, i) = self.locate(row);
        batch.claim_id.is_valid(i)
            && self.person[row] != NO_PERSON
            && self.region[row] != NO_CODE
            && !self.settled_at_null[row]
            && self.level_text[row] != NO_CODE
    }

    /// A row's `person_id` as read (its dense id's text in the run's person index).
    pub fn person_id<'p>(&self, row: usize, persons: &'p PersonIndex) -> Option<&'p str> {
        (self.person[row] != NO_PERSON).then(|| persons.id(self.person[row]))
    }

    /// A row's `region` and `institution_level` as read.
    pub fn region_text(&self, row: usize) -> Option<&str> {
        code_text(&self.regions, self.region[row])
    }

    pub fn level_text(&self, row: usize) -> Option<&str> {
        code_text(&self.level_texts, self.level_text[row])
    }

    pub fn reverses_claim_id(&self, row: usize) -> Option<&str> {
        self.reverses_claim_id_at(self.locate_index(row))
    }

    /// Reads `--claims FILE_OR_DIR`. Persons not in the registry get new dense ids in `persons`.
    /// Repeated claim ids are rejected by [`Self::reject_duplicate_ids`], once the state has
    /// said which of them earlier runs settled. Each file is decoded a window of row groups at a time
    /// and converted at once: memory holds one window as read, then only the converted columns
    /// and the claim ids.
    pub fn load(path: &Path, persons: &mut PersonIndex) -> Result<Claims> {
        let files = list_parquet(path)?;
        let mut total_rows = 0;
        for file in &files {
            total_rows += super::read::row_count(file)?;
        }
        let mut claims = Claims::default();
        claims.reserve(total_rows as usize);
        let mut dictionaries = Dictionaries::default();
        let window = super::read::working_window();
        for (f, file) in files.iter().enumerate() {
            let (bytes, rows) = read_windows(file, CLAIM_COLUMNS, window, |batches, starts| {
                let inputs = batches
                    .into_iter()
                    .zip(starts)
                    .map(|(batch, first_row)| InputBatch {
                        file: f,
                        first_row,
                        batch,
                    })
                    .collect();
                claims.append(inputs, persons, &mut dictionaries)
            })?;
            claims.sources.push(SourceFile {
                path: file.clone(),
                bytes,
                rows,
            });
        }
        Ok(claims)
    }

    /// Converts `inputs` in parallel and appends them in order: deterministic for any thread
    /// count. The text dictionaries carry over from one call to the next; a caller appending
    /// several times reserves the whole length first, so the columns are not regrown.
    fn append(
        &mut self,
        inputs: Vec<InputBatch>,
        persons: &mut PersonIndex,
        dictionaries: &mut Dictionaries,
    ) -> Result<()> {
        let persons_ref: &PersonIndex = persons;
        let mut converted: Vec<Converted> = inputs
            .into_par_iter()
            .map(|input| convert(input.file, input.first_row, &input.batch, persons_ref))
            .collect::<Result<_>>()?;
        let total: usize = converted.iter().map(|c| c.person.len()).sum();
        self.reserve(total);
        // In order, one thread: what numbers persons and texts (new persons' dense ids, the
        // dictionaries' codes), so codes are the same for any thread count. Only distinct
        // texts and unseen persons pass through here.
        let d = dictionaries;
        let mut remaps = Vec::with_capacity(converted.len());
        for c in &mut converted {
            for (i, id) in c.unseen_persons.drain(..) {
                c.person[i] = persons.intern(&id).0;
            }
            remaps.push([
                c.region.remap(&mut self.regions, &mut d.region),
                c.level_text.remap(&mut self.level_texts, &mut d.level),
                c.diagnosis.remap(&mut self.diagnoses, &mut d.diagnosis),
                c.institution
                    .remap(&mut self.institutions, &mut d.institution),
                c.drug.remap(&mut self.drugs, &mut d.drug),
                c.medical_community
                    .remap(&mut self.medical_communities, &mut d.community),
            ]);
        }
        let mut offset = self.person.len();
        for c in &mut converted {
            c.batch.offset = offset;
            for (i, d) in c.detail.drain(..) {
                self.reject_detail.insert(offset + i, d);
            }
            offset += c.person.len();
        }
        // Then every column copied at once, a column per task: the copies (and the first
        // touches of the columns' fresh pages) no longer hold up one thread while the other
        // waits for the next window.
        let cs = &converted;
        let recode =
            |out: &mut Vec<u32>, which: usize, codes: &(dyn Fn(&Converted) -> &[u32] + Sync)| {
                for (c, remap) in cs.iter().zip(&remaps) {
                    extend_recoded(out, codes(c), &remap[which]);
                }
            };
        rayon::scope(|s| {
            s.spawn(|_| copy(&mut self.person, cs, |c| &c.person));
            s.spawn(|_| recode(&mut self.region, 0, &|c| &c.region.codes));
            s.spawn(|_| copy(&mut self.settled_at, cs, |c| &c.settled_at));
            s.spawn(|_| copy(&mut self.settled_at_null, cs, |c| &c.settled_at_null));
            s.spawn(|_| copy(&mut self.service_day, cs, |c| &c.service_day));
            s.spawn(|_| copy(&mut self.service_date_null, cs, |c| &c.service_date_null));
            s.spawn(|_| copy(&mut self.level, cs, |c| &c.level));
            s.spawn(|_| recode(&mut self.level_text, 1, &|c| &c.level_text.codes));
            s.spawn(|_| copy(&mut self.prescriber, cs, |c| &c.prescriber));
            s.spawn(|_| copy(&mut self.visit, cs, |c| &c.visit));
            s.spawn(|_| recode(&mut self.diagnosis, 2, &|c| &c.diagnosis.codes));
            s.spawn(|_| recode(&mut self.institution, 3, &|c| &c.institution.codes));
            s.spawn(|_| recode(&mut self.drug, 4, &|c| &c.drug.codes));
            s.spawn(|_| copy(&mut self.days_supply, cs, |c| &c.days_supply));
            s.spawn(|_| copy(&mut self.total_fen, cs, |c| &c.total_fen));
            s.spawn(|_| copy(&mut self.in_scope_fen, cs, |c| &c.in_scope_fen));
            s.spawn(|_| copy(&mut self.is_reversal, cs, |c| &c.is_reversal));
            s.spawn(|_| copy(&mut self.referral, cs, |c| &c.referral));
            s.spawn(|_| {
                recode(&mut self.medical_community, 5, &|c| {
                    &c.medical_community.codes
                })
            });
            s.spawn(|_| copy(&mut self.rejected, cs, |c| &c.rejected));
        });
        self.batches.extend(converted.into_iter().map(|c| c.batch));
        Ok(())
    }

    /// Rejects the rows at input rows `repeats` (sorted) as repeats of a claim id: a spilled
    /// run finds them across the whole month while scattering ([`find_repeats`]).
    pub fn reject_listed(&mut self, repeats: &[u64]) {
        if repeats.is_empty() {
            return;
        }
        let starts = self.file_starts();
        for (row, at) in self.locate_rows(0..self.len()).into_iter().enumerate() {
            let (file, in_file) = self.source_at(at);
            if self.rejected[row].is_none()
                && repeats.binary_search(&(starts[file] + in_file)).is_ok()
            {
                self.rejected[row] = Some(Reason::DuplicateClaimId);
            }
        }
    }

    /// Drops every row, keeping the text dictionaries and the columns' memory.
    fn clear_rows(&mut self) {
        self.batches.clear();
        macro_rules! clear {
            ($($column:ident),*) => {$(
                self.$column.clear();
            )*};
        }
        row_columns!(clear);
        self.reject_detail.clear();
    }

    /// The same claims with row `i` being row `rows[i]` of before (`rows` a permutation): puts
    /// a run's claims in the order it works through them, so settlement, audit and the writers
    /// walk memory forwards instead of jumping across the month for every person. Each column
    /// is replaced as soon as it is gathered, so at most one extra column is held.
    pub fn gather(&mut self, rows: &[u32]) -> Result<()> {
        assert_eq!(rows.len(), self.len(), "a permutation of the rows");
        // Claims selected in output order ([`Claims::select`]) are in it already.
        if rows.iter().enumerate().all(|(i, &r)| i == r as usize) {
            return Ok(());
        }
        fn column<T: Copy + Send + Sync>(v: &mut Vec<T>, rows: &[u32]) {
            *v = gathered(v, rows);
        }
        macro_rules! gather {
            ($($column:ident),*) => {$(
                column(&mut self.$column, rows);
            )*};
        }
        row_columns!(gather);
        let sweep = permutation_sweep(rows);
        self.reject_detail = self.details_at(&sweep);
        self.batches = self.placed_batches(&sweep)?;
        Ok(())
    }

    /// [`Self::swept_batches`] of a permutation of the rows ([`permutation_sweep`]): the text
    /// columns taken straight into their new order from the batches. A run's or a partition's
    /// own batches are what the claims are, so there is no larger whole to read forwards, and
    /// one copy of the texts does where the sweep makes two.
    fn placed_batches(&self, sweep: &[u64]) -> Result<Vec<ClaimBatch>> {
        let at = self.locate_rows(0..sweep.len());
        let mut placed = vec![(0usize, 0usize); sweep.len()];
        for (&entry, &a) in sweep.iter().zip(&at) {
            placed[(entry & PLACE) as usize] = a;
        }
        drop(at);
        let claim_ids: Vec<&dyn Array> = self.batches.iter().map(|b| &b.claim_id as _).collect();
        let reversed: Vec<&dyn Array> = self
            .batches
            .iter()
            .map(|b| &b.reverses_claim_id as _)
            .collect();
        ordered_batches(&claim_ids, &reversed, &placed, |place| {
            self.source_at(placed[place])
        })
    }

    /// The claims of `rows`, in that order, as claims of their own with the same text
    /// dictionaries: one part of a run held in memory, settled apart from the others as a
    /// spilled partition is ([`crate::partition::Partitions::cut`]).
    ///
    /// A part's rows are spread over the whole month, so reading them in part order would wait
    /// on memory once per row and column. They are read in input order instead — a forward
    /// sweep of each column the prefetcher can follow — and each value is stored at its place
    /// in the part, within the part's own few megabytes of each column.
    pub fn select(&self, rows: &[u32]) -> Result<Claims> {
        let sweep = &sweep(rows)[..];
        let mut part = Claims {
            sources: self.sources.clone(),
            reject_detail: self.details_at(sweep),
            regions: self.regions.clone(),
            level_texts: self.level_texts.clone(),
            diagnoses: self.diagnoses.clone(),
            institutions: self.institutions.clone(),
            drugs: self.drugs.clone(),
            medical_communities: self.medical_communities.clone(),
            ..Claims::default()
        };
        let mut batches = Ok(Vec::new());
        // One task a column: each sweep writes its own vector.
        rayon::scope(|s| {
            macro_rules! place {
                ($($column:ident),*) => {$(
                    let column = &mut part.$column;
                    let values = &self.$column;
                    s.spawn(move |_| *column = placed(values, sweep));
                )*};
            }
            row_columns!(place);
            let batches = &mut batches;
            s.spawn(move |_| *batches = self.swept_batches(sweep));
        });
        part.batches = batches?;
        Ok(part)
    }

    /// The rejected rows' details of the rows of `sweep` ([`sweep`]), by their new place. The
    /// details are few beside the rows, so each is found in the sweep (ascending by row) rather
    /// than every row looked up among them.
    fn details_at(&self, sweep: &[u64]) -> HashMap<usize, String> {
        self.reject_detail
            .iter()
            .filter_map(|(&row, text)| {
                let at = sweep
                    .binary_search_by_key(&(row as u64), |&entry| entry >> 32)
                    .ok()?;
                Some(((sweep[at] & PLACE) as usize, text.clone()))
            })
            .collect()
    }

    /// The text columns and sources of the rows of `sweep` ([`sweep`]), in batches of
    /// [`GATHERED_BATCH_ROWS`] in their new order: copied out in input order first (a forward
    /// read of the batches), then taken into the new order from that copy alone.
    fn swept_batches(&self, sweep: &[u64]) -> Result<Vec<ClaimBatch>> {
        let at = self.locate_rows(sweep.iter().map(|&e| (e >> 32) as usize));
        let swept = |pick: fn(&ClaimBatch) -> &dyn Array| -> Result<ArrayRef> {
            let arrays: Vec<&dyn Array> = self.batches.iter().map(pick).collect();
            arrow::compute::interleave(&arrays, &at)
                .map_err(|e| crate::error::Error::arrow("claim key columns", e))
        };
        let (claim_ids, reversed) = rayon::join(
            || swept(|b| &b.claim_id),
            || swept(|b| &b.reverses_claim_id),
        );
        let (claim_ids, reversed) = (claim_ids?, reversed?);
        let sources: Vec<(usize, u64)> = at.iter().map(|&a| self.source_at(a)).collect();
        drop(at);
        // Where each place of the part is in the sweep: its row of the swept copy.
        let mut swept_at = vec![(0usize, 0usize); sweep.len()];
        for (j, &entry) in sweep.iter().enumerate() {
            swept_at[(entry & PLACE) as usize] = (0, j);
        }
        ordered_batches(&[&*claim_ids], &[&*reversed], &swept_at, |place| {
            sources[swept_at[place].1]
        })
    }

    /// Column `pick` of the batches at `at` ((batch, row) pairs from [`Claims::locate_index`]):
    /// slices of the batches joined where the rows run consecutively in them — as they do once
    /// the claims are in output order, broken only where a row without every key is left out
    /// of a file — else gathered value by value across batches.
    pub fn key_column(
        &self,
        at: &[(usize, usize)],
        pick: fn(&ClaimBatch) -> &dyn Array,
    ) -> Result<ArrayRef> {
        let error = |e| crate::error::Error::arrow("claim key columns", e);
        let mut runs: Vec<ArrayRef> = Vec::new();
        let mut k = 0;
        while k < at.len() && runs.len() < (at.len() / MIN_RUN_ROWS).max(1) {
            let (b, first) = at[k];
            let len = at[k..]
                .iter()
                .enumerate()
                .take_while(|&(j, &a)| a == (b, first + j))
                .count();
            runs.push(pick(&self.batches[b]).slice(first, len));
            k += len;
        }
        if k < at.len() || runs.is_empty() {
            let arrays: Vec<&dyn Array> = self.batches.iter().map(pick).collect();
            arrow::compute::interleave(&arrays, at).map_err(error)
        } else if runs.len() == 1 {
            Ok(runs.swap_remove(0))
        } else {
            let runs: Vec<&dyn Array> = runs.iter().map(|r| r.as_ref()).collect();
            arrow::compute::concat(&runs).map_err(error)
        }
    }

    /// The input row number of each source file's first row (files in order).
    pub fn file_starts(&self) -> Vec<u64> {
        let mut start = 0;
        self.sources
            .iter()
            .map(|f| {
                let first = start;
                start += f.rows;
                first
            })
            .collect()
    }

    fn reserve(&mut self, n: usize) {
        macro_rules! reserve {
            ($($column:ident),*) => {$(
                self.$column.reserve_exact(n);
            )*};
        }
        row_columns!(reserve);
    }

    /// Rejects every repeat of a claim id: a later row with the id of an earlier row, or of a
    /// claim an earlier run settled (`known`, from the state; see [`find_repeats`]).
    pub fn reject_duplicate_ids(&mut self, known: &[&str]) {
        let repeats = find_repeats(
            self.len(),
            |row| {
                self.claim_id(row).map(|id| Occurrence {
                    id,
                    rejected: self.rejected[row].is_some(),
                    settled_at: self.settled_at[row],
                    input_row: row as u64,
                })
            },
            known,
        );
        for row in repeats {
            let row = row as usize;
            if self.rejected[row].is_none() {
                self.rejected[row] = Some(Reason::DuplicateClaimId);
            }
        }
    }
}

/// Appends one column of every converted batch to `out`, in order.
fn copy<T: Copy>(out: &mut Vec<T>, converted: &[Converted], column: impl Fn(&Converted) -> &[T]) {
    for c in converted {
        out.extend_from_slice(column(c));
    }
}

/// Claim batches of [`GATHERED_BATCH_ROWS`] rows in a new order: row `i` is row `at[i].1` of
/// array `at[i].0` of `claim_ids` and of `reversed`, and was read from `source(i)` (file, row).
fn ordered_batches(
    claim_ids: &[&dyn Array],
    reversed: &[&dyn Array],
    at: &[(usize, usize)],
    source: impl Fn(usize) -> (usize, u64) + Sync,
) -> Result<Vec<ClaimBatch>> {
    let chunks: Vec<&[(usize, usize)]> = at.chunks(GATHERED_BATCH_ROWS).collect();
    chunks
        .par_iter()
        .enumerate()
        .map(|(k, chunk)| {
            let take = |arrays: &[&dyn Array]| -> Result<StringArray> {
                let taken = arrow::compute::interleave(arrays, chunk)
                    .map_err(|e| crate::error::Error::arrow("claim key columns", e))?;
                Ok(taken.as_string::<i32>().clone())
            };
            let offset = k * GATHERED_BATCH_ROWS;
            let sources: Vec<(usize, u64)> = (offset..offset + chunk.len()).map(&source).collect();
            Ok(ClaimBatch {
                offset,
                file: 0,
                file_row: 0,
                file_rows: Some(sources.iter().map(|s| s.1).collect()),
                files: Some(sources.iter().map(|s| s.0 as u32).collect()),
                claim_id: take(claim_ids)?,
                reverses_claim_id: take(reversed)?,
            })
        })
        .collect()
}

/// `values[rows[i]]` for each `i`.
fn gathered<T: Copy + Send + Sync>(values: &[T], rows: &[u32]) -> Vec<T> {
    rows.par_iter().map(|&r| values[r as usize]).collect()
}

/// `rows` (a new order of some rows) as `(row << 32) | place` entries, ascending by row: the
/// order [`Claims::select`] and [`Claims::gather`] read the old rows in.
fn sweep(rows: &[u32]) -> Vec<u64> {
    let mut sweep: Vec<u64> = rows
        .iter()
        .enumerate()
        .map(|(place, &row)| (u64::from(row) << 32) | place as u64)
        .collect();
    sweep.par_sort_unstable();
    sweep
}

/// [`sweep`] of `rows` that are a permutation of `0..rows.len()`: each entry goes straight to
/// its row's index, with no sort.
fn permutation_sweep(rows: &[u32]) -> Vec<u64> {
    let mut sweep = vec![u64::MAX; rows.len()];
    for (place, &row) in rows.iter().enumerate() {
        sweep[row as usize] = (u64::from(row) << 32) | place as u64;
    }
    debug_assert!(sweep.iter().all(|&e| e != u64::MAX), "a permutation");
    sweep
}

/// The place bits of a [`sweep`] entry.
const PLACE: u64 = u32::MAX as u64;

/// The values of a part: `out[place] = values[row]` for each entry of `sweep` ([`sweep`]), which
/// places each row once.
fn placed<T: Copy>(values: &[T], sweep: &[u64]) -> Vec<T> {
    let Some(&first) = values.first() else {
        return Vec::new();
    };
    let mut out = vec![first; sweep.len()];
    for &entry in sweep {
        out[(entry & PLACE) as usize] = values[(entry >> 32) as usize];
    }
    out
}

fn code_text(list: &[String], code: u32) -> Option<&str> {
    (code != NO_CODE).then(|| list[code as usize].as_str())
}

/// Rows per batch of claims put in output order.
const GATHERED_BATCH_ROWS: usize = 64 * 1024;

/// Rows a run of consecutive rows holds on average for [`Claims::key_column`] to join slices
/// rather than gather value by value.
const MIN_RUN_ROWS: usize = 64;

/// A claims batch to build [`Claims`] from.
pub struct InputBatch {
    /// Index of the source file.
    pub file: usize,
    /// Row number of the batch's first row in its file (when its rows are consecutive).
    pub first_row: u64,
    pub batch: RecordBatch,
}

/// One row's claim id with what decides which copy of an id is the original.
pub struct Occurrence<'a> {
    pub id: &'a str,
    /// Rejected at ingest for another reason.
    pub rejected: bool,
    pub settled_at: Millis,
    /// Row number across the whole input (files in order).
    pub input_row: u64,
}

/// The input rows that repeat a claim id among `occurrence(0..len)` (`None`: no id) and the
/// ids `known` of claims earlier runs settled: within one id, the earlier run's claim is the
/// original, else the valid row settled first — by settlement time, then input order — so a split
/// run and a whole run agree on which row is the repeat. Sorting 64-bit hashes finds candidates
/// without a global hash table; equal hashes are confirmed on the strings. Returned sorted.
pub fn find_repeats<'a>(
    len: usize,
    occurrence: impl Fn(usize) -> Option<Occurrence<'a>> + Sync,
    known: &[&str],
) -> Vec<u64> {
    // One word a claim id: the hash's top bits, whether the id is a known one, and the row (or
    // the known id's index). Equal tops make a group of candidates, confirmed on the strings.
    const EARLIER: u64 = 1 << 32;
    const INDEX: u64 = u32::MAX as u64;
    const NO_ID: u64 = u64::MAX;
    let key = |id: &str, tag: u64| (claim_id_hash(id) & !(EARLIER | INDEX)) | tag;
    let mut keys: Vec<u64> = (0..len)
        .into_par_iter()
        .map(|i| occurrence(i).map_or(NO_ID, |o| key(o.id, i as u64)))
        .collect();
    keys.retain(|&k| k != NO_ID);
    keys.par_extend(
        known
            .par_iter()
            .enumerate()
            .map(|(i, id)| key(id, EARLIER | i as u64)),
    );
    let keys = sort_by_hash(keys);
    let of = |key: u64| occurrence((key & INDEX) as usize).expect("a row with an id");
    let text = |key: u64| -> &str {
        if key & EARLIER != 0 {
            known[(key & INDEX) as usize]
        } else {
            of(key).id
        }
    };
    let top = |key: u64| key >> 33;
    let mut repeats = Vec::new();
    let mut start = 0;
    while start < keys.len() {
        let mut end = start + 1;
        while end < keys.len() && top(keys[end]) == top(keys[start]) {
            end += 1;
        }
        if end - start > 1 {
            let mut group: Vec<u64> = keys[start..end].to_vec();
            group.sort_by_key(|&k| {
                if k & EARLIER != 0 {
                    (false, false, i64::MIN, k & INDEX)
                } else {
                    let o = of(k);
                    (true, o.rejected, o.settled_at, o.input_row)
                }
            });
            // Within one text, every occurrence after the first (in the order above) repeats
            // it: a stable sort by text keeps that order, whatever the number of repeats.
            group.sort_by(|&a, &b| text(a).cmp(text(b)));
            for j in 1..group.len() {
                let key = group[j];
                if key & EARLIER == 0 && text(group[j - 1]) == text(key) {
                    repeats.push(of(key).input_row);
                }
            }
        }
        start = end;
    }
    repeats.sort_unstable();
    repeats
}

/// `keys` sorted: a counting sort on the top bits (uniform: they are a hash's) into cache-sized
/// buckets, each then sorted on its own, in parallel; faster than a parallel comparison sort
/// of the whole array.
fn sort_by_hash(keys: Vec<u64>) -> Vec<u64> {
    const BITS: u32 = 12;
    let bucket = |key: u64| (key >> (64 - BITS)) as usize;
    let mut starts = vec![0usize; (1 << BITS) + 1];
    for &key in &keys {
        starts[bucket(key) + 1] += 1;
    }
    for b in 0..1 << BITS {
        starts[b + 1] += starts[b];
    }
    let mut sorted = vec![0u64; keys.len()];
    let mut next = starts.clone();
    for key in keys {
        let b = bucket(key);
        sorted[next[b]] = key;
        next[b] += 1;
    }
    let buckets = super::cut_mut(&mut sorted, starts.windows(2).map(|w| w[1] - w[0]));
    buckets.into_par_iter().for_each(|b| b.sort_unstable());
    sorted
}

/// The 64-bit hash that finds repeated claim ids: ingest's [`super::FastHash`] (fixed keys, so
/// the same ids hash the same way on every run and thread).
pub fn claim_id_hash(id: &str) -> u64 {
    super::FastHash.hash_one(id)
}

fn convert(
    file: usize,
    file_row: u64,
    batch: &RecordBatch,
    persons: &PersonIndex,
) -> Result<Converted> {
    let n = batch.num_rows();
    let text = |i: usize| batch.column(i).as_string::<i32>().clone();
    let claim_id = text(0);
    let person_id = text(1);
    // Low-cardinality text arrives dictionary-encoded ([`Code`]): interned a distinct value at
    // a time, never materialised row by row.
    let code = |i: usize| Texts::of(batch.column(i));
    let region = code(2);
    let settled = batch.column(3).as_primitive::<TimestampMillisecondType>();
    let service = batch.column(4).as_primitive::<Date32Type>();
    let institution_id = code(5);
    let level_text = code(6);
    let prescriber_text = code(7);
    let visit_text = code(8);
    let diagnosis = code(9);
    let days = Days::of(batch.column(13));
    let reverses = text(14);
    let total = Money::of(batch.column(10));
    let in_scope = Money::of(batch.column(11));
    let drug = code(12);
    let referral_text = code(15);
    let community = code(16);

    let mut c = Converted {
        batch: ClaimBatch {
            offset: 0,
            file,
            file_row,
            files: None,
            file_rows: None,
            claim_id: claim_id.clone(),
            reverses_claim_id: reverses.clone(),
        },
        person: Vec::with_capacity(n),
        unseen_persons: Vec::new(),
        region: Local::build(&region),
        settled_at: Vec::with_capacity(n),
        settled_at_null: Vec::with_capacity(n),
        service_day: Vec::with_capacity(n),
        service_date_null: Vec::with_capacity(n),
        level: Vec::with_capacity(n),
        level_text: Local::build(&level_text),
        prescriber: Vec::with_capacity(n),
        visit: Vec::with_capacity(n),
        diagnosis: Local::build(&diagnosis),
        institution: Local::build(&institution_id),
        drug: Local::build(&drug),
        days_supply: Vec::with_capacity(n),
        total_fen: Vec::with_capacity(n),
        in_scope_fen: Vec::with_capacity(n),
        is_reversal: Vec::with_capacity(n),
        referral: Vec::with_capacity(n),
        medical_community: Local::build(&community),
        rejected: Vec::with_capacity(n),
        detail: Vec::new(),
    };
    let ids = [
        ("claim_id", Texts::Plain(&claim_id)),
        ("person_id", Texts::Plain(&person_id)),
        ("region", region),
        ("institution_id", institution_id),
        ("diagnosis", diagnosis),
        ("drug_code", drug),
        ("reverses_claim_id", Texts::Plain(&reverses)),
        ("medical_community_id", community),
    ];
    let ids_clean = ids.iter().all(|(_, a)| a.clean());
    let known_persons = persons.get_many(&person_id);
    for (i, known_person) in known_persons.into_iter().enumerate() {
        let mut reject: Option<(Reason, String)> = None;
        let mut fail = |reason: Reason, detail: String| {
            if reject.is_none() {
                reject = Some((reason, detail));
            }
        };
        let required = [
            (0usize, "claim_id"),
            (1, "person_id"),
            (2, "region"),
            (3, "settled_at"),
            (5, "institution_id"),
            (6, "institution_level"),
            (9, "diagnosis"),
        ];
        if let Some(name) = first_null(batch, i, &required) {
            fail(Reason::NullKey, format!("{name} is null"));
        }
        if !ids_clean {
            for (column, array) in &ids {
                if let Some(problem) = array
                    .is_valid(i)
                    .then(|| limits::id_problem(column, array.value(i)))
                    .flatten()
                {
                    fail(Reason::InvalidId, problem);
                }
            }
        }
        let person = if person_id.is_null(i) {
            NO_PERSON
        } else {
            match known_person {
                Some(p) => p,
                None => {
                    c.unseen_persons.push((i, person_id.value(i).to_string()));
                    NO_PERSON
                }
            }
        };
        let settled_at = if settled.is_null(i) {
            0
        } else {
            settled.value(i)
        };
        let service_day = if service.is_null(i) {
            day_of(settled_at)
        } else {
            service.value(i)
        };
        if settled.is_valid(i) && !limits::time_in_range(settled_at) {
            fail(
                Reason::TimeOutOfRange,
                format!("settled_at on {}", format_date(day_of(settled_at))),
            );
        } else if service.is_valid(i) && !limits::day_in_range(service_day) {
            fail(
                Reason::TimeOutOfRange,
                format!("service_date = {}", format_date(service_day)),
            );
        }
        let level = if level_text.is_null(i) {
            Level::Primary
        } else {
            Level::parse(level_text.value(i)).unwrap_or_else(|| {
                fail(
                    Reason::UnknownLevel,
                    format!("institution_level = {:?}", level_text.value(i)),
                );
                Level::Primary
            })
        };
        let prescriber = if prescriber_text.is_null(i) {
            None
        } else {
            match Level::parse(prescriber_text.value(i)) {
                Some(l) if l != Level::Pharmacy => Some(l),
                _ => {
                    fail(
                        Reason::UnknownLevel,
                        format!("prescriber_level = {:?}", prescriber_text.value(i)),
                    );
                    None
                }
            }
        };
        let visit = if visit_text.is_null(i) {
            if level == Level::Pharmacy {
                VisitType::Pharmacy
            } else {
                VisitType::Outpatient
            }
        } else {
            VisitType::parse(visit_text.value(i)).unwrap_or_else(|| {
                fail(
                    Reason::UnknownVisitType,
                    format!("visit_type = {:?}", visit_text.value(i)),
                );
                VisitType::Outpatient
            })
        };
        let referral = if referral_text.is_null(i) {
            None
        } else {
            Referral::parse(referral_text.value(i)).or_else(|| {
                fail(
                    Reason::UnknownReferral,
                    format!("referral = {:?}", referral_text.value(i)),
                );
                None
            })
        };
        let is_reversal = reverses.is_valid(i);
        let total_fen = total.fen(i, "total_amount", &mut fail);
        let in_scope_fen = in_scope.fen(i, "in_scope_amount", &mut fail);
        if !is_reversal {
            if total_fen < 0 || in_scope_fen < 0 {
                fail(
                    Reason::NegativeAmount,
                    format!("total_amount = {total_fen} fen, in_scope_amount = {in_scope_fen} fen"),
                );
            } else if in_scope_fen > total_fen {
                fail(
                    Reason::InScopeExceedsTotal,
                    format!("in_scope_amount {in_scope_fen} fen > total_amount {total_fen} fen"),
                );
            }
        }
        c.person.push(person);
        c.settled_at.push(settled_at);
        c.settled_at_null.push(settled.is_null(i));
        c.service_day.push(service_day);
        c.service_date_null.push(service.is_null(i));
        c.level.push(level);
        c.prescriber.push(prescriber);
        c.visit.push(visit);
        let days_supply = days.is_valid(i).then(|| days.value(i));
        let days_supply = match days_supply {
            Some(d) if !(0..=limits::MAX_DAYS_SUPPLY as i64).contains(&d) => {
                fail(
                    Reason::DaysSupplyOutOfRange,
                    format!("days_supply = {d} (0 to {})", limits::MAX_DAYS_SUPPLY),
                );
                // Kept as read for rejected.parquet where the contract's Int32 holds it.
                i32::try_from(d).ok()
            }
            d => d.map(|d| d as i32),
        };
        c.days_supply.push(days_supply);
        c.total_fen.push(total_fen);
        c.in_scope_fen.push(in_scope_fen);
        c.is_reversal.push(is_reversal);
        c.referral.push(referral);
        match reject {
            Some((reason, detail)) => {
                c.rejected.push(Some(reason));
                c.detail.push((i, detail));
            }
            None => c.rejected.push(None),
        }
    }
    Ok(c)
}

/// `days_supply` as read: the contract's Int32, or any other integer width as Int64.
enum Days<'a> {
    Narrow(&'a arrow::array::Int32Array),
    Wide(&'a arrow::array::Int64Array),
}

impl<'a> Days<'a> {
    fn of(array: &'a ArrayRef) -> Days<'a> {
        match array.data_type() {
            DataType::Int32 => Days::Narrow(array.as_primitive()),
            _ => Days::Wide(array.as_primitive()),
        }
    }

    fn is_valid(&self, i: usize) -> bool {
        match self {
            Days::Narrow(a) => a.is_valid(i),
            Days::Wide(a) => a.is_valid(i),
        }
    }

    fn value(&self, i: usize) -> i64 {
        match self {
            Days::Narrow(a) => a.value(i) as i64,
            Days::Wide(a) => a.value(i),
        }
    }
}

/// A money column as read: a decimal of any scale, or text.
enum Money<'a> {
    Decimal(&'a arrow::array::PrimitiveArray<Decimal128Type>, i8),
    Text(&'a StringArray),
}

/// Largest magnitude of the contract's `Decimal128(18, 2)`, in fen.
const MAX_FEN: i128 = 999_999_999_999_999_999;

impl<'a> Money<'a> {
    fn of(array: &'a ArrayRef) -> Money<'a> {
        match array.data_type() {
            DataType::Decimal128(_, scale) => Money::Decimal(array.as_primitive(), *scale),
            _ => Money::Text(array.as_string::<i32>()),
        }
    }

    /// The amount in fen; 0 with a rejection for a null or unreadable value.
    fn fen(&self, i: usize, column: &str, fail: &mut impl FnMut(Reason, String)) -> i64 {
        let parsed: Option<Option<i128>> = match self {
            Money::Decimal(a, scale) => a.is_valid(i).then(|| rescale(a.value(i), *scale)),
            Money::Text(a) => a.is_valid(i).then(|| {
                crate::money::parse_scaled(a.value(i), 2)
                    .ok()
                    .map(|v| v as i128)
            }),
        };
        match parsed {
            None => {
                fail(Reason::NullAmount, format!("{column} is null"));
                0
            }
            Some(Some(v)) if v.unsigned_abs() <= limits::MAX_CLAIM_FEN as u128 => v as i64,
            // Kept as read, for rejected.parquet: the run's sums are taken in i128.
            Some(Some(v)) if v.unsigned_abs() <= MAX_FEN as u128 => {
                fail(
                    Reason::AmountOutOfRange,
                    format!(
                        "{column} = {} yuan (limit {})",
                        Yuan(v),
                        Yuan(limits::MAX_CLAIM_FEN as i128)
                    ),
                );
                v as i64
            }
            Some(_) => {
                let raw = match self {
                    Money::Decimal(a, scale) => format!(
                        "{} at scale {scale}: not a whole number of fen, or too large",
                        a.value(i)
                    ),
                    Money::Text(a) => format!("{:?}", a.value(i)),
                };
                fail(Reason::UnreadableAmount, format!("{column} = {raw}"));
                0
            }
        }
    }
}

/// A decimal mantissa at `scale` in fen, if exact.
fn rescale(value: i128, scale: i8) -> Option<i128> {
    match scale {
        2 => Some(value),
        s if s < 2 => value.checked_mul(10i128.checked_pow((2 - s) as u32)?),
        s => {
            let div = 10i128.checked_pow((s - 2) as u32)?;
            (value % div == 0).then(|| value / div)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permutations_sweep_is_the_sorted_sweep() {
        let rows = [3u32, 0, 4, 1, 2];
        assert_eq!(permutation_sweep(&rows), sweep(&rows));
        // Row 0 is at place 1, row 1 at place 3, …
        assert_eq!(
            permutation_sweep(&rows),
            [1, 1 << 32 | 3, 2 << 32 | 4, 3 << 32, 4 << 32 | 2]
        );
    }

    #[test]
    fn texts_placed_straight_into_a_permutation_are_the_texts_the_sweep_takes() {
        let batch = |offset: usize, ids: &[Option<&str>], reversed: &[Option<&str>]| ClaimBatch {
            offset,
            file: 1,
            file_row: 100 + offset as u64,
            file_rows: None,
            files: None,
            claim_id: StringArray::from(ids.to_vec()),
            reverses_claim_id: StringArray::from(reversed.to_vec()),
        };
        let mut spilled = batch(
            3,
            &[Some("C3"), None, Some("C5")],
            &[None, None, Some("C0")],
        );
        // A batch read back from a spill: its rows' files and file rows of their own.
        spilled.file_rows = Some(UInt64Array::from(vec![7, 9, 11]));
        spilled.files = Some(vec![0, 2, 0]);
        let claims = Claims {
            batches: vec![
                batch(
                    0,
                    &[Some("C0"), Some("C1"), Some("C2")],
                    &[None, Some("C9"), None],
                ),
                spilled,
                batch(6, &[Some("C6")], &[None]),
            ],
            ..Claims::default()
        };
        let sweep = permutation_sweep(&[5, 0, 6, 3, 1, 4, 2]);
        let placed = claims.placed_batches(&sweep).unwrap();
        let swept = claims.swept_batches(&sweep).unwrap();
        assert_eq!(placed.len(), swept.len());
        for (p, s) in placed.iter().zip(&swept) {
            assert_eq!(p.offset, s.offset);
            assert_eq!(p.claim_id, s.claim_id);
            assert_eq!(p.reverses_claim_id, s.reverses_claim_id);
            assert_eq!(p.file_rows, s.file_rows);
            assert_eq!(p.files, s.files);
        }
        let first = &placed[0];
        assert_eq!(first.claim_id.value(0), "C5");
        assert_eq!(first.reverses_claim_id.value(0), "C0");
        assert!(first.claim_id.is_null(5), "row 4's null id");
        assert_eq!(first.file_rows.as_ref().unwrap().values()[..2], [11, 100]);
        assert_eq!(first.files.as_deref().unwrap()[..3], [0, 1, 1]);
    }

    #[test]
    fn rejection_details_move_with_their_rows_and_stay_behind_when_not_selected() {
        let claims = Claims {
            reject_detail: HashMap::from([(0, "first".into()), (3, "fourth".into())]),
            ..Claims::default()
        };
        // All five rows in a new order: row 0 goes to place 1, row 3 to place 0.
        let moved = claims.details_at(&permutation_sweep(&[3, 0, 4, 1, 2]));
        assert_eq!(
            moved,
            HashMap::from([(1, "first".into()), (0, "fourth".into())])
        );
        // Rows 4 and 3 selected, in that order: row 0's detail is not the part's.
        let part = claims.details_at(&sweep(&[4, 3]));
        assert_eq!(part, HashMap::from([(1, "fourth".into())]));
    }
    #[test]
    fn rows_are_located_in_one_walk_as_one_search_each_would() {
        let batch = |offset: usize, len: usize| ClaimBatch {
            offset,
            file: 0,
            file_row: 0,
            file_rows: None,
            files: None,
            claim_id: StringArray::from(vec![Some("C"); len]),
            reverses_claim_id: StringArray::from(vec![None::<&str>; len]),
        };
        // Batches of 3, 0, 4 and 3 rows.
        let claims = Claims {
            batches: vec![batch(0, 3), batch(3, 0), batch(3, 4), batch(7, 3)],
            ..Claims::default()
        };
        let rows = [0, 2, 3, 6, 7, 9, 1, 8, 4, 4];
        let searched: Vec<(usize, usize)> = rows.iter().map(|&r| claims.locate_index(r)).collect();
        assert_eq!(claims.locate_rows(rows), searched);
        assert_eq!(searched[..4], [(0, 0), (0, 2), (2, 0), (2, 3)]);
        assert_eq!(searched[6..], [(0, 1), (3, 1), (2, 1), (2, 1)]);
    }

    #[test]
    fn key_columns_are_the_ids_at_their_rows_joined_from_runs_or_gathered() {
        let batch = |offset: usize, ids: Vec<String>| ClaimBatch {
            offset,
            file: 0,
            file_row: 0,
            file_rows: None,
            files: None,
            reverses_claim_id: StringArray::from(vec![None::<&str>; ids.len()]),
            claim_id: StringArray::from(ids),
        };
        let ids = |from: usize, n: usize| (from..from + n).map(|i| format!("C{i}")).collect();
        let claims = Claims {
            batches: vec![batch(0, ids(0, 300)), batch(300, ids(300, 200))],
            ..Claims::default()
        };
        let column = |rows: &[usize]| {
            let at = claims.locate_rows(rows.iter().copied());
            let column = claims.key_column(&at, |b| &b.claim_id).unwrap();
            let texts = column.as_string::<i32>();
            (0..texts.len())
                .map(|i| texts.value(i).to_string())
                .collect::<Vec<_>>()
        };
        let expected = |rows: &[usize]| rows.iter().map(|r| format!("C{r}")).collect::<Vec<_>>();
        // One run in one batch; runs broken by left-out rows and by a batch's end; rows out of
        // order, too many runs to join.
        let one: Vec<usize> = (10..250).collect();
        let broken: Vec<usize> = (0..500)
            .filter(|r| ![7, 123, 124, 401].contains(r))
            .collect();
        let shuffled: Vec<usize> = (0..200).map(|i| (i * 37) % 500).collect();
        for rows in [&one, &broken, &shuffled, &vec![42], &vec![]] {
            assert_eq!(column(rows), expected(rows));
        }
    }

    #[test]
    fn keys_sorted_by_hash_through_buckets_equal_a_plain_sort() {
        // Hashes over the whole range (top bits pick the bucket), repeats included.
        let keys: Vec<u64> = (0..50_000u64)
            .map(|i| claim_id_hash(&format!("C{}", i % 40_000)))
            .chain([0, u64::MAX, 0])
            .collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        assert_eq!(sort_by_hash(keys), expected);
        assert!(sort_by_hash(Vec::new()).is_empty());
    }

    #[test]
    fn ids_whose_hashes_share_their_top_bits_are_told_apart_by_their_text() {
        // 31 bits of hash a claim id: 300,000 distinct ids hold about 10 pairs of equal tops,
        // none of them a repeat; the planted copies are.
        let ids: Vec<String> = (0..300_000).map(|i| format!("C{i:08}")).collect();
        let tops: std::collections::HashSet<u64> =
            ids.iter().map(|id| claim_id_hash(id) >> 33).collect();
        assert!(tops.len() < ids.len(), "some ids share their top bits");
        let mut rows: Vec<&str> = ids.iter().map(String::as_str).collect();
        rows.extend(["C00000007", "C00299999"]);
        let occurrence = |i: usize| {
            Some(Occurrence {
                id: rows[i],
                rejected: false,
                settled_at: 0,
                input_row: i as u64,
            })
        };
        assert_eq!(
            find_repeats(rows.len(), occurrence, &[]),
            vec![300_000, 300_001]
        );
    }

    #[test]
    fn a_repeated_id_rejects_every_copy_but_the_first_settled_and_an_earlier_runs_id_all() {
        let ids = ["A", "B", "A", "C", "A", "D"];
        let settled = [30, 10, 20, 10, 40, 10];
        let occurrence = |i: usize| {
            Some(Occurrence {
                id: ids[i],
                rejected: false,
                settled_at: settled[i],
                input_row: i as u64,
            })
        };
        // "A": row 2 settled first, so rows 0 and 4 repeat it; "D" is an earlier run's.
        assert_eq!(find_repeats(ids.len(), occurrence, &["D"]), vec![0, 4, 5]);
        assert!(find_repeats(ids.len(), |_| None, &["A"]).is_empty());
    }
}

/// What a run's state lookups need of its claims, read from the files' key columns alone, so
/// that the state is read while the registry loads ([`state_keys`]).
#[derive(Debug, Default)]
pub struct StateKeys {
    /// The [`crate::state::claim_key`] of every claim id.
    pub claim_keys: Vec<u64>,
    /// The [`crate::state::claim_key`] of every reversal target.
    pub target_keys: Vec<u64>,
    /// The [`crate::partition::person_key`] and [`crate::state::person_check`] of every
    /// person the claims name, once each, sorted (two persons of different files under one key
    /// are found by [`crate::state::read::PersonKeys::new`]).
    pub persons: Vec<(u64, u64)>,
}

/// Reads `person_id`, `claim_id` and `reverses_claim_id` of `files` (a window of row groups at
/// a time) for [`StateKeys`]; the claim keys only when `claim_index` (the state has one). Two
/// persons of the run under one person key (a 64-bit collision) cannot share a state: the run
/// stops, naming the file and row.
pub fn state_keys(files: &[PathBuf], claim_index: bool) -> Result<StateKeys> {
    use crate::error::Error;
    let window = rayon::current_num_threads().max(1);
    let columns = [
        col("person_id", Text, true),
        col("claim_id", Text, true),
        col("reverses_claim_id", Text, true),
    ];
    let mut keys = StateKeys::default();
    for file in files {
        read_windows(file, &columns, window, |batches, first_rows| {
            // (key, batch, row) of each person named, to find each key's first id.
            let mut named: Vec<(u64, u32, u32)> = batches
                .par_iter()
                .enumerate()
                .flat_map_iter(|(b, batch)| {
                    let ids = batch.column(0).as_string::<i32>();
                    (0..ids.len()).filter(|&i| ids.is_valid(i)).map(move |i| {
                        (
                            crate::partition::person_key(ids.value(i)),
                            b as u32,
                            i as u32,
                        )
                    })
                })
                .collect();
            named.par_sort_unstable();
            let id = |&(_, b, i): &(u64, u32, u32)| {
                batches[b as usize]
                    .column(0)
                    .as_string::<i32>()
                    .value(i as usize)
            };
            for pair in named.windows(2) {
                if pair[0].0 == pair[1].0 && id(&pair[0]) != id(&pair[1]) {
                    let (_, b, i) = pair[1];
                    return Err(Error::value(
                        file,
                        "person_id",
                        first_rows[b as usize] + i as u64,
                        "this row's person and another of the run share one person key (a \
                         64-bit collision): one state cannot hold both",
                    ));
                }
            }
            named.dedup_by_key(|n| n.0);
            keys.persons.par_extend(
                named
                    .par_iter()
                    .map(|n| (n.0, crate::state::person_check(id(n)))),
            );
            if claim_index {
                for batch in &batches {
                    crate::state::push_claim_keys(
                        batch.column(1).as_string::<i32>(),
                        batch.column(2).as_string::<i32>(),
                        &mut keys.claim_keys,
                        &mut keys.target_keys,
                    );
                }
            }
            Ok(())
        })?;
    }
    keys.persons.par_sort_unstable();
    keys.persons.dedup();
    Ok(keys)
}
