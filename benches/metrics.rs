//! Criterion bench of `/metrics` rendering alone: `Metrics::render` over a snapshot of N sets
//! (default 1,000), each a distinct P-256 leaf under one intermediate with a one-anchor bundle,
//! published, as `benches/rotation.rs` sets them up, with their label sets formatted as the
//! daemon formats them when material goes live. No HTTP, no daemon: the cost of writing the
//! exposition from the snapshot.
//!
//! ```sh
//! cargo bench --bench metrics
//! CERTGATE_BENCH_SETS=100 cargo bench --bench metrics
//! CERTGATE_BENCH_BODY=/tmp/body.txt cargo bench --bench metrics   # also writes the body
//! ```
//!
//! Two measurements: the render alone, and the render compressed as a scrape that accepts
//! gzip gets it.

// Test and bench code may panic on a broken fixture; the lint is for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use flate2::write::GzEncoder;
use flate2::Compression;
use rustls_pki_types::CertificateDer;

use certgate::labels::Outcome;
use certgate::metrics::{LiveLabels, Metrics};
use certgate::pipeline::inspect::{inspect_cert, CertInfo, Role};
use certgate::state::{LiveMaterial, Mode, SetStatus, Snapshot};
use certgate_testkit::pki::{Alg, Ca, LeafSpec};

fn info(der: &[u8], index: usize, role: Role) -> CertInfo {
    let mut c = inspect_cert(&CertificateDer::from(der.to_vec()), index).unwrap();
    c.role = role;
    c
}

/// A snapshot of `n` published sets and the metrics of their first publish.
fn fleet(n: usize) -> (Metrics, Snapshot, i64) {
    let root = Ca::root("bench root", Alg::P256);
    let inter = root.intermediate("bench intermediate", Alg::P256);
    let root_info = info(&root.cert_der, 0, Role::Anchor);
    let inter_info = info(&inter.cert_der, 1, Role::Intermediate);
    let metrics = Metrics::new().unwrap();
    let now = root_info.not_before + 3600;
    let sets = (0..n)
        .map(|i| {
            let leaf = inter.leaf(&LeafSpec::new("bench.example.com"));
            let chain: Arc<[CertInfo]> = vec![
                info(&leaf.cert_der, 0, Role::Leaf),
                inter_info.clone(),
                root_info.clone(),
            ]
            .into();
            let name = format!("s{i}");
            let dir = format!("/dev/shm/.tmpAbC123/live{i}");
            let mut s = SetStatus::new(&name, Mode::Publish, true, 86_400, 0);
            s.live_problem = None;
            let mut live = LiveMaterial {
                generation: None,
                cert_path: format!("{dir}/tls.crt"),
                trust_path: Some(format!("{dir}/ca.crt")),
                effective_expiry: chain.iter().map(|c| c.not_after).min().unwrap(),
                chain,
                anchors: vec![root_info.clone()].into(),
                trust_fingerprint: Some("ab".repeat(32)),
                since: String::new(),
                labels: None,
            };
            // As the daemon formats them when the material goes live.
            live.labels = Some(Arc::new(LiveLabels::new(&name, &live)));
            s.live = Some(live);
            metrics.declare_set(&name);
            metrics.rotation(
                &name,
                Outcome::Published,
                None,
                Some(Duration::from_millis(2)),
                now,
            );
            Arc::new(s)
        })
        .collect();
    let snapshot = Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        initialized: true,
        sets,
        watch_problem: None,
    };
    (metrics, snapshot, now)
}

fn render(c: &mut Criterion) {
    let n = std::env::var("CERTGATE_BENCH_SETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (metrics, snapshot, now) = fleet(n);
    let body = metrics.render(&snapshot, now);
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "render: {n} sets, body {} bytes, {series} series",
        body.len()
    );
    // To look at the body, or measure what compression would make of it.
    if let Some(path) = std::env::var_os("CERTGATE_BENCH_BODY") {
        std::fs::write(path, &body).unwrap();
    }
    c.bench_function(&format!("render {n} sets"), |b| {
        b.iter(|| metrics.render(&snapshot, now))
    });
    // The CPU a scrape that accepts gzip costs: written 96 KiB at a time and compressed at
    // level 1 as `/metrics` does, but both on this one thread (`/metrics` compresses on a
    // second one, so its wall time is nearer the larger half) and into a sink, not a
    // connection.
    let gzip = |out: Vec<u8>| {
        let mut gz = GzEncoder::new(out, Compression::fast());
        metrics.render_chunks(&snapshot, now, 96 * 1024, &mut |chunk| {
            gz.write_all(chunk.as_bytes()).is_ok()
        });
        gz.finish().unwrap()
    };
    println!("render gzip: {} bytes", gzip(Vec::new()).len());
    c.bench_function(&format!("render {n} sets, gzip"), |b| {
        b.iter(|| gzip(Vec::with_capacity(256 * 1024)).len())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(10));
    targets = render
}
criterion_main!(benches);
