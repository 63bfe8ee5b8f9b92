//! The sidecar end to end: the real binary, real inotify on real files written the way kubelet
//! writes them, real TLS, real HTTP. Timeouts here are failure bounds, never measurements.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::daemon::{metric_matching, wait_until, Running};
use crate::util::fixtures::{chain_pem as chain, sha256_hex as fingerprint, write_generation};
use crate::util::kubelet::atomic_write;
use crate::util::pki::{base64_of, Alg, Ca, Leaf, LeafSpec};
use crate::util::workload::{Behaviour, Workload};

const BOUND: Duration = Duration::from_secs(20);

/// A source volume, its CA and a publish dir, in one temp dir.
struct Fixture {
    tmp: tempfile::TempDir,
    root: Ca,
    inter: Ca,
}

impl Fixture {
    fn new() -> Self {
        let root = Ca::root("daemon test root", Alg::P256);
        let inter = root.intermediate("daemon test intermediate", Alg::P256);
        Self {
            tmp: tempfile::tempdir().expect("tempdir"),
            root,
            inter,
        }
    }
    fn src(&self) -> PathBuf {
        self.tmp.path().join("src")
    }
    fn publish(&self) -> PathBuf {
        self.tmp.path().join("live")
    }
    fn leaf(&self, spec: &LeafSpec) -> Leaf {
        self.inter.leaf(spec)
    }
    fn good(&self) -> Leaf {
        self.leaf(&LeafSpec::new("web.example.com"))
    }
    /// Writes leaf (+ intermediate), key and the root bundle as one kubelet generation.
    fn rotate(&self, leaf: &Leaf) {
        self.rotate_raw(
            &chain(leaf, &self.inter),
            leaf.key.pkcs8_pem().as_bytes(),
            self.root.cert_pem.as_bytes(),
        );
    }
    fn rotate_raw(&self, cert: &[u8], key: &[u8], ca: &[u8]) {
        write_generation(&self.src(), cert, key, ca);
    }
    fn config(&self, extra: &str) -> PathBuf {
        let src = self.src();
        let text = format!(
            "[daemon]\nresync_interval = \"60s\"\nsettle = \"50ms\"\n\n[[set]]\nname = \"web\"\ncert = \"{}\"\nkey = \"{}\"\ntrust = \"{}\"\nnames = [\"web.example.com\"]\npublish_dir = \"{}\"\n{extra}",
            src.join("tls.crt").display(),
            src.join("tls.key").display(),
            src.join("ca.crt").display(),
            self.publish().display(),
        );
        let path = self.tmp.path().join("certgate.toml");
        fs::write(&path, text).expect("config");
        path
    }
    fn published_cert(&self) -> String {
        fs::read_to_string(self.publish().join("tls.crt")).unwrap_or_default()
    }
    fn published_key(&self) -> String {
        fs::read_to_string(self.publish().join("tls.key")).unwrap_or_default()
    }
}

fn wait_live(d: &Running, leaf: &Leaf) {
    let want = fingerprint(&leaf.cert_der);
    wait_until(BOUND, "leaf to go live", || {
        d.live_fingerprint(0).as_deref() == Some(want.as_str())
    });
}

