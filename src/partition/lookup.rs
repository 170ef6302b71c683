//! Lookups over one person's claims in settlement order, for settlement and audit to find the
//! earlier claim a claim refers back to — the original of a refund, the latest stay, the latest
//! fill of a drug, a same-day copy, the claims of the trailing week — without scanning back over
//! the person's earlier claims. Each is built once per person in O(k log k) for k claims (this
//! run's and the state's) and answers in O(log k) or amortised O(1), so a person with 100,000
//! claims in one run costs what 100,000 claims cost.
//!
//! Every structure lives in a per-thread scratch reused across persons: nothing is allocated
//! per claim, and a person's build clears only what the previous person used.

use crate::domain::{Day, WEEK_DAYS};
use crate::ingest::claims::Claims;
use crate::state::{claim_key, Prior};

/// No node: the bottom of a stack, or a node without a key.
const NIL: u32 = u32::MAX;

/// The latest node of each key still counting, for nodes that arrive in settlement order and
/// may stop counting (refunded) but never count again: a stack per key whose tops are popped
/// lazily when they no longer count, so each node is pushed and popped at most once.
///
/// Nodes are numbers `0..n` the caller chooses (earlier claims first, then this run's); keys are
/// grouped by one sort before the first push.
#[derive(Debug)]
pub struct LatestPerKey<K> {
    keyed: Vec<(K, u32)>,
    /// Per node: its key's group, or [`NIL`] when it has no key.
    group: Vec<u32>,
    /// Per group: the node on top of its stack, or [`NIL`].
    top: Vec<u32>,
    /// Per node: the node under it in its group's stack.
    under: Vec<u32>,
}

impl<K> Default for LatestPerKey<K> {
    fn default() -> Self {
        LatestPerKey {
            keyed: Vec::new(),
            group: Vec::new(),
            top: Vec::new(),
            under: Vec::new(),
        }
    }
}

impl<K: Ord + Copy> LatestPerKey<K> {
    /// Starts a person with nodes `0..nodes`, none keyed yet.
    pub fn start(&mut self, nodes: usize) {
        self.keyed.clear();
        self.group.clear();
        self.group.resize(nodes, NIL);
        self.under.clear();
        self.under.resize(nodes, NIL);
        self.top.clear();
    }

    /// Gives `node` its key: only keyed nodes are pushed and looked up.
    pub fn key(&mut self, node: usize, key: K) {
        self.keyed.push((key, node as u32));
    }

    /// Groups the keyed nodes by key; call once, after every [`Self::key`] and before any push.
    pub fn group(&mut self) {
        self.keyed.sort_unstable();
        let mut groups = 0u32;
        for (i, &(key, node)) in self.keyed.iter().enumerate() {
            if i > 0 && self.keyed[i - 1].0 != key {
                groups += 1;
            }
            self.group[node as usize] = groups;
        }
        self.top.clear();
        self.top
            .resize(self.keyed.len().min(groups as usize + 1), NIL);
    }

    /// Puts `node` on top of its key's stack: it is now the latest of its key.
    pub fn push(&mut self, node: usize) {
        let g = self.group[node] as usize;
        if g != NIL as usize {
            self.under[node] = self.top[g];
            self.top[g] = node as u32;
        }
    }

    /// The latest pushed node with `node`'s key for which `gone` is false; nodes found gone are
    /// dropped for good.
    pub fn latest(&mut self, node: usize, gone: impl Fn(usize) -> bool) -> Option<usize> {
        let g = self.group[node] as usize;
        if g == NIL as usize {
            return None;
        }
        let mut top = self.top[g];
        while top != NIL && gone(top as usize) {
            top = self.under[top as usize];
        }
        self.top[g] = top;
        (top != NIL).then_some(top as usize)
    }
}

/// How many counted claims fall on each service day, with prefix sums over days (a Fenwick
/// tree over the person's distinct days): the claims of a day and of the trailing week are two
/// binary searches and two prefix sums, whatever the order the days arrive in.
#[derive(Debug, Default)]
pub struct DayCounts {
    days: Vec<Day>,
    on_day: Vec<u32>,
    tree: Vec<u32>,
}

impl DayCounts {
    /// Starts a person whose counted claims will fall on `days` (any order, repeats allowed).
    pub fn start(&mut self, days: impl Iterator<Item = Day>) {
        self.days.clear();
        self.days.extend(days);
        self.days.sort_unstable();
        self.days.dedup();
        self.on_day.clear();
        self.on_day.resize(self.days.len(), 0);
        self.tree.clear();
        self.tree.resize(self.days.len() + 1, 0);
    }

    /// Counts a claim on `day` (one of the days given to [`Self::start`]); returns the counted
    /// claims on that day and in the seven days ending on it, this one included.
    pub fn add(&mut self, day: Day) -> (u32, u32) {
        let at = self.days.partition_point(|&d| d < day);
        debug_assert_eq!(self.days.get(at), Some(&day), "a day given to start");
        self.on_day[at] += 1;
        let mut i = at + 1;
        while i < self.tree.len() {
            self.tree[i] += 1;
            i += i & i.wrapping_neg();
        }
        let week_start = self.days.partition_point(|&d| d <= day - WEEK_DAYS);
        let in_week = self.up_to(at + 1) - self.up_to(week_start);
        (self.on_day[at], in_week)
    }

