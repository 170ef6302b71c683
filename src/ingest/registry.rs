//! The person registry snapshot (`--persons`) and chronic-condition registrations
//! (`--registrations`), read into dense per-person tables. Person ids become dense `u32` indices
//! here, once; every later stage works with the index.

use rayon::prelude::*;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Int16Type};

use super::group_by_key;
use super::read::{col, first_null, read_windows, row_count, ColumnKind::*, ColumnSpec};
use crate::domain::{format_date, AssistanceCategory, Coverage, Day, Scheme, Severity};
use crate::error::{Error, Result};
use crate::limits::{self, MAX_REGISTRATIONS_PER_PERSON};
use crate::policy::{Policies, NONE};

/// Dense person ids. Registry persons come first, in file order; persons met only in claims are
/// appended in the order they are first seen, so ids are deterministic.
///
/// The ids' text lives in one arena and the table holds only dense ids: a province's millions
/// of persons cost three allocations, not two per person. The table is the engine's own (open
/// addressing, linear probing, at most 3/4 full), so that a batch of claims can look its
/// persons up with the table slots and id texts of the rows ahead prefetched
/// ([`PersonIndex::get_many`]): with tens of millions of persons every lookup is a few cache
/// misses, which a hash map behind an API cannot overlap.
pub struct PersonIndex {
    /// `tag << 32 | id` (tag: the hash's top 32 bits), or [`EMPTY`]; a power of two long.
    slots: Vec<u64>,
    text: String,
    /// `ends[i]` = end of person `i`'s id in `text` (its start is `ends[i - 1]`, or 0).
    ends: Vec<usize>,
}

/// A free slot (no id is `u32::MAX`: that is [`crate::ingest::claims::NO_PERSON`]).
const EMPTY: u64 = u64::MAX;

/// Rows ahead of the one being looked up whose table slot is prefetched; half as far ahead, the
/// slot is read and its id's arena offsets prefetched; a quarter, the id's text.
const AHEAD: usize = 16;

/// Rows ahead of the one at hand whose person's attributes a walk prefetches
/// ([`Registry::prefetch_person`]).
pub const PERSON_PREFETCH_ROWS: usize = 16;

impl Default for PersonIndex {
    fn default() -> Self {
        PersonIndex::with_capacity(0)
    }
}

impl std::fmt::Debug for PersonIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonIndex")
            .field("persons", &self.len())
            .finish_non_exhaustive()
    }
}

/// Person `i`'s id in the arena (`ends[i]` is its end; its start the previous end).
fn arena_id<'a>(text: &'a str, ends: &[usize], i: u32) -> &'a str {
    &text[arena_start(ends, i as usize)..ends[i as usize]]
}

/// Where person `i`'s id starts in the arena.
fn arena_start(ends: &[usize], i: usize) -> usize {
    match i {
        0 => 0,
        i => ends[i - 1],
    }
}

fn hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    super::FastHash.hash_one(id)
}

fn tag(hash: u64) -> u64 {
    hash >> 32
}

/// Asks the CPU to start loading `p`'s cache line; a hint only.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no state the program can see, whatever the
    // address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Table slots for `persons` persons: a power of two, at most 3/4 full.
fn slots_for(persons: usize) -> usize {
    (persons * 4 / 3 + 1).next_power_of_two().max(16)
}

impl PersonIndex {
    pub fn with_capacity(persons: usize) -> PersonIndex {
        PersonIndex {
            slots: vec![EMPTY; slots_for(persons)],
            text: String::with_capacity(persons * 20),
            ends: Vec::with_capacity(persons),
        }
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.find(hash(id), id)
    }

