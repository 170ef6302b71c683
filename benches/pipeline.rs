//! Criterion benches of each pipeline stage on one generated month (200,000 claims over 40,000
//! persons, written once to a temporary directory): ingest, partition, settle, audit and the
//! Parquet outputs, each timed alone with throughput in claims. `benches/end_to_end.sh` measures
//! the whole job at scale; this shows which stage a change moved.
//!
//! `cargo bench --bench pipeline`

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use yibao::audit::Auditor;
use yibao::generate::{generate, GenerateConfig, MonthProfile};
use yibao::ingest::claims::Claims;
use yibao::ingest::registry::Registry;
use yibao::output::{self, RunView};
use yibao::partition::Partitions;
use yibao::policy::Policies;
use yibao::settle::Engine;
use yibao::state::Prior;

const CLAIMS: u64 = 200_000;

fn stages(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    generate(&GenerateConfig {
        persons: CLAIMS / 5,
        claims: CLAIMS,
        year: 2024,
        month: 3,
        seed: 7,
        profile: MonthProfile::Clean,
        out: dir.path().to_path_buf(),
    })
    .unwrap();
    let policies =
        Policies::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let load_registry = || {
        Registry::load(
            &dir.path().join("persons.parquet"),
            &dir.path().join("registrations.parquet"),
            &policies,
        )
        .unwrap()
    };
    let claims_path = dir.path().join("claims.parquet");

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(CLAIMS));
    group.bench_function("ingest", |b| {
        b.iter_batched(
            load_registry,
            |mut registry| Claims::load(&claims_path, &mut registry.index).unwrap(),
            BatchSize::LargeInput,
        )
    });

    let mut registry = load_registry();
    let prior = Prior::default();
    let mut claims = Claims::load(&claims_path, &mut registry.index).unwrap();
    group.bench_function("partition", |b| {
        b.iter(|| Partitions::build(&mut claims, &registry.index))
    });
    let partitions = Partitions::build(&mut claims, &registry.index);
    let engine = Engine::new(&policies, &registry, &claims, &prior);
    group.bench_function("settle", |b| b.iter(|| engine.settle(&partitions)));
    let settled = engine.settle(&partitions);
    let auditor = Auditor {
        policies: &policies,
        registry: &registry,
        claims: &claims,
        prior: &prior,
        partitions: &partitions,
        settled: &settled,
    };
    group.bench_function("audit", |b| b.iter(|| auditor.run()));
    let audited = auditor.run();
    let view = RunView::new(
        &policies,
        &registry,
        &claims,
        &partitions,
        &settled,
        &audited,
    );
    let out = dir.path().join("out");
    group.bench_function("outputs", |b| {
        b.iter(|| {
            let mut files = output::OutputFiles::create(&out).unwrap();
            files.append(&view).unwrap();
            files.close().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
