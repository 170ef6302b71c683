//! Partitioning: claims grouped by dense person id (a counting sort, no global comparison sort),
//! then each person's claims put in settlement order `(settled_at, claim_id)`. The result is the
//! unit of parallel work: persons are independent, so any split of the person range settles the
//! same way on any number of threads.

use rayon::prelude::*;

use crate::ingest::claims::{Claims, NO_PERSON};

/// Valid claims grouped by person and ordered in time.
#[derive(Debug, Default)]
pub struct Partitions {
    /// `order[offsets[p]..offsets[p + 1]]` are person `p`'s claim rows, in settlement order.
    pub offsets: Vec<u32>,
    pub order: Vec<u32>,
}

impl Partitions {
    /// Groups every claim not rejected at ingest. `persons` is the size of the dense id space.
    pub fn build(claims: &Claims, persons: usize) -> Partitions {
        let mut offsets = vec![0u32; persons + 1];
        let valid = |row: usize| claims.rejected[row].is_none() && claims.person[row] != NO_PERSON;
        for row in 0..claims.len() {
            if valid(row) {
                offsets[claims.person[row] as usize + 1] += 1;
            }
        }
        for p in 1..offsets.len() {
            offsets[p] += offsets[p - 1];
        }
        let mut cursor = offsets.clone();
        let mut order = vec![0u32; offsets[persons] as usize];
        for row in 0..claims.len() {
            if valid(row) {
                let p = claims.person[row] as usize;
                order[cursor[p] as usize] = row as u32;
                cursor[p] += 1;
            }
        }
        // Sort each person's rows in time; ties on the timestamp are broken by claim id, as the
        // contract says, so the order never depends on input file order.
        let mut slices: Vec<&mut [u32]> = Vec::with_capacity(persons);
        let mut rest: &mut [u32] = &mut order;
        for p in 0..persons {
            let len = (offsets[p + 1] - offsets[p]) as usize;
            let (head, tail) = rest.split_at_mut(len);
            if len > 1 {
                slices.push(head);
            }
            rest = tail;
        }
        slices.par_iter_mut().for_each(|rows| {
            rows.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                claims.settled_at[a]
                    .cmp(&claims.settled_at[b])
                    .then_with(|| claims.claim_id(a).cmp(&claims.claim_id(b)))
            })
        });
        Partitions { offsets, order }
    }

    pub fn rows_of(&self, person: usize) -> &[u32] {
        &self.order[self.offsets[person] as usize..self.offsets[person + 1] as usize]
    }

    pub fn persons(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Person ranges `(first, end)` of about `claims` claims each, cut between persons: the
    /// parallel work units of settlement and audit. The cuts depend on the data alone, so the
    /// output is the same for any thread count.
    pub fn chunks(&self, claims: usize) -> Vec<(usize, usize)> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in 0..self.persons() {
            if (self.offsets[p + 1] - self.offsets[start]) as usize >= claims {
                chunks.push((start, p + 1));
                start = p + 1;
            }
        }
        if start < self.persons() {
            chunks.push((start, self.persons()));
        }
        chunks
    }
}