    /// [`Self::get`] of every row of `ids` (`None` for a null), the rows ahead prefetched.
    pub fn get_many(&self, ids: &arrow::array::StringArray) -> Vec<Option<u32>> {
        let n = ids.len();
        let hashes: Vec<u64> = (0..n)
            .map(|i| {
                if ids.is_valid(i) {
                    hash(ids.value(i))
                } else {
                    0
                }
            })
            .collect();
        let mut found = Vec::with_capacity(n);
        let mask = self.slots.len() - 1;
        // The first slot an id probes, if it is taken by an id with the same tag.
        let candidate = |h: u64| {
            let e = self.slots[h as usize & mask];
            (e != EMPTY && e >> 32 == tag(h)).then_some(e as u32 as usize)
        };
        for i in 0..n {
            if let Some(&h) = hashes.get(i + AHEAD) {
                prefetch(&self.slots[h as usize & mask]);
            }
            if let Some(p) = hashes.get(i + AHEAD / 2).and_then(|&h| candidate(h)) {
                self.prefetch_ends(p);
            }
            if let Some(p) = hashes.get(i + AHEAD / 4).and_then(|&h| candidate(h)) {
                self.prefetch_text(p);
            }
            found.push(if ids.is_valid(i) {
                self.find(hashes[i], ids.value(i))
            } else {
                None
            });
        }
        found
    }

    /// [`Self::id`] of each of `persons` (`None` for [`crate::ingest::claims::NO_PERSON`]) as a
    /// text array ([`Self::each_name`]).
    pub fn names(&self, persons: &[u32]) -> arrow::array::StringArray {
        let average = self.text.len() / self.ends.len().max(1);
        let mut names =
            arrow::array::StringBuilder::with_capacity(persons.len(), persons.len() * average);
        self.each_name(persons, |name| names.append_option(name));
        names.finish()
    }

    /// Calls `f` with [`Self::id`] of each of `persons` in order (`None` for
    /// [`crate::ingest::claims::NO_PERSON`]), the persons ahead prefetched: persons in key order
    /// (an output's) or in claim order visit the arena, numbered in input order, at random, and
    /// each person's offsets and text would otherwise be a wait on memory.
    pub fn each_name<'a>(&'a self, persons: &[u32], mut f: impl FnMut(Option<&'a str>)) {
        let absent = crate::ingest::claims::NO_PERSON;
        for (i, &p) in persons.iter().enumerate() {
            self.prefetch_ahead(persons, i);
            f((p != absent).then(|| self.id(p)));
        }
    }

    /// Brings into cache what [`Self::id`] of the persons ahead of `persons[i]` will read: the
    /// arena offsets of the one [`AHEAD`] rows on, the text of the one half as far (whose
    /// offsets were fetched earlier). A walk calling [`Self::id`] for each of `persons` in turn
    /// calls this at each.
    #[inline]
    pub fn prefetch_ahead(&self, persons: &[u32], i: usize) {
        let absent = crate::ingest::claims::NO_PERSON;
        if let Some(&q) = persons.get(i + AHEAD).filter(|&&q| q != absent) {
            self.prefetch_ends(q as usize);
        }
        if let Some(&q) = persons.get(i + AHEAD / 2).filter(|&&q| q != absent) {
            self.prefetch_text(q as usize);
        }
    }

    /// Brings person `p`'s offsets in the arena into cache (read before its text is found).
    #[inline]
    fn prefetch_ends(&self, p: usize) {
        prefetch(&self.ends[p.saturating_sub(1)]);
    }

    /// Brings the start of person `p`'s id text into cache.
    #[inline]
    fn prefetch_text(&self, p: usize) {
        prefetch(self.text.as_ptr().wrapping_add(arena_start(&self.ends, p)));
    }

    /// The dense id of `id`, adding it if new.
    pub fn intern(&mut self, id: &str) -> (u32, bool) {
        self.intern_hashed(hash(id), id)
    }

