//! The publish directory as the world leaves it: a volume that fills up, a state file that
//! cannot be written after the commit, a directory deleted under the daemon, a copy of the
//! Secret already where the links go, a second certgate on the same directory. Real binary,
//! real files; the full volume is a real size-limited tmpfs in a private mount namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::daemon::{wait_until, Running};
use crate::util::fixtures::sha256_hex;
use crate::util::pki::{Alg, Ca, Leaf, LeafSpec};

const BOUND: Duration = Duration::from_secs(30);

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    src: PathBuf,
    publish: PathBuf,
    ca: Ca,
    /// Extra roots in the bundle, to give a generation some size.
    filler: String,
}

impl Fixture {
    fn new(filler_roots: usize) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let src = dir.join("src");
        fs::create_dir_all(&src).unwrap();
        let ca = Ca::root("volume root", Alg::P256);
        let filler = (0..filler_roots)
            .map(|i| Ca::root(&format!("filler {i}"), Alg::P256).cert_pem)
            .collect();
        Self {
            publish: dir.join("out"),
            _tmp: tmp,
            dir,
            src,
            ca,
            filler,
        }
    }

    fn leaf(&self) -> Leaf {
        self.ca.leaf(&LeafSpec::new("localhost"))
    }

    /// Writes `leaf` as the source (plain writes, then the daemon's settle window).
    fn write(&self, leaf: &Leaf) {
        fs::write(self.src.join("tls.key"), leaf.key.pkcs8_pem()).unwrap();
        fs::write(self.src.join("tls.crt"), &leaf.cert_pem).unwrap();
        fs::write(
            self.src.join("ca.crt"),
            format!("{}{}", self.ca.cert_pem, self.filler),
        )
        .unwrap();
    }

    fn config(&self, resync: &str) -> PathBuf {
        let text = format!(
            "[daemon]\nsettle = \"20ms\"\nresync_interval = \"{resync}\"\n[[set]]\nname = \"web\"\n\
             cert = \"{0}/tls.crt\"\nkey = \"{0}/tls.key\"\ntrust = \"{0}/ca.crt\"\n\
             publish_dir = \"{1}\"\nhandshake = false\n",
            self.src.display(),
            self.publish.display()
        );
        let p = self.dir.join("certgate.toml");
        fs::write(&p, text).unwrap();
        p
    }

    /// Bytes one generation takes on a tmpfs: each file rounded up to whole pages.
    fn generation_pages(&self) -> u64 {
        ["tls.crt", "tls.key", "ca.crt"]
            .iter()
            .map(|f| fs::metadata(self.src.join(f)).unwrap().len().div_ceil(4096))
            .sum()
    }
}

fn live(d: &Running) -> Option<String> {
    d.live_fingerprint(0)
}

