//! Ingest: the first stage. Reads the claims, the person registry and the registrations from
//! Parquet into column vectors keyed by dense person id, rejecting bad claim rows
//! with a reason (see [`claims`]).

pub mod claims;
pub mod converted;
pub mod read;
pub mod registry;

/// The hash behind ingest's string tables (person ids, diagnosis / institution / drug
/// dictionaries): foldhash with fixed keys. Tens of millions of short ids are hashed per run, so a
/// fast non-cryptographic hash matters; the keys are fixed so that a profile repeats (no output
/// depends on hash order — every table numbers its entries in first-seen order).
#[derive(Clone, Copy, Default)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        const STATE: foldhash::fast::FixedState =
            foldhash::fast::FixedState::with_seed(0x0079_6962_616f);
        STATE.build_hasher()
    }
}

/// A hash map keyed by ingest's strings.
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHash>;

/// Person `person`'s items of a grouping by dense person id ([`group_by_key`]); none for a
/// person past its end.
pub fn person_slice<'a, T>(offsets: &[u32], items: &'a [T], person: u32) -> &'a [T] {
    let p = person as usize;
    match offsets.get(p + 1) {
        Some(&end) => &items[offsets[p] as usize..end as usize],
        None => &[],
    }
}

/// `items` cut into consecutive slices of `lengths` (adding up to no more than its length): the
/// groups of a grouping, or the chunks of a parallel pass, each worked on by its own task.
pub fn cut_mut<T>(mut items: &mut [T], lengths: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let lengths = lengths.into_iter();
    let mut slices = Vec::with_capacity(lengths.size_hint().0);
    for len in lengths {
        let (head, tail) = std::mem::take(&mut items).split_at_mut(len);
        slices.push(head);
        items = tail;
    }
    slices
}

/// Groups `(key, item)` by a dense `u32` key (stable), as CSR offsets over `keys` keys: a
/// counting sort, each item moved once (pool states and registrations by person: millions of
/// them), with no sort buffer.
pub fn group_by_key<T>(items: Vec<(u32, T)>, keys: usize) -> (Vec<u32>, Vec<T>) {
    let mut offsets = vec![0u32; keys + 1];
    for (p, _) in &items {
        offsets[*p as usize + 1] += 1;
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    if items.is_sorted_by_key(|(p, _)| *p) {
        return (offsets, items.into_iter().map(|(_, t)| t).collect());
    }
    // Source index of each destination slot, in destination order.
    let mut next = offsets.clone();
    let mut source = vec![0u32; items.len()];
    for (i, (p, _)) in items.iter().enumerate() {
        let slot = &mut next[*p as usize];
        source[*slot as usize] = i as u32;
        *slot += 1;
    }
    let mut items: Vec<Option<T>> = items.into_iter().map(|(_, t)| Some(t)).collect();
    let grouped = source
        .iter()
        .map(|&i| items[i as usize].take().expect("each item placed once"))
        .collect();
    (offsets, grouped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_mut_gives_consecutive_slices_of_the_lengths() {
        let mut items = [1, 2, 3, 4, 5, 6];
        let mut slices = cut_mut(&mut items, [2, 0, 3]);
        slices[2][0] = 30;
        let lens: Vec<usize> = slices.iter().map(|s| s.len()).collect();
        assert_eq!(lens, [2, 0, 3]);
        assert_eq!(items, [1, 2, 30, 4, 5, 6], "the last item left out");
    }

    #[test]
    fn group_is_a_stable_counting_sort_by_person() {
        let items = vec![(2, "a"), (0, "b"), (2, "c"), (0, "d"), (3, "e")];
        let (offsets, grouped) = group_by_key(items, 5);
        assert_eq!(offsets, vec![0, 2, 2, 4, 5, 5]);
        assert_eq!(grouped, vec!["b", "d", "a", "c", "e"]);
        assert_eq!(person_slice(&offsets, &grouped, 2), &["a", "c"]);
        assert!(person_slice(&offsets, &grouped, 1).is_empty());
        assert!(person_slice(&offsets, &grouped, 9).is_empty());
    }
}