fn rejected(d: &Running, reason: &str) -> f64 {
    metric_matching(
        &d.get("/metrics").1,
        "certgate_rotations_total",
        &[("outcome", "rejected"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[test]
fn paths_through_the_data_link_itself_follow_rotations() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    // cert = /vol/..data/tls.crt: the watch must sit on /vol, where ..data is swapped, and not
    // follow the link into one generation (resync is 60 s: only the watch can see this).
    let config = f.config("");
    let text = fs::read_to_string(&config).expect("config");
    let src = f.src().display().to_string();
    fs::write(
        &config,
        text.replace(&format!("{src}/"), &format!("{src}/..data/")),
    )
    .expect("rewrite config");
    let d = Running::start(&config);
    wait_live(&d, &a);
    for _ in 0..3 {
        let next = f.good();
        f.rotate(&next);
        wait_live(&d, &next);
        assert_eq!(f.published_key(), next.key.pkcs8_pem());
    }
}

#[test]
fn good_rotation_is_published_atomically() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    assert_eq!(d.get("/readyz").0, 200);
    assert!(f.published_cert().starts_with(&a.cert_pem));
    let b = f.good();
    f.rotate(&b);
    wait_live(&d, &b);
    assert!(
        f.published_cert().starts_with(&b.cert_pem),
        "publish dir holds the new leaf"
    );
    assert_eq!(f.published_key(), b.key.pkcs8_pem());
    // kubelet layout: ..data symlink, user-visible symlinks into it, key 0600, previous kept.
    let data = fs::read_link(f.publish().join("..data")).expect("..data");
    assert_eq!(
        fs::read_link(f.publish().join("tls.crt")).unwrap(),
        Path::new("..data/tls.crt")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(f.publish().join(&data).join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let generations = fs::read_dir(f.publish())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("..2"))
        .count();
    assert_eq!(
        generations, 2,
        "live and previous generations kept, older removed"
    );
    let text = d.get("/metrics").1;
    assert_eq!(
        metric_matching(
            &text,
            "certgate_rotations_total",
            &[("set", "web"), ("outcome", "published")]
        ),
        Some(2.0)
    );
    let status = d.status();
    assert_eq!(status["sets"][0]["last_candidate"]["outcome"], "published");
}

#[test]
fn bad_rotations_are_rejected_and_the_last_good_stays_live() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    let now = time::OffsetDateTime::now_utc();
    let expired = f.leaf(&LeafSpec::new("web.example.com").valid(
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    ));
    let wrong_name = f.leaf(&LeafSpec::new("other.example.com"));
    let stranger = Ca::root("stranger", Alg::P256).leaf(&LeafSpec::new("web.example.com"));
    let other_key = f.good();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "expired",
            chain(&expired, &f.inter),
            expired.key.pkcs8_pem().into_bytes(),
        ),
        (
            "name_mismatch",
            chain(&wrong_name, &f.inter),
            wrong_name.key.pkcs8_pem().into_bytes(),
        ),
        (
            "unknown_issuer",
            stranger.cert_pem.clone().into_bytes(),
            stranger.key.pkcs8_pem().into_bytes(),
        ),
        (
            "key_mismatch",
            chain(&a, &f.inter),
            other_key.key.pkcs8_pem().into_bytes(),
        ),
        (
            "no_certificate",
            b"garbage, not PEM".to_vec(),
            a.key.pkcs8_pem().into_bytes(),
        ),
        ("empty", Vec::new(), a.key.pkcs8_pem().into_bytes()),
    ];
    for (reason, cert, key) in cases {
        let before = rejected(&d, reason);
        f.rotate_raw(&cert, &key, f.root.cert_pem.as_bytes());
        wait_until(BOUND, reason, || rejected(&d, reason) > before);
        assert!(
            f.published_cert().starts_with(&a.cert_pem),
            "{reason}: last good generation still published"
        );
        assert_eq!(
            f.published_key(),
            a.key.pkcs8_pem(),
            "{reason}: key untouched"
        );
        assert_eq!(d.get("/readyz").0, 200, "{reason}: still ready");
        let st = d.status();
        assert_eq!(st["sets"][0]["last_candidate"]["outcome"], "rejected");
        assert_eq!(
            st["sets"][0]["last_candidate"]["reasons"][0]["reason"],
            reason
        );
        // The log line may trail the status by a moment on a loaded machine.
        wait_until(BOUND, &format!("{reason}: logged"), || {
            d.log_text().contains(reason)
        });
    }
    // Secrets never leak into logs, /status or /metrics.
    let all = format!(
        "{}\n{}\n{}",
        d.log_text(),
        d.get("/status").1,
        d.get("/metrics").1
    );
    for k in [&a.key, &other_key.key] {
        let b64 = base64_of(&k.pkcs8_der);
        assert!(!all.contains(&b64[20..60]), "key bytes leaked");
    }
}

