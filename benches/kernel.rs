//! Criterion benches of the per-claim hot path: the cap/ratio split and the compiled policy
//! lookups (version by date, benefit slot). Run with `cargo bench --bench kernel`.

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

criterion_group!(benches, kernel, policy_lookup);
criterion_main!(benches);