fn events(d: &Running, kind: &str) -> Vec<String> {
    d.status()["sets"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn generations(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("..") && n.as_bytes().get(2).is_some_and(u8::is_ascii_digit))
        .collect();
    names.sort();
    names
}

/// A full volume: the next generation does not fit. The rotation is refused as
/// `publish_failed` naming the cause, its half-written directory is removed (so it cannot fill
/// the volume for good), and the last good generation stays live and ready.
#[test]
fn a_full_volume_refuses_the_rotation_and_leaves_nothing_behind() {
    let f = Fixture::new(60);
    let first = f.leaf();
    f.write(&first);
    let pages = f.generation_pages();
    // One generation, the state file, and half of another.
    let size_kib = (pages + 1 + pages / 2) * 4;
    fs::create_dir_all(&f.publish).unwrap();
    let config = f.config("60s");
    let bin = crate::util::bin();
    let mut cmd = Command::new("unshare");
    cmd.arg("-m").arg("sh").arg("-c").arg(format!(
        "mount -t tmpfs -o size={size_kib}k,mode=0755 certgate-test {out} && exec {bin} run \
         --config {config} --listen 127.0.0.1:0 --log-format json",
        out = f.publish.display(),
        bin = bin.display(),
        config = config.display(),
    ));
    for (k, _) in std::env::vars() {
        if k.starts_with("CERTGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info");
    let d = Running::start_command(cmd);
    // The test sees the daemon's tmpfs through its root in /proc.
    let out = PathBuf::from(format!("/proc/{}/root", d.pid())).join(
        f.publish
            .strip_prefix("/")
            .expect("the temp dir is absolute"),
    );
    let first_fp = sha256_hex(&first.cert_der);
    wait_until(BOUND, "first generation live", || {
        live(&d).as_deref() == Some(first_fp.as_str())
    });
    assert_eq!(generations(&out).len(), 1);

    let second = f.leaf();
    f.write(&second);
    wait_until(BOUND, "the rotation refused", || {
        d.status()["sets"][0]["last_candidate"]["reasons"][0]["reason"] == "publish_failed"
    });
    let st = d.status();
    let msg = st["sets"][0]["last_candidate"]["reasons"][0]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_eq!(
        live(&d).as_deref(),
        Some(first_fp.as_str()),
        "last good stays"
    );
    assert_eq!(d.get("/readyz").0, 200);
    assert_eq!(
        generations(&out).len(),
        1,
        "the half-written generation is gone"
    );
    // Served files are whole: the live certificate reads back as the first leaf.
    assert_eq!(
        fs::read_to_string(out.join("tls.crt")).unwrap(),
        first.cert_pem
    );
    d.terminate();
}

/// Something fails after the `..data` commit (here the state file's temporary name is taken):
/// the workload already has the new generation, so it is reported published, with a warning,
/// and status and metrics track the new certificate.
#[test]
fn a_failure_after_the_commit_is_a_published_rotation_with_a_warning() {
    let f = Fixture::new(0);
    let first = f.leaf();
    f.write(&first);
    let d = Running::start(&f.config("60s"));
    let first_fp = sha256_hex(&first.cert_der);
    wait_until(BOUND, "first generation live", || {
        live(&d).as_deref() == Some(first_fp.as_str())
    });
    fs::create_dir(f.publish.join(".certgate-state.json.tmp")).unwrap();
    let second = f.leaf();
    f.write(&second);
    let second_fp = sha256_hex(&second.cert_der);
    wait_until(BOUND, "second generation live", || {
        live(&d).as_deref() == Some(second_fp.as_str())
    });
    let st = d.status();
    assert_eq!(st["sets"][0]["last_candidate"]["outcome"], "published");
    let warnings = events(&d, "publish_warning");
    assert!(
        warnings.iter().any(|w| w.contains("write state")),
        "{warnings:?}"
    );
    assert_eq!(
        fs::read_to_string(f.publish.join("tls.crt")).unwrap(),
        second.cert_pem
    );
    d.terminate();
}

/// The publish directory deleted under a running daemon (or its live generation): the next
/// resync publishes the live material again, and says so.
#[test]
fn a_deleted_publish_dir_is_recreated_at_resync() {
    let f = Fixture::new(0);
    let first = f.leaf();
    f.write(&first);
    let d = Running::start(&f.config("1s"));
    let fp = sha256_hex(&first.cert_der);
    wait_until(BOUND, "live", || live(&d).as_deref() == Some(fp.as_str()));
    fs::remove_dir_all(&f.publish).unwrap();
    wait_until(BOUND, "recreated", || {
        fs::read_to_string(f.publish.join("tls.crt")).is_ok_and(|c| c == first.cert_pem)
    });
    wait_until(BOUND, "reported", || !events(&d, "repaired").is_empty());
    assert_eq!(d.get("/readyz").0, 200);
    d.terminate();
}

/// The usual migration: an init container copied the Secret into the directory as plain files
/// before certgate took over. They are replaced by links into `..data`, atomically.
#[test]
fn copies_of_the_secret_are_replaced_by_links() {
    let f = Fixture::new(0);
    let first = f.leaf();
    f.write(&first);
    fs::create_dir_all(&f.publish).unwrap();
    fs::write(f.publish.join("tls.crt"), "stale copy").unwrap();
    fs::write(f.publish.join("tls.key"), "stale key").unwrap();
    let d = Running::start(&f.config("60s"));
    let fp = sha256_hex(&first.cert_der);
    wait_until(BOUND, "live", || live(&d).as_deref() == Some(fp.as_str()));
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        let target = fs::read_link(f.publish.join(name)).expect("a link");
        assert!(target.starts_with("..data"), "{name}: {target:?}");
    }
    assert_eq!(
        fs::read_to_string(f.publish.join("tls.crt")).unwrap(),
        first.cert_pem
    );
    d.terminate();
}

/// Two daemons on one publish directory would swap `..data` under each other: the second
/// refuses to run, naming the directory.
#[test]
fn a_second_certgate_on_the_same_publish_dir_refuses_to_run() {
    let f = Fixture::new(0);
    let first = f.leaf();
    f.write(&first);
    let config = f.config("60s");
    let d = Running::start(&config);
    let fp = sha256_hex(&first.cert_der);
    wait_until(BOUND, "live", || live(&d).as_deref() == Some(fp.as_str()));
    let out = crate::util::command()
        .args(["run", "--config", &config.display().to_string()])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("another certgate"), "{text}");
    assert!(text.contains(&f.publish.display().to_string()), "{text}");
    d.terminate();
}