    /// Claims counted on the first `n` distinct days.
    fn up_to(&self, mut n: usize) -> u32 {
        let mut sum = 0;
        while n > 0 {
            sum += self.tree[n];
            n &= n - 1;
        }
        sum
    }
}

/// Where a refund's original is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Original {
    /// This run's claim at this index of the person's claims.
    Run(usize),
    /// The earlier claim at this index of [`Prior::claims`].
    Earlier(usize),
}

/// The claim ids of one person's claims, this run's and the state's, by [`claim_key`]: built
/// at the person's first refund (most persons have none), then each refund finds its original
/// in O(log k).
#[derive(Debug, Default)]
pub struct ClaimIds {
    built: bool,
    run: Vec<(u64, u32)>,
    earlier: Vec<(u64, u32)>,
}

impl ClaimIds {
    /// Forgets the previous person.
    pub fn clear(&mut self) {
        self.built = false;
    }

    /// The first of `rows[..k]` (the person's claims in settlement order) whose claim id is
    /// `target`, else the first of the person's earlier claims with it.
    pub fn find(
        &mut self,
        claims: &Claims,
        prior: &Prior,
        person: u32,
        rows: &[u32],
        k: usize,
        target: &str,
    ) -> Option<Original> {
        let (start, earlier) = prior.claims_of(person);
        if !self.built {
            self.built = true;
            self.run.clear();
            self.run
                .extend(rows.iter().enumerate().filter_map(|(j, &row)| {
                    let id = claims.claim_id(row as usize)?;
                    Some((claim_key(id), j as u32))
                }));
            self.run.sort_unstable();
            self.earlier.clear();
            self.earlier.extend(
                (0..earlier.len()).map(|i| (claim_key(prior.claim_id(start + i)), i as u32)),
            );
            self.earlier.sort_unstable();
        }
        let key = claim_key(target);
        let from = self.run.partition_point(|&(h, _)| h < key);
        let run = self.run[from..]
            .iter()
            .take_while(|&&(h, j)| h == key && (j as usize) < k)
            .map(|&(_, j)| j as usize)
            .find(|&j| claims.claim_id(rows[j] as usize) == Some(target));
        if let Some(j) = run {
            return Some(Original::Run(j));
        }
        let from = self.earlier.partition_point(|&(h, _)| h < key);
        self.earlier[from..]
            .iter()
            .take_while(|&&(h, _)| h == key)
            .map(|&(_, i)| start + i as usize)
            .find(|&i| prior.claim_id(i) == target)
            .map(Original::Earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_per_key_skips_gone_nodes_and_keeps_them_gone() {
        let mut latest = LatestPerKey::default();
        latest.start(6);
        // Nodes 0, 2, 3 share key 7; 1 and 4 key 9; 5 has none.
        for (node, key) in [(0, 7), (1, 9), (2, 7), (3, 7), (4, 9)] {
            latest.key(node, key);
        }
        latest.group();
        let gone = [false, false, true, false, false, false];
        let is_gone = |n: usize| gone[n];
        assert_eq!(latest.latest(3, is_gone), None, "nothing pushed yet");
        latest.push(0);
        latest.push(1);
        latest.push(2);
        // 2 is gone: the latest of key 7 is 0.
        assert_eq!(latest.latest(3, is_gone), Some(0));
        latest.push(3);
        assert_eq!(latest.latest(0, is_gone), Some(3));
        assert_eq!(latest.latest(4, is_gone), Some(1));
        assert_eq!(latest.latest(5, is_gone), None, "no key, no match");
        latest.push(5);
        // 3 and 0 gone: nothing of key 7 counts.
        let all_gone = |n: usize| n != 1 && n != 4;
        assert_eq!(latest.latest(2, all_gone), None);
        assert_eq!(latest.latest(2, is_gone), None, "popped for good");
    }

    #[test]
    fn day_counts_count_the_day_and_the_trailing_week_in_any_order() {
        let mut counts = DayCounts::default();
        let days = [100, 93, 94, 100, 99, 107, 94];
        counts.start(days.iter().copied());
        // Day 93 is seven days before 100: outside 100's week (94..=100).
        assert_eq!(counts.add(100), (1, 1));
        assert_eq!(counts.add(93), (1, 1));
        assert_eq!(counts.add(94), (1, 2));
        assert_eq!(counts.add(100), (2, 3));
        // A later day seen first does not count for an earlier one.
        assert_eq!(counts.add(107), (1, 1));
        assert_eq!(counts.add(99), (1, 3), "93, 94, 99 within 93..=99");
        assert_eq!(counts.add(94), (2, 3), "93, 94, 94 within 88..=94");
    }
}
