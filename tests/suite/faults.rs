//! Fault injection through the running daemon: a corpus of bad inputs, a rotation soak, SIGKILL
//! during publishes, a rotation storm, and a secrets scan. Short forms run in CI; long forms
//! with `CERTGATE_FAULTS_LONG=1` (see RELIABILITY.md for recorded long runs).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::daemon::{metric_matching, wait_until, Running};
use crate::util::fixtures::{chain_pem, sha256_hex as fingerprint, write_generation};
use crate::util::kubelet::atomic_write;
use crate::util::pki::{base64_of, Alg, Ca, Leaf, LeafSpec};

const BOUND: Duration = Duration::from_secs(30);

fn long() -> bool {
    std::env::var_os("CERTGATE_FAULTS_LONG").is_some()
}

struct Pki {
    root: Ca,
    inter: Ca,
}

impl Pki {
    fn new() -> Self {
        let root = Ca::root("faults root", Alg::P256);
        let inter = root.intermediate("faults intermediate", Alg::P256);
        Self { root, inter }
    }
    fn leaf(&self) -> Leaf {
        self.inter.leaf(&LeafSpec::new("web.example.com"))
    }
    /// One kubelet generation of `leaf` (with the intermediate), its key and the root.
    fn write(&self, src: &Path, leaf: &Leaf) {
        write_generation(
            src,
            &self.chain(leaf),
            leaf.key.pkcs8_pem().as_bytes(),
            self.root.cert_pem.as_bytes(),
        );
    }
    fn chain(&self, leaf: &Leaf) -> Vec<u8> {
        chain_pem(leaf, &self.inter)
    }
}

fn config(dir: &Path, src: &Path, publish: &Path) -> PathBuf {
    let text = format!(
        "[daemon]\nsettle = \"20ms\"\nresync_interval = \"60s\"\n[[set]]\nname = \"web\"\ncert = \"{0}/tls.crt\"\nkey = \"{0}/tls.key\"\ntrust = \"{0}/ca.crt\"\nnames = [\"web.example.com\"]\npublish_dir = \"{1}\"\n",
        src.display(),
        publish.display()
    );
    let p = dir.join("certgate.toml");
    fs::write(&p, text).expect("config");
    p
}