    /// [`Self::intern`] of every row of `ids` (none null), in order, the slots of the rows
    /// ahead prefetched: a registry's ids are nearly all new, and each would otherwise wait on
    /// a cache miss in the table before the next could start.
    pub fn intern_all(&mut self, ids: &arrow::array::StringArray) -> Vec<(u32, bool)> {
        let hashes: Vec<u64> = (0..ids.len()).map(|i| hash(ids.value(i))).collect();
        let mut interned = Vec::with_capacity(ids.len());
        for (i, &h) in hashes.iter().enumerate() {
            if let Some(&ahead) = hashes.get(i + AHEAD) {
                prefetch(&self.slots[ahead as usize & (self.slots.len() - 1)]);
            }
            interned.push(self.intern_hashed(h, ids.value(i)));
        }
        interned
    }

    fn intern_hashed(&mut self, h: u64, id: &str) -> (u32, bool) {
        if let Some(i) = self.find(h, id) {
            return (i, false);
        }
        if slots_for(self.ends.len() + 1) > self.slots.len() {
            self.grow();
        }
        let i = self.ends.len() as u32;
        self.text.push_str(id);
        self.ends.push(self.text.len());
        self.place(h, i);
        (i, true)
    }

    fn find(&self, h: u64, id: &str) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            let e = self.slots[at];
            if e == EMPTY {
                return None;
            }
            if e >> 32 == tag(h) && self.id(e as u32) == id {
                return Some(e as u32);
            }
            at = (at + 1) & mask;
        }
    }

    /// Puts dense id `i` (of hash `h`) in the first free slot of its probe sequence.
    fn place(&mut self, h: u64, i: u32) {
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        while self.slots[at] != EMPTY {
            at = (at + 1) & mask;
        }
        self.slots[at] = tag(h) << 32 | u64::from(i);
    }

    /// Doubles the table and places every id again.
    fn grow(&mut self) {
        self.slots = vec![EMPTY; self.slots.len() * 2];
        for i in 0..self.ends.len() as u32 {
            self.place(hash(self.id(i)), i);
        }
    }

    /// The person id (as read) of dense id `person`.
    pub fn id(&self, person: u32) -> &str {
        arena_id(&self.text, &self.ends, person)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Whether a person can be settled, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonState {
    Valid,
    /// Not in the registry snapshot (met in claims only).
    Unknown,
    /// In the registry with a value the contract does not allow (named in the summary).
    Invalid,
}

/// A person's settlement attributes, compiled from the registry row.
#[derive(Debug, Clone, Copy)]
pub struct Person {
    pub state: PersonState,
    /// Policy region index, or [`NONE`] when no policy file covers the insured region.
    pub region: u16,
    pub coverage: Coverage,
    /// Index into the contribution tiers 100, 80, 60.
    pub tier: u8,
    pub assistance: Option<AssistanceCategory>,
    pub family_doctor: bool,
}

impl Person {
    pub const UNKNOWN: Person = Person {
        state: PersonState::Unknown,
        region: NONE,
        coverage: Coverage::Resident,
        tier: 0,
        assistance: None,
        family_doctor: false,
    };
}

/// A chronic-condition registration (认定备案).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub condition: u16,
    pub severity: Severity,
    /// The person's chosen primary condition; `false` marks the secondary one (Ezhou 4(4)).
    pub primary: bool,
    pub approved_on: Day,
    /// Last day of the registration, inclusive (`Day::MAX` when open).
    pub ended_on: Day,
}

/// One batch's registrations, before they are joined in file order.
#[derive(Default)]
struct BatchRegistrations {
    found: Vec<(u32, Registration)>,
    unknown_person: u64,
    unknown_condition: u64,
}

/// Persons and their registrations, by dense person id.
#[derive(Debug, Default)]
pub struct Registry {
    pub index: PersonIndex,
    pub persons: Vec<Person>,
    /// `registrations[offsets[p]..offsets[p + 1]]` are person `p`'s.
    pub registration_offsets: Vec<u32>,
    pub registrations: Vec<Registration>,
    pub stats: RegistryStats,
}