#[test]
fn trust_bundle_that_would_orphan_the_live_leaf_is_refused() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    let new_root = Ca::root("replacement root", Alg::P256);
    f.rotate_raw(
        &chain(&a, &f.inter),
        a.key.pkcs8_pem().as_bytes(),
        new_root.cert_pem.as_bytes(),
    );
    wait_until(BOUND, "orphan rejection", || {
        rejected(&d, "orphans_live_leaf") >= 1.0
    });
    let published_ca = fs::read_to_string(f.publish().join("ca.crt")).unwrap();
    assert_eq!(published_ca, f.root.cert_pem, "old bundle stays published");
    // A bundle carrying both roots keeps the live leaf trusted and is published.
    let both = format!("{}{}", f.root.cert_pem, new_root.cert_pem);
    f.rotate_raw(
        &chain(&a, &f.inter),
        a.key.pkcs8_pem().as_bytes(),
        both.as_bytes(),
    );
    wait_until(BOUND, "bundle with both roots published", || {
        fs::read_to_string(f.publish().join("ca.crt")).unwrap_or_default() == both
    });
}

#[test]
fn workload_refusing_the_new_cert_is_swapped_back() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let b = f.good();
    let (_w, d) = start_verified(&f, &a, vec![pem_marker(&b)]);
    f.rotate(&b);
    wait_until(BOUND, "rollback", || rollbacks(&d) == Some(1.0));
    assert!(
        f.published_cert().starts_with(&a.cert_pem),
        "previous generation restored"
    );
    assert_eq!(f.published_key(), a.key.pkcs8_pem());
    wait_live(&d, &a);
    let st = d.status();
    assert_eq!(st["sets"][0]["last_candidate"]["outcome"], "rolled_back");
    assert!(st["sets"][0]["last_rollback"].is_string());
    assert_eq!(d.get("/readyz").0, 200);
    // The refused candidate is not retried until the source changes: a resync-free wait shows
    // no second rollback.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rollbacks(&d), Some(1.0));
}

/// A workload refusing leaves whose PEM holds any of `refuse`, and a daemon verifying it,
/// with `live` published and seen served.
fn start_verified(f: &Fixture, live: &Leaf, refuse: Vec<String>) -> (Workload, Running) {
    let w = Workload::start(f.publish(), Behaviour::RefuseWhenPemContains(refuse));
    let d = Running::start(&f.config(&format!(
        "verify_addr = \"{}\"\nverify_timeout = \"2s\"\n",
        w.addr
    )));
    wait_live(&d, live);
    wait_until(BOUND, "workload verified", || serving(&d) == Some(1.0));
    (w, d)
}

/// `certgate_workload_serving_live_cert` of the set.
fn serving(d: &Running) -> Option<f64> {
    d.metric("certgate_workload_serving_live_cert{set=\"web\"}")
}

/// Waits until the set's workload verification message contains `needle`.
fn wait_workload_message(d: &Running, needle: &str) {
    wait_until(BOUND, needle, || {
        d.status()["sets"][0]["workload"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle))
    });
}

fn rollbacks(d: &Running) -> Option<f64> {
    metric_matching(
        &d.get("/metrics").1,
        "certgate_rotations_total",
        &[("outcome", "rolled_back")],
    )
}

/// The last base64 line of a leaf's PEM (its signature) identifies it.
fn pem_marker(leaf: &Leaf) -> String {
    leaf.cert_pem
        .lines()
        .rev()
        .nth(1)
        .expect("a PEM has lines")
        .to_string()
}

#[test]
fn rotations_wait_for_the_verdict_so_swap_back_returns_to_verified_material() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let (b, c) = (f.good(), f.good());
    let (_w, d) = start_verified(&f, &a, vec![pem_marker(&b), pem_marker(&c)]);
    // B and C both arrive inside B's verification window. C must not be published on top of
    // an unverified B: B is refused and rolled back to A first, then C gets its own verdict.
    f.rotate(&b);
    wait_until(BOUND, "B published", || {
        f.published_cert().starts_with(&b.cert_pem)
    });
    // A verdict about A says nothing about B (the directory changes a moment before the
    // status does).
    wait_until(BOUND, "B not yet known to be served", || {
        serving(&d) == Some(0.0)
    });
    f.rotate(&c);
    wait_until(BOUND, "two rollbacks", || rollbacks(&d) == Some(2.0));
    wait_live(&d, &a);
    assert!(f.published_cert().starts_with(&a.cert_pem));
    assert_eq!(f.published_key(), a.key.pkcs8_pem());
    wait_until(BOUND, "workload back on A", || serving(&d) == Some(1.0));
    // Each rollback has a real reaction time: source change to restored generation.
    let metrics = d.get("/metrics").1;
    let count = metric_matching(
        &metrics,
        "certgate_rotation_reaction_seconds_count",
        &[("outcome", "rolled_back")],
    );
    let sum = metric_matching(
        &metrics,
        "certgate_rotation_reaction_seconds_sum",
        &[("outcome", "rolled_back")],
    );
    assert_eq!(count, Some(2.0), "{metrics}");
    assert!(sum.is_some_and(|s| s > 0.0), "{metrics}");
}