/// The first publish fails (the publish directory cannot be created): `/readyz` says what
/// failed, not "not evaluated yet".
#[test]
fn readiness_names_a_failed_first_publish() {
    let mut f = Fixture::new(0);
    let first = f.leaf();
    f.write(&first);
    // A regular file where the publish directory's parent should be.
    fs::write(f.dir.join("blocker"), "").unwrap();
    f.publish = f.dir.join("blocker").join("out");
    let d = Running::start_args(&[
        "run",
        "--config",
        &f.config("60s").display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    wait_until(BOUND, "publish failure reported", || {
        d.get("/readyz").1.contains("publish_failed")
    });
    let (code, body) = d.get("/readyz");
    assert_eq!(code, 503);
    assert!(!body.contains("not evaluated yet"), "{body}");
    d.terminate();
}

/// inotify's instance limit is per UID across the node. With every instance of the daemon's
/// UID taken by another process, certgate still starts, says why it polls, and finds changes
/// at each resync. A real exhaustion: a helper process of the same UID holds them all.
#[test]
fn inotify_exhaustion_falls_back_to_polling() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    const UID: u32 = 61_234;
    let f = Fixture::new(0);
    let first = f.leaf();
    f.write(&first);
    let config = f.config("1s");
    // Only the test's own temp dir changes hands (its parent, /tmp, must stay as it is).
    assert!(f.dir.starts_with(std::env::temp_dir()) && f.dir != std::env::temp_dir());
    let chown = Command::new("chown")
        .args(["-R", &format!("{UID}:{UID}")])
        .arg(&f.dir)
        .status()
        .unwrap();
    assert!(chown.success());
    let mut hog = Command::new("python3")
        .args([
            "-c",
            "import ctypes, sys, time\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             fds = []\n\
             while len(fds) < 100000:\n\
             \x20   fd = libc.inotify_init()\n\
             \x20   if fd < 0: break\n\
             \x20   fds.append(fd)\n\
             print(len(fds), ctypes.get_errno(), flush=True)\n\
             time.sleep(120)\n",
        ])
        .uid(UID)
        .gid(UID)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(hog.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut cmd = crate::util::command();
    cmd.args(["run", "--config", &config.display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .uid(UID)
        .gid(UID);
    let d = Running::start_command(cmd);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let fp = sha256_hex(&first.cert_der);
        wait_until(BOUND, "live", || live(&d).as_deref() == Some(fp.as_str()));
        let problem = d.status()["watch_problem"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            problem.contains("fs.inotify.max_user_instances"),
            "held {line:?}; status: {problem:?}"
        );
        assert!(d.log_text().contains("polling every"));
        // No event can come; the resync (every second here) finds the change.
        let second = f.leaf();
        f.write(&second);
        let fp = sha256_hex(&second.cert_der);
        wait_until(BOUND, "found at resync", || {
            live(&d).as_deref() == Some(fp.as_str())
        });
    }));
    let _ = hog.kill();
    let _ = hog.wait();
    d.terminate();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