/// What ingest skipped or could not use, for the summary.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RegistryStats {
    pub persons: u64,
    pub persons_invalid: u64,
    pub persons_without_policy: u64,
    pub registrations: u64,
    pub registrations_unknown_person: u64,
    pub registrations_unknown_condition: u64,
    pub persons_bytes: u64,
    pub registrations_bytes: u64,
}

/// The persons columns of CONTRACT.md, in contract order.
pub const PERSON_COLUMNS: &[ColumnSpec] = &[
    col("person_id", Text, false),
    col("region", Text, false),
    col("scheme", Text, false),
    col("supplementary", Boolean, true),
    col("contribution_tier", Int16, true),
    col("assistance_category", Text, true),
    col("family_doctor_signed", Boolean, true),
];

/// The registrations columns of CONTRACT.md, in contract order.
pub const REGISTRATION_COLUMNS: &[ColumnSpec] = &[
    col("person_id", Text, false),
    col("condition", Text, false),
    col("severity", Text, true),
    col("primary", Boolean, true),
    col("approved_on", Date, false),
    col("ended_on", Date, true),
];

impl Registry {
    /// Reads both files. A null in a required column, an unknown scheme or severity, or a
    /// repeated person stops the run with the file, column and row named: the registry is the
    /// data centre's own master data, so a bad row there is a bad file.
    ///
    /// Both files are read a window of row groups at a time (each window parsed in parallel),
    /// so memory holds the registry and one window of rows, not the files as Arrow arrays.
    pub fn load(persons: &Path, registrations: &Path, policies: &Policies) -> Result<Registry> {
        let mut registry = Registry::default();
        let window = rayon::current_num_threads().max(1);
        let rows = rows_to_reserve(persons)?;
        // Persons met only in claims are few; the table grows if need be.
        registry.index = PersonIndex::with_capacity(rows);
        registry.persons.reserve_exact(rows);
        let (bytes, rows) =
            read_windows(persons, PERSON_COLUMNS, window, |batches, first_rows| {
                // The first bad row in file order is the one reported, whatever the thread count.
                let parsed: Vec<Vec<Person>> = batches
                    .par_iter()
                    .zip(&first_rows)
                    .map(|(batch, &first)| parse_persons(persons, batch, first, policies))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Result<_>>()?;
                // Ids are numbered in file order.
                for ((batch, people), &first) in batches.iter().zip(parsed).zip(&first_rows) {
                    let ids = batch.column(0).as_string::<i32>();
                    let interned = registry.index.intern_all(ids);
                    for (i, person) in people.into_iter().enumerate() {
                        if !interned[i].1 {
                            return Err(Error::value(
                                persons,
                                "person_id",
                                first + i as u64,
                                // Named by row, not by id: no person id in a message. The
                                // run stops at the first repeat, so the earlier row is the
                                // repeated person's dense id.
                                format!("the person id of row {} appears again", interned[i].0),
                            ));
                        }
                        match person.state {
                            PersonState::Invalid => registry.stats.persons_invalid += 1,
                            _ if person.region == NONE => {
                                registry.stats.persons_without_policy += 1
                            }
                            _ => {}
                        }
                        registry.persons.push(person);
                    }
                }
                Ok(())
            })?;
        registry.stats.persons = rows;
        registry.stats.persons_bytes = bytes;

        // The person index is only looked up here, so batches are read in parallel and their
        // registrations joined in file order. Sized from the footer: at a province's tens of
        // millions of registrations, growing by doubling would hold the old and the new vector
        // at once.
        let mut by_person: Vec<(u32, Registration)> =
            Vec::with_capacity(rows_to_reserve(registrations)?);
        let (bytes, rows) = read_windows(
            registrations,
            REGISTRATION_COLUMNS,
            window,
            |batches, first_rows| {
                let read: Vec<BatchRegistrations> = batches
                    .par_iter()
                    .zip(&first_rows)
                    .map(|(batch, &first)| {
                        registry.registrations_in(registrations, batch, first, policies)
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect::<Result<_>>()?;
                for r in read {
                    by_person.extend(r.found);
                    registry.stats.registrations_unknown_person += r.unknown_person;
                    registry.stats.registrations_unknown_condition += r.unknown_condition;
                }
                Ok(())
            },
        )?;
        registry.stats.registrations = rows;
        registry.stats.registrations_bytes = bytes;
        (registry.registration_offsets, registry.registrations) =
            group_registrations(by_person, registry.persons.len());
        let most = registry
            .registration_offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0);
        if most > MAX_REGISTRATIONS_PER_PERSON {
            return Err(Error::schema(
                registrations,
                "person_id",
                format!(
                    "a person holds {most} registrations, past the limit of \
                     {MAX_REGISTRATIONS_PER_PERSON} a person"
                ),
            ));
        }
        Ok(registry)
    }

    /// The registrations of one batch whose first row is file row `first_row`.
    fn registrations_in(
        &self,
        path: &Path,
        batch: &RecordBatch,
        first_row: u64,
        policies: &Policies,
    ) -> Result<BatchRegistrations> {
        let mut out = BatchRegistrations::default();
        let ids = batch.column(0).as_string::<i32>();
        let conditions = batch.column(1).as_string::<i32>();
        let severities = batch.column(2).as_string::<i32>();
        let primary = batch.column(3).as_boolean();
        let approved = batch.column(4).as_primitive::<Date32Type>();
        let ended = batch.column(5).as_primitive::<Date32Type>();
        let persons = self.index.get_many(ids);
        for (i, person) in persons.into_iter().enumerate() {
            let at = |column: &str, reason: String| {
                Error::value(path, column, first_row + i as u64, reason)
            };
            let required = [(0, "person_id"), (1, "condition"), (4, "approved_on")];
            if let Some(name) = first_null(batch, i, &required) {
                return Err(at(name, "null in a required column".into()));
            }
            let severity = if severities.is_null(i) {
                Severity::Normal
            } else {
                Severity::parse(severities.value(i)).ok_or_else(|| {
                    at(
                        "severity",
                        format!("`{}` is not normal or severe", severities.value(i)),
                    )
                })?
            };
            for (column, dates) in [("approved_on", approved), ("ended_on", ended)] {
                if dates.is_valid(i) && !limits::registry_day_in_range(dates.value(i)) {
                    return Err(at(
                        column,
                        format!(
                            "{} is outside {} to {}",
                            format_date(dates.value(i)),
                            format_date(limits::FIRST_REGISTRY_DAY),
                            format_date(limits::END_REGISTRY_DAY - 1)
                        ),
                    ));
                }
            }
            let Some(person) = person else {
                out.unknown_person += 1;
                continue;
            };
            let Some(condition) = policies.condition_id(conditions.value(i)) else {
                out.unknown_condition += 1;
                continue;
            };
            out.found.push((
                person,
                Registration {
                    condition,
                    severity,
                    primary: primary.is_null(i) || primary.value(i),
                    approved_on: approved.value(i),
                    ended_on: if ended.is_null(i) {
                        Day::MAX
                    } else {
                        ended.value(i)
                    },
                },
            ));
        }
        Ok(out)
    }

    /// Person `p`'s registrations.
    #[inline]
    pub fn registrations_of(&self, person: u32) -> &[Registration] {
        super::person_slice(&self.registration_offsets, &self.registrations, person)
    }

    /// Starts loading the attributes of `person` ([`Self::person`]): the persons are numbered
    /// in the registry's order, so a walk in person-key order (or in claim order) reads them
    /// at random.
    #[inline]
    pub fn prefetch_person(&self, person: u32) {
        if let Some(p) = self.persons.get(person as usize) {
            prefetch(p);
        }
    }

    /// Starts loading where `person`'s registrations lie.
    #[inline]
    pub fn prefetch_registration_offsets(&self, person: u32) {
        if let Some(r) = self.registration_offsets.get(person as usize) {
            prefetch(r);
        }
    }

    /// Starts loading `person`'s registrations ([`Self::registrations_of`]), once
    /// [`Self::prefetch_registration_offsets`] has had time to load where they lie.
    #[inline]
    pub fn prefetch_registrations(&self, person: u32) {
        let first = self.registration_offsets.get(person as usize);
        if let Some(r) = first.and_then(|&at| self.registrations.get(at as usize)) {
            prefetch(r);
        }
    }

    /// The person's attributes; [`Person::UNKNOWN`] for ids met outside the registry.
    #[inline]
    pub fn person(&self, person: u32) -> Person {
        self.persons
            .get(person as usize)
            .copied()
            .unwrap_or(Person::UNKNOWN)
    }
}

/// Rows to reserve for the registry file `path`: its footer's count, but no more than the file
/// has bytes. The count is held to the row groups' ([`row_count`]) and to the pages' as they
/// are read ([`read_windows`]), but a footer may still claim huge row groups; a registry row
/// takes several bytes (the sample's about five), so a whole file stays under the bound.
fn rows_to_reserve(path: &Path) -> Result<usize> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    Ok(row_count(path)?.min(bytes) as usize)
}

