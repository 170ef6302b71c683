//! Partitioning: the claims of a run (or of one spill unit) grouped by person, persons put in
//! output order, and each person's claims put in settlement order `(settled_at, claim_id)`.
//!
//! Every output lists persons in the order of [`person_key`] (ties by id): a fixed function of
//! the person id alone. That order does not depend on which persons share a run, so a month
//! settled in one piece and a month spilled to disk and settled partition by partition (each
//! partition a range of keys) write the same rows in the same order. Grouping is a counting sort
//! over dense person ids; only the persons themselves are sorted by key.

pub mod lookup;
pub mod spill;

use rayon::prelude::*;

use crate::domain::Reason;
use crate::ingest::claims::{Claims, NO_PERSON};
use crate::ingest::registry::PersonIndex;
use crate::limits::MAX_CLAIMS_PER_PERSON;

/// The stable key of a person id ([`crate::domain::stable_key`]): persons are listed in its
/// order in every output, and its top bits pick a spill partition. Fixed forever: changing it
/// reorders every output file.
pub fn person_key(id: &str) -> u64 {
    crate::domain::stable_key(id)
}

/// The most key bits a run is cut by: at most 1024 spilled partitions or parts held in memory.
pub const BLOCK_BITS: u32 = 10;

/// The part of a person key when a run is cut into `1 << bits` parts by the keys' top bits
/// (spilled partitions, or the parts of a run held in memory).
pub fn part_of(key: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (key >> (64 - bits)) as usize
    }
}

/// The person keys of part `part` of `1 << bits` ([`part_of`]): one range of keys.
pub fn keys_of(part: usize, bits: u32) -> std::ops::RangeInclusive<u64> {
    if bits == 0 {
        return 0..=u64::MAX;
    }
    let first = (part as u64) << (64 - bits);
    first..=first | (u64::MAX >> bits)
}

/// No slot: the entry of a dense id with no claim in the partition being grouped.
const ABSENT: u32 = u32::MAX;

/// Each dense person id's slot while a partition is grouped, [`ABSENT`] between groupings.
#[derive(Debug, Default)]
pub struct SlotTable(Vec<u32>);

impl SlotTable {
    /// The table, with an entry for each of `ids` dense ids, every one [`ABSENT`].
    fn for_ids(&mut self, ids: usize) -> &mut [u32] {
        if self.0.len() < ids {
            self.0.resize(ids, ABSENT);
        }
        debug_assert!(self.0.iter().all(|&s| s == ABSENT), "cleared after use");
        &mut self.0
    }
}

/// The claims of a run grouped by person, persons in output order.
///
/// A *slot* is a person's place in output order; `persons[slot]` is its dense person id.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Partitions {
    /// Dense person id of each slot: every person with a claim row here, ordered by
    /// `(person_key, id)`.
    pub persons: Vec<u32>,
    /// [`person_key`] of each slot.
    pub keys: Vec<u64>,
    /// `order[offsets[s]..offsets[s + 1]]` are slot `s`'s valid claim rows, in settlement order.
    pub offsets: Vec<u32>,
    pub order: Vec<u32>,
    /// `rejected[rejected_offsets[s]..rejected_offsets[s + 1]]` are slot `s`'s rows rejected at
    /// ingest, in input order.
    pub rejected_offsets: Vec<u32>,
    pub rejected: Vec<u32>,
    /// Rows with no person (a null `person_id`), in input order: written after every person.
    pub orphans: Vec<u32>,
}

impl Partitions {
    /// Groups the rows of `claims` by person. Only the persons present are keyed and sorted, so
    /// a spilled partition costs its own claims, not the whole registry. The claims of a person
    /// with more than [`MAX_CLAIMS_PER_PERSON`] valid claims are rejected here
    /// (`person_claim_limit`): a run holds all of a person's claims in one partition, so the
    /// count is the same whether the run is held or spilled.
    pub fn build(claims: &mut Claims, index: &PersonIndex) -> Partitions {
        Self::build_reusing(claims, index, &mut SlotTable::default())
    }