fn rejections(d: &Running) -> f64 {
    let text = d.get("/metrics").1;
    text.lines()
        .filter(|l| {
            l.starts_with("certgate_rotations_total{") && l.contains("outcome=\"rejected\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The publish dir holds exactly one of the `good` pairs, read through one `..data`.
/// The `..<timestamp>` generation directories in a publish dir.
fn generation_dirs(publish: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = fs::read_dir(publish)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            let n = n.to_string_lossy();
            n.starts_with("..") && n != "..data" && n != "..data_tmp"
        })
        .collect();
    names.sort();
    names
}

fn assert_consistent(publish: &Path, good: &[&Leaf], pki: &Pki) {
    let data = fs::read_link(publish.join("..data")).expect("..data present");
    let gen = publish.join(&data);
    let cert = fs::read(gen.join("tls.crt")).expect("cert in generation");
    let key = fs::read_to_string(gen.join("tls.key")).expect("key in generation");
    let ok = good
        .iter()
        .any(|l| cert == pki.chain(l) && key == l.key.pkcs8_pem());
    assert!(
        ok,
        "publish dir {} holds a pair that is not one of the good generations",
        gen.display()
    );
}

#[test]
fn bad_input_corpus_keeps_the_last_good_generation() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let (src, publish) = (tmp.path().join("src"), tmp.path().join("live"));
    let good = pki.leaf();
    fs::create_dir_all(&src).unwrap();
    let write_good = || {
        fs::write(src.join("tls.crt"), pki.chain(&good)).unwrap();
        fs::write(src.join("tls.key"), good.key.pkcs8_pem()).unwrap();
        fs::write(src.join("ca.crt"), &pki.root.cert_pem).unwrap();
    };
    write_good();
    let d = Running::start(&config(tmp.path(), &src, &publish));
    let want = fingerprint(&good.cert_der);
    wait_until(BOUND, "good material live", || {
        d.live_fingerprint(0).as_deref() == Some(want.as_str())
    });

    let now = time::OffsetDateTime::now_utc();
    let one_second = pki.inter.leaf(&LeafSpec::new("web.example.com").valid(
        now - time::Duration::hours(1),
        now + time::Duration::seconds(1),
    ));
    let ed = pki
        .inter
        .leaf(&LeafSpec::new("web.example.com").alg(Alg::Ed25519));
    type Setup = Box<dyn Fn(&Path)>;
    let cert_path = src.join("tls.crt");
    let chain_good = pki.chain(&good);
    let cases: Vec<(&str, &str, Setup)> = vec![
        (
            "symlink loop",
            "unreadable",
            Box::new(|p: &Path| {
                let _ = fs::remove_file(p);
                symlink(p, p).unwrap();
            }),
        ),
        (
            "directory where a file should be",
            "unreadable",
            Box::new(|p: &Path| {
                let _ = fs::remove_file(p);
                fs::create_dir(p).unwrap();
            }),
        ),
        (
            "FIFO",
            "unreadable",
            Box::new(|p: &Path| {
                let _ = fs::remove_file(p);
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: mkfifo on a path we own.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
        ),
        ("bytes appended after valid PEM", "bad_encoding", {
            let bytes = [chain_good.clone(), b"\x00\x01garbage".to_vec()].concat();
            Box::new(move |p: &Path| fs::write(p, &bytes).unwrap())
        }),
        ("truncated PEM", "bad_encoding", {
            let bytes = chain_good[..chain_good.len() / 2].to_vec();
            Box::new(move |p: &Path| fs::write(p, &bytes).unwrap())
        }),
        (
            "oversized file",
            "too_large",
            Box::new(|p: &Path| {
                let f = fs::File::create(p).unwrap();
                f.set_len(5 * 1024 * 1024).unwrap();
            }),
        ),
    ];
    for (what, reason, setup) in &cases {
        let before = rejections(&d);
        setup(&cert_path);
        wait_until(BOUND, what, || rejections(&d) > before);
        let st = d.status();
        assert_eq!(
            st["sets"][0]["last_candidate"]["reasons"][0]["reason"], *reason,
            "{what}"
        );
        assert_eq!(
            d.live_fingerprint(0).as_deref(),
            Some(want.as_str()),
            "{what}: last good stays live"
        );
        assert_consistent(&publish, &[&good], &pki);
        assert_eq!(d.get("/readyz").0, 200, "{what}");
        // The log line may trail the status by a moment on a loaded machine.
        crate::util::daemon::wait_until(
            Duration::from_secs(10),
            &format!("{what}: logged with its reason"),
            || d.log_text().contains(reason),
        );
        // Restore the good file (a directory or FIFO must go first).
        let _ = fs::remove_dir_all(&cert_path);
        let _ = fs::remove_file(&cert_path);
        fs::write(&cert_path, pki.chain(&good)).unwrap();
        wait_until(BOUND, "restored", || {
            d.metric("certgate_source_rejected{set=\"web\"}") == Some(0.0)
        });
    }
    // A key of the wrong algorithm for the right name (another key pair entirely).
    let before = rejections(&d);
    fs::write(src.join("tls.key"), ed.key.pkcs8_pem()).unwrap();
    wait_until(BOUND, "wrong-algorithm key", || rejections(&d) > before);
    assert_eq!(
        d.status()["sets"][0]["last_candidate"]["reasons"][0]["reason"],
        "key_mismatch"
    );
    fs::write(src.join("tls.key"), good.key.pkcs8_pem()).unwrap();
    // A file that grows while being read: the reader sees one consistent prefix or the whole;
    // whatever it sees, nothing bad is published.
    let grower = {
        let path = cert_path.clone();
        let bytes = pki.chain(&good);
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            for chunk in bytes.chunks(64) {
                std::io::Write::write_all(&mut f, chunk).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    grower.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_consistent(&publish, &[&good], &pki);
    assert_eq!(d.live_fingerprint(0).as_deref(), Some(want.as_str()));
    // A leaf valid for one second: accepted while valid or rejected, never live past expiry.
    fs::write(src.join("tls.key"), one_second.key.pkcs8_pem()).unwrap();
    fs::write(&cert_path, pki.chain(&one_second)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let (code, body) = d.get("/readyz");
    let live = d.live_fingerprint(0);
    if live.as_deref() == Some(fingerprint(&one_second.cert_der).as_str()) {
        assert_eq!(code, 503, "an expired live cert is not ready: {body}");
    } else {
        assert_eq!(code, 200);
    }
    // Secrets never leak.
    let all = format!(
        "{}\n{}\n{}",
        d.log_text(),
        d.get("/status").1,
        d.get("/metrics").1
    );
    for k in [&good.key, &ed.key, &one_second.key] {
        assert!(
            !all.contains(&base64_of(&k.pkcs8_der)[10..50]),
            "key bytes leaked"
        );
    }
}

#[test]
fn permission_denied_is_reported() {
    // Root reads any file whatever its mode, so run the real binary as nobody (setpriv, from
    // util-linux) when we are root.
    let tmp = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let p = tmp.path().join("tls.crt");
    fs::write(&p, "x").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    let bin = crate::util::bin();
    let path = p.display().to_string();
    // SAFETY: geteuid has no preconditions.
    let out = if unsafe { libc::geteuid() } == 0 {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(["check", "--cert", &path])
            .output()
            .expect("setpriv (util-linux) runs the binary unprivileged")
    } else {
        std::process::Command::new(&bin)
            .args(["check", "--cert", &path])
            .output()
            .expect("run")
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unreadable")
            && stderr.contains("ermission denied")
            && stderr.contains(&path),
        "{stderr}"
    );
}

#[test]
fn rotation_soak_one_in_three_bad() {
    let n = if long() { 1000 } else { 60 };
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let (src, publish) = (tmp.path().join("src"), tmp.path().join("live"));
    let leaves: Vec<Leaf> = (0..4).map(|_| pki.leaf()).collect();
    let stranger = Ca::root("stranger", Alg::P256).leaf(&LeafSpec::new("web.example.com"));
    let write = |leaf: &Leaf| pki.write(&src, leaf);
    write(&leaves[0]);
    let d = Running::start(&config(tmp.path(), &src, &publish));
    let mut last_good = &leaves[0];
    let started = std::time::Instant::now();
    let (mut bad, mut good) = (0, 0);
    wait_until(BOUND, "first", || {
        d.live_fingerprint(0).as_deref() == Some(fingerprint(&last_good.cert_der).as_str())
    });
    for i in 1..n {
        if i % 3 == 0 {
            let before = rejections(&d);
            // Alternate bad kinds: unknown CA, and a torn pair (cert of one, key of another).
            if i % 2 == 0 {
                atomic_write(
                    &src,
                    &[
                        ("tls.crt", stranger.cert_pem.as_bytes()),
                        ("tls.key", stranger.key.pkcs8_pem().as_bytes()),
                        ("ca.crt", pki.root.cert_pem.as_bytes()),
                    ],
                );
            } else {
                let other = &leaves[(i + 1) % leaves.len()];
                atomic_write(
                    &src,
                    &[
                        ("tls.crt", &pki.chain(&leaves[i % leaves.len()])),
                        ("tls.key", other.key.pkcs8_pem().as_bytes()),
                        ("ca.crt", pki.root.cert_pem.as_bytes()),
                    ],
                );
            }
            wait_until(BOUND, "rejection", || rejections(&d) > before);
            bad += 1;
        } else {
            let leaf = &leaves[i % leaves.len()];
            if std::ptr::eq(leaf, last_good) {
                continue;
            }
            write(leaf);
            last_good = leaf;
            let want = fingerprint(&leaf.cert_der);
            wait_until(BOUND, "rotation", || {
                d.live_fingerprint(0).as_deref() == Some(want.as_str())
            });
            good += 1;
        }
        assert_consistent(&publish, &[last_good], &pki);
    }
    assert_eq!(d.get("/readyz").0, 200);
    eprintln!(
        "soak: {n} steps, {good} published, {bad} rejected, consistent after every step, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sigkill_during_publishes_leaves_a_consistent_generation() {
    let kills = if long() { 200 } else { 15 };
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let (src, publish) = (tmp.path().join("src"), tmp.path().join("live"));
    let leaves: Vec<Leaf> = (0..3).map(|_| pki.leaf()).collect();
    let write = |leaf: &Leaf| pki.write(&src, leaf);
    write(&leaves[0]);
    let cfg = config(tmp.path(), &src, &publish);
    let good: Vec<&Leaf> = leaves.iter().collect();
    let started = std::time::Instant::now();
    let mut new_generation_survived = 0;
    for k in 0..kills {
        let mut d = Running::start(&cfg);
        wait_until(BOUND, "ready after restart", || d.get("/readyz").0 == 200);
        assert_consistent(&publish, &good, &pki);
        let generations = generation_dirs(&publish);
        write(&leaves[(k + 1) % leaves.len()]);
        // Kill at a varying moment around the publish: one in four while the source is being
        // read and validated; the rest once the new generation directory exists (files being
        // written and fsynced, ..data_tmp, the commit rename, cleanup), after 0–6 ms more.
        if k % 4 != 0 {
            let waited = std::time::Instant::now();
            while generation_dirs(&publish) == generations
                && waited.elapsed() < Duration::from_secs(10)
            {
                std::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_micros((k as u64 * 397) % 6000));
        } else {
            std::thread::sleep(Duration::from_micros((k as u64 * 397) % 3000));
        }
        let _ = d.child.kill();
        let _ = d.child.wait();
        // Whatever moment it died at, the publish dir is one complete, valid generation.
        assert_consistent(&publish, &good, &pki);
        let written = &leaves[(k + 1) % leaves.len()];
        if fs::read_to_string(publish.join("tls.crt"))
            .is_ok_and(|pem| pem.starts_with(&written.cert_pem))
        {
            new_generation_survived += 1;
        }
        let out = crate::util::certgate(&[
            "check",
            "--cert",
            &publish.join("tls.crt").display().to_string(),
            "--key",
            &publish.join("tls.key").display().to_string(),
            "--trust",
            &publish.join("ca.crt").display().to_string(),
            "--no-handshake",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "published generation valid after kill {k}"
        );
    }
    // And it resumes: the latest source goes live.
    let d = Running::start(&cfg);
    let want = fingerprint(&leaves[kills % leaves.len()].cert_der);
    wait_until(BOUND, "resume", || {
        d.live_fingerprint(0).as_deref() == Some(want.as_str())
    });
    if long() {
        // The kills must land on both sides of the commit for the run to mean anything.
        assert!(
            new_generation_survived > 0 && new_generation_survived < kills,
            "{new_generation_survived} of {kills} kills after the commit"
        );
    }
    eprintln!(
        "sigkill: {kills} kills ({new_generation_survived} after the new generation's commit, {} before it), consistent and valid after each, resumed; {:.1} s",
        kills - new_generation_survived,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn rotation_storm_leaks_neither_fds_nor_memory() {
    let n = if long() { 10_000 } else { 400 };
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let (src, publish) = (tmp.path().join("src"), tmp.path().join("live"));
    let leaves: Vec<Leaf> = (0..4).map(|_| pki.leaf()).collect();
    let write = |leaf: &Leaf| pki.write(&src, leaf);
    write(&leaves[0]);
    let d = Running::start(&config(tmp.path(), &src, &publish));
    wait_until(BOUND, "ready", || d.get("/readyz").0 == 200);
    let pid = d.child.id();
    let fds = || {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    let rss = || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    // Warm up so allocator pools and thread pools reach their steady size.
    for i in 0..40 {
        write(&leaves[i % 4]);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (fd0, rss0) = (fds(), rss());
    for i in 0..n {
        write(&leaves[(i + 1) % 4]);
    }
    let last = &leaves[n % 4];
    let want = fingerprint(&last.cert_der);
    wait_until(BOUND, "storm settles on the last write", || {
        d.live_fingerprint(0).as_deref() == Some(want.as_str())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (fd1, rss1) = (fds(), rss());
    assert_consistent(&publish, &[last], &pki);
    assert!(fd1 <= fd0 + 2, "fds grew {fd0} -> {fd1}");
    assert!(rss1 <= rss0 + 1024, "RSS grew {rss0} -> {rss1} KiB");
    let published = metric_matching(
        &d.get("/metrics").1,
        "certgate_rotations_total",
        &[("outcome", "published")],
    )
    .unwrap_or(0.0);
    assert!(published >= 1.0);
    eprintln!("storm: {n} writes, {published} publishes, fds {fd0}->{fd1}, RSS {rss0}->{rss1} KiB");
}