/// Registrations grouped by person ([`group_by_key`]: file order within a person), then each
/// person's put in approval order, ties in file order: the lookup scans a person's few rows in
/// order.
fn group_registrations(
    by_person: Vec<(u32, Registration)>,
    persons: usize,
) -> (Vec<u32>, Vec<Registration>) {
    let (offsets, mut grouped) = group_by_key(by_person, persons);
    for p in 0..persons {
        let (a, b) = (offsets[p] as usize, offsets[p + 1] as usize);
        grouped[a..b].sort_by_key(|r| (r.approved_on, r.condition));
    }
    (offsets, grouped)
}

/// The persons of one batch whose first row is file row `first_row`, in row order.
fn parse_persons(
    path: &Path,
    batch: &RecordBatch,
    first_row: u64,
    policies: &Policies,
) -> Result<Vec<Person>> {
    let mut out = Vec::with_capacity(batch.num_rows());
    let regions = batch.column(1).as_string::<i32>();
    let schemes = batch.column(2).as_string::<i32>();
    let supplementary = batch.column(3).as_boolean();
    let tiers = batch.column(4).as_primitive::<Int16Type>();
    let assistance = batch.column(5).as_string::<i32>();
    let family_doctor = batch.column(6).as_boolean();
    for i in 0..batch.num_rows() {
        let at =
            |column: &str, reason: String| Error::value(path, column, first_row + i as u64, reason);
        if let Some(name) = first_null(batch, i, &[(0, "person_id"), (1, "region"), (2, "scheme")])
        {
            return Err(at(name, "null in a required column".into()));
        }
        let scheme = Scheme::parse(schemes.value(i));
        let tier = if tiers.is_null(i) {
            Some(0)
        } else {
            crate::policy::TIERS
                .iter()
                .position(|&t| t == tiers.value(i))
                .map(|t| t as u8)
        };
        let category = if assistance.is_null(i) {
            Some(None)
        } else {
            AssistanceCategory::parse(assistance.value(i)).map(Some)
        };
        let region = policies.region_index(regions.value(i)).unwrap_or(NONE);
        let valid = scheme.is_some() && tier.is_some() && category.is_some();
        let supplementary = supplementary.is_valid(i) && supplementary.value(i);
        out.push(Person {
            state: if valid {
                PersonState::Valid
            } else {
                PersonState::Invalid
            },
            region,
            coverage: Coverage::of(scheme.unwrap_or(Scheme::Resident), supplementary),
            tier: tier.unwrap_or(0),
            assistance: category.flatten(),
            family_doctor: family_doctor.is_valid(i) && family_doctor.value(i),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_ids_are_dense_in_first_seen_order_and_read_back_from_the_arena() {
        let mut index = PersonIndex::with_capacity(2);
        let names: Vec<String> = (0..1000).map(|i| format!("P{i:06}")).collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(index.intern(n), (i as u32, true));
        }
        assert_eq!(index.intern("P000007"), (7, false));
        assert_eq!(index.intern(""), (1000, true));
        assert_eq!(index.len(), 1001);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(index.get(n), Some(i as u32));
            assert_eq!(index.id(i as u32), n);
        }
        assert_eq!(index.id(1000), "");
        assert_eq!(index.get("P999999"), None);
    }

    #[test]
    fn a_batch_lookup_finds_what_one_lookup_each_finds() {
        use arrow::array::StringArray;
        // Grown from the default table; the batch longer than the prefetch distance, with the empty id
        // (person 0's text starts the arena), nulls, unknown ids and repeats.
        let mut index = PersonIndex::default();
        assert_eq!(
            index.get_many(&StringArray::from(vec![Some("P1"), None])),
            vec![None, None]
        );
        index.intern("");
        for i in 0..300 {
            index.intern(&format!("P{i}"));
        }
        let ids: Vec<Option<String>> = (0..200)
            .map(|i| match i % 7 {
                0 => None,
                1 => Some(String::new()),
                2 => Some(format!("Q{i}")),
                _ => Some(format!("P{}", i * 13 % 320)),
            })
            .collect();
        let array: StringArray = ids.iter().map(|id| id.as_deref()).collect();
        let one_each: Vec<Option<u32>> = ids
            .iter()
            .map(|id| id.as_deref().and_then(|id| index.get(id)))
            .collect();
        assert_eq!(index.get_many(&array), one_each);
        assert_eq!(one_each[1], Some(0));
        assert_eq!(one_each[3], Some(40), "P39 is person 40");
        assert_eq!(one_each[24], None, "P312 is no person");
        assert_eq!(one_each.iter().flatten().count(), 134);
    }

    #[test]
    fn names_read_many_persons_as_one_name_each() {
        use crate::ingest::claims::NO_PERSON;
        let mut index = PersonIndex::default();
        index.intern("");
        for i in 0..100 {
            index.intern(&format!("P{i}"));
        }
        // Longer than the prefetch distance, in no order, with persons missing and person 0
        // (the empty id, at the arena's start).
        let persons: Vec<u32> = (0..60u32)
            .map(|i| match i % 5 {
                0 => NO_PERSON,
                1 => 0,
                _ => i * 37 % 101,
            })
            .collect();
        let names = index.names(&persons);
        assert_eq!(names.len(), 60);
        assert_eq!(names.null_count(), 12);
        assert_eq!(names.value(1), "");
        assert_eq!(names.value(2), "P73", "person 74 is P73");
        for (i, &p) in persons.iter().enumerate() {
            match p {
                NO_PERSON => assert!(names.is_null(i)),
                p => assert_eq!(names.value(i), index.id(p)),
            }
        }
    }

    #[test]
    fn registrations_are_grouped_by_person_in_approval_order_ties_in_file_order() {
        let reg = |condition: u16, approved_on: Day| Registration {
            condition,
            severity: Severity::Normal,
            primary: true,
            approved_on,
            ended_on: Day::MAX,
        };
        let rows = vec![
            (2, reg(5, 300)),
            (0, reg(1, 100)),
            (2, reg(4, 200)),
            (2, reg(3, 200)),
            (
                0,
                Registration {
                    primary: false,
                    ..reg(1, 100)
                },
            ),
        ];
        let (offsets, grouped) = group_registrations(rows, 4);
        assert_eq!(offsets, vec![0, 2, 2, 5, 5]);
        assert_eq!(
            grouped
                .iter()
                .map(|r| (r.condition, r.approved_on, r.primary))
                .collect::<Vec<_>>(),
            vec![
                (1, 100, true),
                (1, 100, false),
                (3, 200, true),
                (4, 200, true),
                (5, 300, true)
            ]
        );
    }
}
