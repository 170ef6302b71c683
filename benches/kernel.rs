//! Criterion benches of the per-claim hot path: the cap/ratio split and the compiled policy
//! lookups (version by date, benefit slot), and the per-key probe of the state's key scans (a
//! night's claim keys against every key of the claim index). Run with `cargo bench --bench
//! kernel`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use yibao::domain::{days_from_civil, Coverage, Severity};
use yibao::policy::{CapBasis, Policies};
use yibao::settle::kernel::{split, Terms};

fn kernel(c: &mut Criterion) {
    let amounts: Vec<i64> = (0..4096).map(|i| 1_000 + (i * 7_919) % 250_000).collect();
    let mut group = c.benchmark_group("kernel");
    group.throughput(Throughput::Elements(amounts.len() as u64));
    group.bench_function("split_fund_cap", |b| {
        b.iter(|| {
            let mut fund_ytd = 0i64;
            for &eligible in &amounts {
                let terms = Terms {
                    ratio_bp: 6_000,
                    deductible_left_fen: 0,
                    cap_left_fen: Some(180_000 - fund_ytd.min(180_000)),
                    cap_basis: CapBasis::Fund,
                };
                let s = split(black_box(eligible), &terms);
                fund_ytd = (fund_ytd + s.fund_fen) % 180_000;
            }
            fund_ytd
        })
    });
    group.finish();
}

fn policy_lookup(c: &mut Criterion) {
    let policies = Policies::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .expect("repository policies");
    let hypertension = policies.condition_id("hypertension").unwrap();
    let days: Vec<i32> = (0..4096)
        .map(|i| days_from_civil(2023, 1, 1) + (i % 730))
        .collect();
    let regions = policies.regions.len() as u16;
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(days.len() as u64));
    group.bench_function("version_and_slot", |b| {
        b.iter(|| {
            let mut found = 0u32;
            for (i, &day) in days.iter().enumerate() {
                let region = (i as u16) % regions;
                if let Some(v) = policies.version_on(region, black_box(day)) {
                    let version = &policies.versions[v as usize];
                    if version
                        .slot(Coverage::Resident, Severity::Normal, hypertension)
                        .is_some()
                    {
                        found += 1;
                    }
                }
            }
            found
        })
    });
    group.finish();
}

/// The claim index's key scan: every key of the index (4 Mi here; a month of a 10M-claim
/// province is 10 M, a year 120 M) looked up among a night's 331,753 claim keys — the filter,
/// then a search for the keys it lets through. Keys are 64-bit hashes, as `claim_key` makes
/// them. What a night's scan costs per key of the year, beyond decoding it; and what a search
/// of an index in key order costs a night's key, at two sizes of the index.
fn state_key_probe(c: &mut Criterion) {
    use yibao::state::read::{search_page, Keys};
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // splitmix64: uniform 64-bit values, like the keys' hash.
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let night = Keys::new((0..331_753).map(|_| next()).collect());
    let index: Vec<u64> = (0..1 << 22).map(|_| next()).collect();
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(index.len() as u64));
    group.bench_function("index_key_probe", |b| {
        b.iter(|| {
            index
                .iter()
                .filter(|&&k| night.contains(black_box(k)))
                .count()
        })
    });
    // The same night's keys searched in an index in key order, in pages of 20,000 keys as the
    // state writes its key columns: at 4 Mi and at 32 Mi keys (a quarter of a year's claims of
    // a 10M-claim month), where the probe above costs 8 times as much.
    for keys in [1usize << 22, 1 << 25] {
        let mut index: Vec<u64> = (0..keys).map(|_| next()).collect();
        index.sort_unstable();
        let bytes: Vec<[u8; 8]> = index.iter().map(|k| k.to_le_bytes()).collect();
        group.throughput(Throughput::Elements(night.len() as u64));
        group.bench_function(format!("ordered_index_search_{}Mi", keys >> 20), |b| {
            let mut found = Vec::new();
            b.iter(|| {
                found.clear();
                let mut from = 0;
                for (p, page) in bytes.chunks(20_000).enumerate() {
                    from = search_page(page, p * 20_000, &night, from, &mut found);
                }
                found.len()
            })
        });
    }
    // A night's keys in an index of small runs, each of fewer keys than the night's: the 10M
    // month's night in 64 runs of 64 Ki keys, as the nights append their windows; the 100M
    // month's (3.3 M keys) in 16 runs of 256 Ki keys, as a spilled run of a large month writes
    // a run a partition.
    let large_night = Keys::new((0..3_304_265).map(|_| next()).collect());
    for (night, runs, keys) in [(&night, 64usize, 1usize << 16), (&large_night, 16, 1 << 18)] {
        let runs: Vec<Vec<[u8; 8]>> = (0..runs)
            .map(|_| {
                let mut run: Vec<u64> = (0..keys).map(|_| next()).collect();
                run.sort_unstable();
                run.iter().map(|k| k.to_le_bytes()).collect()
            })
            .collect();
        group.throughput(Throughput::Elements((runs.len() * keys) as u64));
        let name = format!(
            "small_runs_search_{}k_keys_in_{}x{}Ki",
            night.len() / 1000,
            runs.len(),
            keys >> 10
        );
        group.bench_function(name, |b| {
            let mut found = Vec::new();
            b.iter(|| {
                found.clear();
                for run in &runs {
                    let mut from = 0;
                    for (p, page) in run.chunks(20_000).enumerate() {
                        from = search_page(page, p * 20_000, night, from, &mut found);
                    }
                }
                found.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, kernel, policy_lookup, state_key_probe);
criterion_main!(benches);