    /// [`Self::build`] with a table of slots kept from the last partition built: a run cut in
    /// many partitions clears the few entries a partition used instead of allocating and
    /// filling a table of every dense id for each one.
    pub fn build_reusing(
        claims: &mut Claims,
        index: &PersonIndex,
        slots: &mut SlotTable,
    ) -> Partitions {
        Self::build_within(claims, index, MAX_CLAIMS_PER_PERSON, slots)
    }

    fn build_within(
        claims: &mut Claims,
        index: &PersonIndex,
        limit: usize,
        slots: &mut SlotTable,
    ) -> Partitions {
        let partitions = Self::group(claims, index, slots);
        let crowded: Vec<usize> = (0..partitions.slots())
            .filter(|&s| partitions.rows_of(s).len() > limit)
            .collect();
        if crowded.is_empty() {
            return partitions;
        }
        // No detail a row: a placeholder id may carry millions of them, and the reason says
        // what is wrong.
        for s in crowded {
            for &row in partitions.rows_of(s) {
                claims.rejected[row as usize] = Some(Reason::PersonClaimLimit);
            }
        }
        Self::group(claims, index, slots)
    }

    fn group(claims: &Claims, index: &PersonIndex, slots: &mut SlotTable) -> Partitions {
        let slot_of = slots.for_ids(index.len());
        let mut present = Vec::new();
        for &p in &claims.person {
            if p != NO_PERSON && slot_of[p as usize] == ABSENT {
                slot_of[p as usize] = 0;
                present.push(p);
            }
        }
        let mut keyed: Vec<(u64, u32)> = present
            .par_chunks(1 << 14)
            .flat_map_iter(|persons| {
                let mut keyed = Vec::with_capacity(persons.len());
                index.each_name(persons, |id| {
                    keyed.push(person_key(id.expect("a present person has an id")))
                });
                keyed.into_iter().zip(persons.iter().copied())
            })
            .collect();
        drop(present);
        keyed.par_sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| index.id(a.1).cmp(index.id(b.1)))
        });
        let (keys, persons): (Vec<u64>, Vec<u32>) = keyed.into_iter().unzip();
        for (slot, &p) in persons.iter().enumerate() {
            slot_of[p as usize] = slot as u32;
        }

        let slots = persons.len();
        let valid = |row: usize| claims.rejected[row].is_none();
        let mut offsets = vec![0u32; slots + 1];
        let mut rejected_offsets = vec![0u32; slots + 1];
        let mut orphans = Vec::new();
        for row in 0..claims.len() {
            match claims.person[row] {
                NO_PERSON => orphans.push(row as u32),
                p if valid(row) => offsets[slot_of[p as usize] as usize + 1] += 1,
                p => rejected_offsets[slot_of[p as usize] as usize + 1] += 1,
            }
        }
        for s in 1..=slots {
            offsets[s] += offsets[s - 1];
            rejected_offsets[s] += rejected_offsets[s - 1];
        }
        let mut cursor = offsets.clone();
        let mut rejected_cursor = rejected_offsets.clone();
        let mut order = vec![0u32; offsets[slots] as usize];
        let mut rejected = vec![0u32; rejected_offsets[slots] as usize];
        for row in 0..claims.len() {
            let p = claims.person[row];
            if p == NO_PERSON {
                continue;
            }
            let s = slot_of[p as usize] as usize;
            if valid(row) {
                order[cursor[s] as usize] = row as u32;
                cursor[s] += 1;
            } else {
                rejected[rejected_cursor[s] as usize] = row as u32;
                rejected_cursor[s] += 1;
            }
        }
        // Sort each person's rows in time; ties on the timestamp are broken by claim id, as the
        // contract says, so the order never depends on input file order.
        let lengths = offsets.windows(2).map(|w| (w[1] - w[0]) as usize);
        let mut slices = crate::ingest::cut_mut(&mut order, lengths);
        slices.retain(|rows| rows.len() > 1);
        slices.par_iter_mut().for_each(|rows| {
            rows.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                claims.settled_at[a]
                    .cmp(&claims.settled_at[b])
                    .then_with(|| claims.claim_id(a).cmp(&claims.claim_id(b)))
            })
        });
        for &p in &persons {
            slot_of[p as usize] = ABSENT;
        }
        Partitions {
            persons,
            keys,
            offsets,
            order,
            rejected_offsets,
            rejected,
            orphans,
        }
    }

    /// Puts the claims in output order ([`Partitions::output_rows`]) and renumbers the rows
    /// here to match: from then on a person's claims are consecutive rows.
    pub fn gather(&mut self, claims: &mut Claims) -> crate::error::Result<()> {
        let rows = self.output_rows();
        let mut next = 0u32;
        let mut renumber = |row: &mut u32| {
            *row = next;
            next += 1;
        };
        for s in 0..self.slots() {
            let (a, b) = (self.offsets[s] as usize, self.offsets[s + 1] as usize);
            self.order[a..b].iter_mut().for_each(&mut renumber);
            let (a, b) = (
                self.rejected_offsets[s] as usize,
                self.rejected_offsets[s + 1] as usize,
            );
            self.rejected[a..b].iter_mut().for_each(&mut renumber);
        }
        self.orphans.iter_mut().for_each(&mut renumber);
        claims.gather(&rows)
    }

    /// Slot `slot`'s valid claim rows, in settlement order.
    pub fn rows_of(&self, slot: usize) -> &[u32] {
        &self.order[self.offsets[slot] as usize..self.offsets[slot + 1] as usize]
    }

    /// Slot `slot`'s rows rejected at ingest, in input order.
    pub fn rejected_of(&self, slot: usize) -> &[u32] {
        let (a, b) = (self.rejected_offsets[slot], self.rejected_offsets[slot + 1]);
        &self.rejected[a as usize..b as usize]
    }

    /// Number of slots (persons in output order).
    pub fn slots(&self) -> usize {
        self.persons.len()
    }

    /// Every row in output order: each person's valid claims (settlement order) then the
    /// person's rejected rows (input order), persons in slot order, then the rows with no person.
    pub fn output_rows(&self) -> Vec<u32> {
        let mut rows =
            Vec::with_capacity(self.order.len() + self.rejected.len() + self.orphans.len());
        for s in 0..self.slots() {
            rows.extend_from_slice(self.rows_of(s));
            rows.extend_from_slice(self.rejected_of(s));
        }
        rows.extend_from_slice(&self.orphans);
        rows
    }

    /// A run held in memory cut as a spilled run is cut on disk: `1 << bits` parts of persons
    /// by key ([`part_of`]), then one part of the rows with no person. Slots are in key order,
    /// so a part of persons is a range of slots. Returns each part's rows in output order
    /// ([`Partitions::output_rows`]) and its partitions over those rows once selected
    /// ([`Claims::select`]): the same as [`Partitions::build`] over the part's claims would give,
    /// without grouping and sorting them again. Settled one part at a time, the run holds one
    /// part's settlement, audit and output rows at once instead of the whole month's, and writes
    /// the same bytes.
    pub fn cut(&self, bits: u32) -> impl Iterator<Item = (Vec<u32>, Partitions)> + '_ {
        let parts = 1usize << bits;
        let mut bounds = vec![0; parts + 1];
        for part in 0..parts {
            bounds[part + 1] = bounds[part]
                + self.keys[bounds[part]..].partition_point(|&k| part_of(k, bits) == part);
        }
        (0..=parts).map(move |part| match part {
            p if p < parts => self.slot_range(bounds[p], bounds[p + 1]),
            _ => {
                let rest = Partitions {
                    offsets: vec![0],
                    rejected_offsets: vec![0],
                    orphans: (0..self.orphans.len() as u32).collect(),
                    ..Partitions::default()
                };
                (self.orphans.clone(), rest)
            }
        })
    }

    /// Slots `first..end` as partitions of their own, numbering their rows from 0 in output
    /// order; and the rows they number.
    fn slot_range(&self, first: usize, end: usize) -> (Vec<u32>, Partitions) {
        let base = (self.offsets[first], self.rejected_offsets[first]);
        let valid = (self.offsets[end] - base.0) as usize;
        let refused = (self.rejected_offsets[end] - base.1) as usize;
        let mut rows = Vec::with_capacity(valid + refused);
        let mut order = Vec::with_capacity(valid);
        let mut rejected = Vec::with_capacity(refused);
        for s in first..end {
            order.extend(rows.len() as u32..(rows.len() + self.rows_of(s).len()) as u32);
            rows.extend_from_slice(self.rows_of(s));
            rejected.extend(rows.len() as u32..(rows.len() + self.rejected_of(s).len()) as u32);
            rows.extend_from_slice(self.rejected_of(s));
        }
        let part = Partitions {
            persons: self.persons[first..end].to_vec(),
            keys: self.keys[first..end].to_vec(),
            offsets: self.offsets[first..=end]
                .iter()
                .map(|o| o - base.0)
                .collect(),
            order,
            rejected_offsets: self.rejected_offsets[first..=end]
                .iter()
                .map(|o| o - base.1)
                .collect(),
            rejected,
            orphans: Vec::new(),
        };
        (rows, part)
    }

    /// Slot ranges `(first, end)` of about `claims` claims each, cut between persons: the
    /// parallel work units of settlement and audit. The cuts depend on the data alone, so the
    /// output is the same for any thread count.
    pub fn chunks(&self, claims: usize) -> Vec<(usize, usize)> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for s in 0..self.slots() {
            if (self.offsets[s + 1] - self.offsets[start]) as usize >= claims {
                chunks.push((start, s + 1));
                start = s + 1;
            }
        }
        if start < self.slots() {
            chunks.push((start, self.slots()));
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Reason;
    use crate::ingest::claims::ClaimBatch;
    use arrow::array::StringArray;

    /// Claims with only what grouping reads: person, time, claim id, rejection.
    fn claims(rows: &[(Option<u32>, i64, &str, bool)]) -> Claims {
        let ids = StringArray::from_iter_values(rows.iter().map(|r| r.2));
        Claims {
            batches: vec![ClaimBatch {
                offset: 0,
                file: 0,
                file_row: 0,
                file_rows: None,
                files: None,
                reverses_claim_id: StringArray::new_null(rows.len()),
                claim_id: ids,
            }],
            person: rows.iter().map(|r| r.0.unwrap_or(NO_PERSON)).collect(),
            settled_at: rows.iter().map(|r| r.1).collect(),
            rejected: rows
                .iter()
                .map(|r| r.3.then_some(Reason::UnknownLevel))
                .collect(),
            ..Claims::default()
        }
    }

    #[test]
    fn a_range_of_keys_is_the_keys_of_its_part() {
        for bits in [0, 1, 4, 10] {
            for range in [0, (1usize << bits) - 1, (1usize << bits) / 2] {
                let keys = keys_of(range, bits);
                assert_eq!(part_of(*keys.start(), bits), range);
                assert_eq!(part_of(*keys.end(), bits), range);
                if *keys.start() > 0 {
                    assert_eq!(part_of(keys.start() - 1, bits), range - 1);
                }
                if *keys.end() < u64::MAX {
                    assert_eq!(part_of(keys.end() + 1, bits), range + 1);
                }
            }
        }
        assert_eq!(keys_of(1, 1), 1 << 63..=u64::MAX);
    }

    #[test]
    fn persons_get_one_slot_each_in_key_order() {
        let mut index = PersonIndex::default();
        for name in ["P1", "P2", "P3", "P4", "P5", "P6"] {
            index.intern(name);
        }
        let mut month = claims(&[
            (Some(0), 5, "C1", false),
            (Some(2), 3, "C2", false),
            (Some(2), 1, "C3", false),
        ]);
        let built = Partitions::build(&mut month, &index);
        let mut expected: Vec<(u64, u32)> = [0u32, 2]
            .iter()
            .map(|&p| (person_key(index.id(p)), p))
            .collect();
        expected.sort_unstable();
        assert_eq!(
            built.persons,
            expected.iter().map(|e| e.1).collect::<Vec<_>>()
        );
        assert_eq!(built.keys, expected.iter().map(|e| e.0).collect::<Vec<_>>());
        let slot_of = |p: u32| built.persons.iter().position(|&q| q == p).unwrap();
        // Person 2's claims in settlement order: C3 (time 1) before C2 (time 3).
        assert_eq!(built.rows_of(slot_of(2)), &[2, 1]);
        assert_eq!(built.rows_of(slot_of(0)), &[0]);
    }

    #[test]
    fn a_cut_part_is_grouped_as_its_own_claims_would_be() {
        let mut index = PersonIndex::default();
        for name in ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"] {
            index.intern(name);
        }
        let ids: Vec<String> = (0..40).map(|i| format!("C{:02}", (i * 7) % 40)).collect();
        let rows: Vec<(Option<u32>, i64, &str, bool)> = (0..40)
            .map(|i| {
                let person = (i % 9 != 4).then_some((i * 5 % 8) as u32);
                (person, (i * 3 % 5) as i64, ids[i].as_str(), i % 6 == 1)
            })
            .collect();
        let mut month_claims = claims(&rows);
        let month = Partitions::build(&mut month_claims, &index);
        for bits in 0..=3 {
            let mut all = Vec::new();
            for (part, (selected, cut)) in month.cut(bits).enumerate() {
                let mut own = claims(
                    &selected
                        .iter()
                        .map(|&r| rows[r as usize])
                        .collect::<Vec<_>>(),
                );
                let built = Partitions::build(&mut own, &index);
                assert_eq!(cut, built, "part {part} of {}", 1 << bits);
                assert_eq!(
                    built.output_rows(),
                    (0..selected.len() as u32).collect::<Vec<_>>()
                );
                all.extend(selected);
            }
            assert_eq!(all, month.output_rows(), "the parts in order are the month");
        }
        assert!(month.orphans.len() == 4 && !month.rejected.is_empty());
    }

    #[test]
    fn a_person_past_the_claim_limit_has_every_claim_rejected_and_the_others_settle() {
        let mut index = PersonIndex::default();
        for name in ["P1", "P2"] {
            index.intern(name);
        }
        // P1: four valid claims and one rejected at ingest; P2: three. The limit is three.
        let mut month = claims(&[
            (Some(0), 1, "C1", false),
            (Some(1), 1, "C2", false),
            (Some(0), 2, "C3", false),
            (Some(0), 3, "C4", true),
            (Some(1), 2, "C5", false),
            (Some(0), 4, "C6", false),
            (Some(1), 3, "C7", false),
            (Some(0), 5, "C8", false),
        ]);
        let built = Partitions::build_within(&mut month, &index, 3, &mut SlotTable::default());
        let slot_of = |p: u32| built.persons.iter().position(|&q| q == p).unwrap();
        assert!(built.rows_of(slot_of(0)).is_empty());
        assert_eq!(built.rejected_of(slot_of(0)), &[0, 2, 3, 5, 7]);
        assert_eq!(built.rows_of(slot_of(1)), &[1, 4, 6]);
        let limited: Vec<usize> = (0..month.len())
            .filter(|&r| month.rejected[r] == Some(Reason::PersonClaimLimit))
            .collect();
        assert_eq!(limited, vec![0, 2, 5, 7]);
        assert_eq!(month.rejected[3], Some(Reason::UnknownLevel), "kept");
        assert!(month.reject_detail.is_empty());
    }

    #[test]
    fn person_key_is_fixed() {
        // Computed independently (Python, from the FNV-1a and fmix64 definitions): a change to
        // the key would reorder every output file, so it is pinned.
        assert_eq!(person_key(""), 0xefd0_1f60_ba99_2926);
        assert_eq!(person_key("P00000001"), 0x7290_15c5_a8ca_6f2b);
        let spread = (0..4096)
            .map(|i| person_key(&format!("P{i:08}")) >> 62)
            .fold([0u32; 4], |mut n, q| {
                n[q as usize] += 1;
                n
            });
        // Top bits pick spill partitions: each quarter gets about a quarter of the persons.
        assert!(
            spread.iter().all(|&n| (900..1150).contains(&n)),
            "{spread:?}"
        );
    }
}
