//! Criterion benches of the pipeline's stages for ECDSA P-256 and RSA-2048 chains:
//! load + inspect, validate, and the loopback self-handshake.
//!
//! `cargo bench --bench pipeline`

// Test and bench code may panic on a broken fixture; the lint is for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use certgate::pipeline::handshake::self_handshake;
use certgate::pipeline::inspect::inspect_cert;
use certgate::pipeline::load::{load_set, SourcePaths, DEFAULT_MAX_FILE_SIZE};
use certgate::pipeline::validate::{validate, ExpectedName, Policy, Usage};
use certgate_testkit::pki::{Alg, Hierarchy, LeafSpec};

struct Case {
    name: &'static str,
    _dir: tempfile::TempDir,
    paths: SourcePaths,
    policy: Policy,
}

fn case(name: &'static str, alg: Alg) -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Hierarchy::new(alg, &LeafSpec::new("bench.example.com").alg(alg));
    let write = |n: &str, c: &str| {
        let p = dir.path().join(n);
        std::fs::write(&p, c).expect("write");
        p
    };
    let paths = SourcePaths {
        cert: write("tls.crt", &h.chain_pem()),
        key: Some(write("tls.key", &h.leaf.key.pkcs8_pem())),
        trust: Some(write("ca.crt", &h.root.cert_pem)),
    };
    let policy = Policy {
        usage: Usage::Server,
        names: vec![ExpectedName::Dns("bench.example.com".into())],
        ..Policy::default()
    };
    Case {
        name,
        _dir: dir,
        paths,
        policy,
    }
}

fn now() -> i64 {
    certgate::time_fmt::now_unix()
}

fn benches(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cases = [
        case("ecdsa-p256", Alg::P256),
        case("rsa-2048", Alg::Rsa2048),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut g = c.benchmark_group("load_inspect");
    for k in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(k.name), k, |b, k| {
            b.iter(|| {
                let m = load_set(&k.paths, DEFAULT_MAX_FILE_SIZE).expect("load");
                for (i, der) in m.chain.iter().chain(m.trust.iter()).enumerate() {
                    inspect_cert(der, i).expect("inspect");
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("validate");
    for k in &cases {
        let m = load_set(&k.paths, DEFAULT_MAX_FILE_SIZE).expect("load");
        g.bench_with_input(BenchmarkId::from_parameter(k.name), k, |b, k| {
            b.iter(|| assert!(validate(&m, &k.policy, now()).passed()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("self_handshake");
    for k in &cases {
        let m = load_set(&k.paths, DEFAULT_MAX_FILE_SIZE).expect("load");
        g.bench_with_input(BenchmarkId::from_parameter(k.name), k, |b, k| {
            b.iter(|| {
                rt.block_on(self_handshake(&m, &k.policy, now(), Duration::from_secs(2)))
                    .expect("handshake")
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = pipeline;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(pipeline);