#[test]
fn workload_starting_after_the_first_publish_is_seen_serving_at_the_next_resync() {
    // A native sidecar's workload starts only once certgate is ready, possibly after the first
    // publish's verification gave up: the resync verifies it again.
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let config = f.config(&format!(
        "verify_addr = \"{port}\"\nverify_timeout = \"1s\"\n"
    ));
    let text = fs::read_to_string(&config).expect("config");
    fs::write(
        &config,
        text.replace("resync_interval = \"60s\"", "resync_interval = \"1s\""),
    )
    .expect("rewrite config");
    let d = Running::start(&config);
    wait_live(&d, &a);
    wait_workload_message(&d, "did not answer");
    assert_eq!(serving(&d), Some(0.0));
    let _w = Workload::start_on(&port.to_string(), f.publish(), Behaviour::Reloading);
    wait_until(BOUND, "workload seen serving", || serving(&d) == Some(1.0));
    assert!(
        f.published_cert().starts_with(&a.cert_pem),
        "nothing swapped"
    );
    // The rolled_back counter exists at 0 from the start (issue 14).
    assert_eq!(
        rollbacks(&d),
        Some(0.0),
        "no rollback without a previous generation"
    );
}

#[test]
fn workload_that_never_reloads_is_reported_stale() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    drop(d);
    // Workload loads A once, then the daemon restarts with verification and B arrives.
    let w = Workload::start(f.publish(), Behaviour::Stale);
    let d = Running::start(&f.config(&format!(
        "verify_addr = \"{}\"\nverify_timeout = \"1s\"\n",
        w.addr
    )));
    wait_live(&d, &a);
    let b = f.good();
    f.rotate(&b);
    wait_live(&d, &b);
    wait_workload_message(&d, "published earlier");
    let w = &d.status()["sets"][0]["workload"];
    assert!(
        w["message"]
            .as_str()
            .is_some_and(|m| m.contains("no reload is configured")),
        "the stale text says what was sent: {w}"
    );
    assert!(w["reason"].is_null(), "no reload, nothing rejected: {w}");
    assert_eq!(serving(&d), Some(0.0));
    assert!(
        f.published_cert().starts_with(&b.cert_pem),
        "a valid cert is not swapped back for a lazy workload"
    );
}

#[test]
fn expiry_flips_readiness_without_file_events() {
    let f = Fixture::new();
    let now = time::OffsetDateTime::now_utc();
    let short = f.leaf(&LeafSpec::new("web.example.com").valid(
        now - time::Duration::hours(1),
        now + time::Duration::seconds(3),
    ));
    f.rotate(&short);
    let d = Running::start(&f.config(""));
    wait_live(&d, &short);
    assert_eq!(d.get("/readyz").0, 200);
    wait_until(BOUND, "not ready after expiry", || {
        d.get("/readyz").0 == 503
    });
    let (_, body) = d.get("/readyz");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(d.metric("certgate_cert_valid{set=\"web\"}"), Some(0.0));
    assert_eq!(d.metric("certgate_ready"), Some(0.0));
    // The timer (not a file event) recorded the crossing.
    wait_until(BOUND, "threshold event", || {
        d.get("/status").1.contains("expired at")
    });
}

#[test]
fn files_missing_at_start_then_appearing() {
    let f = Fixture::new();
    let d = Running::start(&f.config(""));
    wait_until(BOUND, "first evaluation", || {
        d.get("/readyz").1.contains("not found")
    });
    assert_eq!(d.get("/readyz").0, 503);
    assert_eq!(
        d.get("/healthz").0,
        200,
        "a missing file never fails liveness"
    );
    let a = f.good();
    f.rotate(&a);
    wait_live(&d, &a);
    assert_eq!(d.get("/readyz").0, 200);
}

#[test]
fn directory_deleted_and_recreated() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    fs::remove_dir_all(f.src()).unwrap();
    wait_until(BOUND, "missing files noticed", || {
        rejected(&d, "missing") >= 1.0
    });
    assert!(f.published_cert().starts_with(&a.cert_pem));
    let b = f.good();
    f.rotate(&b);
    wait_live(&d, &b);
}

#[test]
fn plain_writer_never_publishes_a_torn_pair() {
    let f = Fixture::new();
    let a = f.good();
    fs::create_dir_all(f.src()).unwrap();
    fs::write(f.src().join("tls.crt"), chain(&a, &f.inter)).unwrap();
    fs::write(f.src().join("tls.key"), a.key.pkcs8_pem()).unwrap();
    fs::write(f.src().join("ca.crt"), &f.root.cert_pem).unwrap();
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    let pairs = [(a.cert_pem.clone(), a.key.pkcs8_pem())];
    let b = f.good();
    // Cert first, key well after the settle window.
    fs::write(f.src().join("tls.crt"), chain(&b, &f.inter)).unwrap();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(15));
        let (c, k) = (f.published_cert(), f.published_key());
        assert!(
            pairs
                .iter()
                .any(|(pc, pk)| c.starts_with(pc.as_str()) && k == *pk),
            "torn pair published"
        );
    }
    fs::write(f.src().join("tls.key"), b.key.pkcs8_pem()).unwrap();
    wait_live(&d, &b);
    assert!(f.published_cert().starts_with(&b.cert_pem));
    assert_eq!(f.published_key(), b.key.pkcs8_pem());
}

#[test]
fn restart_keeps_the_last_good_generation() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    assert_eq!(d.terminate(), Some(0), "SIGTERM exits 0");
    f.rotate_raw(b"corrupted", b"corrupted", f.root.cert_pem.as_bytes());
    let d = Running::start(&f.config(""));
    wait_until(BOUND, "source rejected", || {
        rejected(&d, "no_certificate") >= 1.0
    });
    assert_eq!(
        d.live_fingerprint(0).as_deref(),
        Some(fingerprint(&a.cert_der).as_str())
    );
    assert!(f.published_cert().starts_with(&a.cert_pem));
    assert_eq!(
        d.get("/readyz").0,
        200,
        "the kept generation is valid, so ready"
    );
}

#[test]
fn many_sets_only_the_rotating_one_is_revalidated() {
    let f = Fixture::new();
    let mut text = String::from("[daemon]\nsettle = \"50ms\"\n");
    let mut leaves = Vec::new();
    for i in 0..5 {
        let dir = f.tmp.path().join(format!("src{i}"));
        let leaf = f.good();
        atomic_write(
            &dir,
            &[
                ("tls.crt", &chain(&leaf, &f.inter)),
                ("tls.key", leaf.key.pkcs8_pem().as_bytes()),
                ("ca.crt", f.root.cert_pem.as_bytes()),
            ],
        );
        text.push_str(&format!(
            "[[set]]\nname = \"s{i}\"\ncert = \"{0}/tls.crt\"\nkey = \"{0}/tls.key\"\ntrust = \"{0}/ca.crt\"\npublish_dir = \"{1}\"\n",
            dir.display(),
            f.tmp.path().join(format!("live{i}")).display()
        ));
        leaves.push(leaf);
    }
    let cfg = f.tmp.path().join("many.toml");
    fs::write(&cfg, text).unwrap();
    let d = Running::start(&cfg);
    wait_until(BOUND, "all sets ready", || d.get("/readyz").0 == 200);
    let new = f.good();
    atomic_write(
        &f.tmp.path().join("src3"),
        &[
            ("tls.crt", &chain(&new, &f.inter)),
            ("tls.key", new.key.pkcs8_pem().as_bytes()),
            ("ca.crt", f.root.cert_pem.as_bytes()),
        ],
    );
    let want = fingerprint(&new.cert_der);
    wait_until(BOUND, "s3 rotated", || {
        d.status()["sets"][3]["live"]["chain"][0]["fingerprint_sha256"] == want.as_str()
    });
    let m = d.get("/metrics").1;
    for i in 0..5 {
        let n = metric_matching(
            &m,
            "certgate_rotations_total",
            &[("set", &format!("s{i}")), ("outcome", "published")],
        );
        assert_eq!(n, Some(if i == 3 { 2.0 } else { 1.0 }), "set s{i}");
    }
    let (_, verbose) = d.get("/readyz?verbose");
    assert_eq!(verbose.matches("[+]set").count(), 5, "{verbose}");
}

#[test]
fn endpoints_report_what_is_live() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let d = Running::start(&f.config(""));
    wait_live(&d, &a);
    assert_eq!(d.get("/healthz"), (200, "ok\n".into()));
    let (code, verbose) = d.get("/readyz?verbose");
    assert_eq!(code, 200);
    assert!(verbose.contains("[+]set web ok"), "{verbose}");
    let st = d.status();
    let set = &st["sets"][0];
    assert_eq!(set["mode"], "publish");
    assert_eq!(set["source"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        set["live"]["chain"][0]["sans"][0]["value"],
        "web.example.com"
    );
    assert_eq!(
        set["live"]["chain"].as_array().map(Vec::len),
        Some(3),
        "leaf, intermediate, anchor"
    );
    assert!(set["live"]["effective_expiry"].as_i64().is_some());
    let m = d.get("/metrics").1;
    for name in [
        "certgate_cert_not_after_timestamp_seconds{role=\"leaf\",set=\"web\"}",
        "certgate_cert_not_after_timestamp_seconds{role=\"intermediate\",set=\"web\"}",
        "certgate_cert_not_after_timestamp_seconds{role=\"anchor\",set=\"web\"}",
        "certgate_cert_effective_expiry_timestamp_seconds{set=\"web\"}",
        "certgate_trust_bundle_anchors{set=\"web\"}",
        "certgate_cert_valid{set=\"web\"}",
        "certgate_ready",
    ] {
        assert!(
            crate::util::daemon::metric_value(&m, name).is_some(),
            "missing {name}\n{m}"
        );
    }
    for family in [
        "certgate_cert_info{",
        "certgate_trust_bundle_info{",
        "certgate_rotation_reaction_seconds_bucket{",
        "certgate_handshake_duration_seconds_bucket{",
        "certgate_build_info{",
        "x509_cert_not_after{",
        "x509_cert_not_before{",
        "x509_cert_expired{",
    ] {
        assert!(m.contains(family), "missing {family}");
    }
    let leaf_na = metric_matching(
        &m,
        "x509_cert_not_after",
        &[("subject_CN", "web.example.com"), ("filename", "tls.crt")],
    );
    assert!(leaf_na.is_some(), "enix-compatible leaf series");
    // After a rotation, the old leaf's series are gone (bounded cardinality).
    let old_fp = fingerprint(&a.cert_der);
    let b = f.good();
    f.rotate(&b);
    wait_live(&d, &b);
    let m = d.get("/metrics").1;
    assert!(!m.contains(&old_fp), "old leaf series removed");
    assert!(m.contains(&fingerprint(&b.cert_der)));
}

#[test]
fn monitor_mode_validates_without_publishing() {
    let f = Fixture::new();
    let a = f.good();
    f.rotate(&a);
    let src = f.src();
    let d = Running::start_args(&[
        "run",
        "--cert",
        &src.join("tls.crt").display().to_string(),
        "--key",
        &src.join("tls.key").display().to_string(),
        "--trust",
        &src.join("ca.crt").display().to_string(),
        "--name",
        "web.example.com",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    wait_live(&d, &a);
    assert!(d.log_text().contains("monitor mode"), "says so at start-up");
    assert!(!f.publish().exists());
    assert_eq!(d.status()["sets"][0]["mode"], "monitor");
    f.rotate_raw(
        b"broken",
        a.key.pkcs8_pem().as_bytes(),
        f.root.cert_pem.as_bytes(),
    );
    wait_until(BOUND, "not ready on bad source", || {
        d.get("/readyz").0 == 503
    });
    assert_eq!(d.terminate(), Some(0));
}
