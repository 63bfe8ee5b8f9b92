//! `certgate demo`: the whole lifecycle on a throwaway PKI, in one process.
//!
//! A CA and leaves are minted with the test kit's PKI builder; each candidate is written into a
//! source directory by the test kit's kubelet writer, as kubelet updates a Secret volume; the
//! real daemon (the same [`Server`] `certgate run` uses) gates it into a publish directory that
//! the test kit's TLS workload serves; and what the workload does with it decides whether a
//! publish stands or is swapped back. Each round:
//!
//! 1. a good certificate → published, and the workload serves it;
//! 2. a certificate from an unknown CA → rejected, the previous generation stays live;
//! 3. a certificate the workload refuses → published, then swapped back;
//! 4. another good certificate → published.
//!
//! Outcomes are read from the daemon's own snapshots, the ones `/status` renders. Everything
//! lives in a private directory under the system temp dir (`TMPDIR`), removed on exit, also
//! when stdout closes early (`certgate demo | head`) or on Ctrl-C. Daemon logs are off except
//! errors (on stderr); `RUST_LOG=info` shows them all.
//!
//! Binary-side and behind the `demo` feature: the library and a `--no-default-features`
//! sidecar mint no certificates.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certgate_testkit::kubelet::{self, File};
use certgate_testkit::pki::{Alg, Ca, Eku, LeafSpec};
use certgate_testkit::workload::{Behaviour, Refusal, Workload};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;

use certgate::admin::Server;
use certgate::cli::DemoArgs;
use certgate::commands::Outcome;
use certgate::config::{Config, ConfigError, RawConfig, RawDaemon, RawSet};
use certgate::labels::Outcome as Rotation;
use certgate::pipeline::inspect::{inspect_cert, San};
use certgate::shutdown;
use certgate::state::{CandidateStatus, SetStatus, Snapshot};

/// The name every demo leaf is issued for and the daemon requires.
const NAME: &str = "demo.local";
/// The demo workload refuses any leaf with a DNS name starting with this.
const REFUSED_PREFIX: &str = "refuse.";
/// The extra name of step 3's leaf.
const REFUSED_NAME: &str = "refuse.demo.local";
/// File names in the source and publish directories, as in a `kubernetes.io/tls` Secret.
const CERT_FILE: &str = "tls.crt";
const KEY_FILE: &str = "tls.key";
const TRUST_FILE: &str = "ca.crt";
/// How long the workload has to serve a new leaf; short so a refusal is swapped back quickly.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on the daemon's reaction to one step (a failure limit, not a pacing delay).
const OUTCOME_BOUND: Duration = Duration::from_secs(10);
/// Width of the step column, so the outcomes line up.
const LABEL_WIDTH: usize = 50;
/// Longest reason message printed; `/status` has the full text.
const MESSAGE_WIDTH: usize = 120;

/// `print!` to stdout, flushed, returning `Err(Stop::OutputClosed)` when stdout is gone
/// instead of panicking as `print!` does.
macro_rules! out {
    ($($arg:tt)*) => {
        emit(format_args!($($arg)*))
    };
}

/// [`out!`] with a newline.
macro_rules! outln {
    () => {
        emit(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Why the demo stopped before its end.
#[derive(Debug)]
enum Stop {
    /// Something went wrong; the message says what.
    Failed(String),
    /// Nobody reads the output any more (`certgate demo | head`): stop quietly.
    OutputClosed,
}

impl From<String> for Stop {
    fn from(msg: String) -> Self {
        Self::Failed(msg)
    }
}

fn emit(args: fmt::Arguments<'_>) -> Result<(), Stop> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Stop::OutputClosed,
            _ => Stop::Failed(format!("cannot write to stdout: {e}")),
        })
}

/// `certgate demo`.
pub fn run(args: &DemoArgs) -> Outcome {
    let listen: SocketAddr = match args.listen.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!(
                "certgate demo: --listen {:?} is not an address like 127.0.0.1:9464",
                args.listen
            );
            return Outcome::Usage;
        }
    };
    // Errors always reach stderr (a daemon that cannot start must say why); the daemon's
    // routine logs would drown the demo's own lines, so they need `RUST_LOG`.
    certgate::logging::init_stderr("error");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("certgate demo: cannot start runtime: {e}");
            return Outcome::Failed;
        }
    };
    let tmp = match TempDir::create() {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "certgate demo: cannot create a directory under {}: {e}",
                std::env::temp_dir().display()
            );
            return Outcome::Failed;
        }
    };
    let outcome = rt.block_on(demo(listen, args.every, args.once, &tmp));
    // Stop what may still run (a verification follow-up, the workload's connections) before
    // removing the files they read.
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(tmp);
    outcome
}

async fn demo(listen: SocketAddr, every: Duration, once: bool, tmp: &TempDir) -> Outcome {
    let failed = |stop: Stop| match stop {
        Stop::Failed(msg) => {
            // Ends a step's half-written line; the output may be gone already.
            let _ = outln!();
            eprintln!("certgate demo: {msg}");
            Outcome::Failed
        }
        Stop::OutputClosed => Outcome::Ok,
    };
    // Taken over first, so Ctrl-C at any point stops in order and removes the temp dir; a
    // signal during setup is seen as soon as the scenario starts.
    let (signals, interrupted) = match shutdown::sigint_or_sigterm() {
        Ok(s) => s,
        Err(e) => return failed(Stop::Failed(e.to_string())),
    };
    let tmp_path = tmp.path().to_path_buf();
    let signals = tokio::spawn(signals.run(move || {
        // The orderly stop is stuck: clean up what we can before the process exits.
        let _ = fs::remove_dir_all(&tmp_path);
    }));
    match setup_and_run(listen, every, once, tmp, interrupted).await {
        Ok(()) => {
            signals.abort();
            Outcome::Ok
        }
        Err(stop) => {
            signals.abort();
            failed(stop)
        }
    }
}

async fn setup_and_run(
    listen: SocketAddr,
    every: Duration,
    once: bool,
    tmp: &TempDir,
    interrupted: shutdown::Watch,
) -> Result<(), Stop> {
    outln!("certgate demo: throwaway PKI in {}", tmp.path().display())?;
    let pki = Pki::new();
    let source = tmp.path().join("source");
    let publish = tmp.path().join("publish");
    let workload = Workload::spawn(
        (Ipv4Addr::LOCALHOST, 0).into(),
        publish.clone(),
        Behaviour::RefuseWhen(Refusal::new(|leaf| {
            inspect_cert(leaf, 0).is_ok_and(|info| {
                info.sans
                    .iter()
                    .any(|san| matches!(san, San::Dns(d) if d.starts_with(REFUSED_PREFIX)))
            })
        })),
    )
    .await
    .map_err(|e| format!("cannot start the demo workload: {e}"))?;
    let config = demo_config(listen, &source, &publish, workload.addr)
        .map_err(|e| format!("demo configuration: {e}"))?;
    let first_round = pki.round();
    // The first candidate goes in before the daemon starts: its first evaluation then finds
    // material, where an empty volume would be counted (and shown) as a rejection.
    let first_started = Instant::now();
    write_candidate(&source, &pki, &first_round[0].leaf).await?;
    let server = Server::bind(config).await.map_err(|e| e.to_string())?;
    let base = admin_base(server.local_addr());
    outln!("  status  {base}/status   metrics {base}/metrics")?;
    outln!(
        "  source  {}   publish {}   workload {}",
        source.display(),
        publish.display(),
        workload.addr
    )?;

    let scenario = Scenario {
        pki: &pki,
        source: &source,
        rx: server.shared().snapshot.clone(),
        every,
        readyz: format!("{base}/readyz"),
    };
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let daemon = server.run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    tokio::pin!(daemon);
    let scenario = async {
        tokio::select! {
            r = scenario.run(first_round, first_started, once) => r,
            () = interrupted.signaled() => {
                outln!()?;
                outln!("certgate demo: stopping")
            }
        }
    };
    // The daemon only ends on its own when it fails; the scenario then stops at once rather
    // than at its next wait.
    let (result, daemon_result) = tokio::select! {
        r = scenario => {
            let _ = stop_tx.send(true);
            (r, daemon.await)
        }
        r = &mut daemon => (Err(Stop::Failed("the daemon stopped".into())), r),
    };
    drop(workload);
    result?;
    daemon_result.map_err(|e| Stop::Failed(format!("the daemon failed: {e}")))
}

/// The set the daemon runs: the source volume gated into the publish dir, verified against the
/// demo workload. No reload action: the workload reads the publish dir on every connection.
fn demo_config(
    listen: SocketAddr,
    source: &Path,
    publish: &Path,
    workload: SocketAddr,
) -> Result<Config, ConfigError> {
    Config::from_raw(RawConfig {
        daemon: RawDaemon {
            listen: Some(listen.to_string()),
            ..RawDaemon::default()
        },
        sets: vec![RawSet {
            name: "demo".into(),
            cert: source.join(CERT_FILE),
            key: Some(source.join(KEY_FILE)),
            trust: Some(source.join(TRUST_FILE)),
            names: vec![NAME.into()],
            publish_dir: Some(publish.to_path_buf()),
            verify_addr: Some(workload.to_string()),
            verify_timeout: Some(VERIFY_TIMEOUT),
            ..RawSet::default()
        }],
        fleet: None,
    })
}

/// `http://ADDR` for the admin server; a wildcard bind address is shown as loopback, which is
/// where a browser or curl on this machine reaches it.
fn admin_base(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

// === the scenario ===

/// What a step's candidate should come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Published, and the workload serves it.
    Published,
    /// Refused by validation; the live generation stays.
    Rejected,
    /// Published, refused by the workload, swapped back.
    RolledBack,
}

/// One rotation of the scenario.
struct Step {
    label: &'static str,
    leaf: DemoLeaf,
    expect: Expect,
}

struct Scenario<'a> {
    pki: &'a Pki,
    source: &'a Path,
    rx: watch::Receiver<Arc<Snapshot>>,
    every: Duration,
    readyz: String,
}

impl Scenario<'_> {
    /// Runs rounds until one fails, or one round with `once`. The first round's first
    /// candidate is already written, at `first_started`.
    async fn run(
        mut self,
        first: [Step; 4],
        first_started: Instant,
        once: bool,
    ) -> Result<(), Stop> {
        let mut round = first;
        let mut round_no = 1u64;
        loop {
            for (i, step) in round.iter().enumerate() {
                let written = (round_no == 1 && i == 0).then_some(first_started);
                let started = self.step(i + 1, step, written).await?;
                let last = i + 1 == round.len();
                if !(once && last) {
                    // Pace the rotations; the daemon's reaction is already awaited above.
                    tokio::time::sleep_until(started + self.every).await;
                }
            }
            if once {
                return self.finish().await;
            }
            round_no += 1;
            outln!("round {round_no}")?;
            round = self.pki.round();
        }
    }

    /// Writes a step's candidate (unless `written` says when it was) and waits for, then
    /// prints, what the daemon made of it. Returns when the step started.
    async fn step(
        &mut self,
        n: usize,
        step: &Step,
        written: Option<Instant>,
    ) -> Result<Instant, Stop> {
        let fp = step.leaf.fingerprint.as_str();
        let before = live_generation(&self.rx.borrow());
        let started = match written {
            Some(at) => at,
            None => {
                let at = Instant::now();
                write_candidate(self.source, self.pki, &step.leaf).await?;
                at
            }
        };
        let label = format!("{} (leaf {}…)", step.label, short(fp, 8));
        out!("[{n}] {label:<LABEL_WIDTH$} → ")?;
        match step.expect {
            Expect::Published => {
                let generation = self.published(fp).await?;
                out!("published generation {generation}")?;
                self.served(fp).await?;
                outln!("; the workload serves it")?;
            }
            Expect::Rejected => {
                let c = self
                    .wait(OUTCOME_BOUND, "a verdict", |s| candidate(s, fp).cloned())
                    .await?;
                if c.outcome != Rotation::Rejected {
                    return Err(Stop::Failed(format!(
                        "expected a rejection, got {}",
                        describe(&c)
                    )));
                }
                out!("{}", clip(&describe(&c), MESSAGE_WIDTH))?;
                let live = live_generation(&self.rx.borrow());
                match (&before, &live) {
                    (Some(b), Some(l)) if b == l => outln!("; {l} stays live")?,
                    _ => {
                        return Err(Stop::Failed(format!(
                            "the live generation changed from {before:?} to {live:?} on a rejection"
                        )))
                    }
                }
            }
            Expect::RolledBack => {
                let (c, generation) = self
                    .wait(OUTCOME_BOUND, "a verdict", |s| {
                        candidate(s, fp).map(|c| (c.clone(), live_generation_of(s)))
                    })
                    .await?;
                match (c.outcome, generation) {
                    (Rotation::Published, Some(g)) => out!("published generation {g}, ")?,
                    // Swapped back before we looked: it was published, under a name now gone.
                    (Rotation::RolledBack, _) => out!("published, ")?,
                    _ => {
                        return Err(Stop::Failed(format!(
                            "expected a publish, got {}",
                            describe(&c)
                        )))
                    }
                }
                let c = self
                    .wait(VERIFY_TIMEOUT + OUTCOME_BOUND, "the swap-back", |s| {
                        candidate(s, fp)
                            .filter(|c| c.outcome != Rotation::Published)
                            .cloned()
                    })
                    .await?;
                if c.outcome != Rotation::RolledBack {
                    return Err(Stop::Failed(format!(
                        "expected a swap-back, got {}",
                        describe(&c)
                    )));
                }
                let why = c.reasons.first().map(|p| p.message.as_str()).unwrap_or("");
                out!("then rolled back: {}", clip(why, MESSAGE_WIDTH))?;
                let live = live_generation(&self.rx.borrow());
                match (&before, &live) {
                    (Some(b), Some(l)) if b == l => outln!("; {l} live again")?,
                    _ => {
                        return Err(Stop::Failed(format!(
                            "swapped back to {live:?}, expected the previous generation {before:?}"
                        )))
                    }
                }
            }
        }
        Ok(started)
    }

    /// Waits for `fp` to be published; returns the generation it went live as.
    async fn published(&mut self, fp: &str) -> Result<String, String> {
        let (c, generation) = self
            .wait(OUTCOME_BOUND, "a verdict", |s| {
                candidate(s, fp).map(|c| (c.clone(), live_generation_of(s)))
            })
            .await?;
        match (c.outcome, generation) {
            (Rotation::Published, Some(g)) => Ok(g),
            _ => Err(format!("expected a publish, got {}", describe(&c))),
        }
    }

    /// Waits for the daemon's post-publish check to find the workload serving `fp`.
    async fn served(&mut self, fp: &str) -> Result<(), String> {
        self.wait(OUTCOME_BOUND, "the workload check", |s| {
            if let Some(c) = candidate(s, fp).filter(|c| c.outcome != Rotation::Published) {
                return Some(Err(format!(
                    "instead of being served it was {}",
                    describe(c)
                )));
            }
            let w = s.workload.as_ref()?;
            (w.served_fingerprint_sha256.as_deref() == Some(fp)).then(|| {
                if w.serving_live_cert {
                    Ok(())
                } else {
                    Err(w.message.clone())
                }
            })
        })
        .await?
    }

    /// Waits until `pick` finds what it wants in the demo set's status, on every snapshot the
    /// daemon publishes, for at most `bound`.
    async fn wait<T>(
        &mut self,
        bound: Duration,
        what: &str,
        mut pick: impl FnMut(&SetStatus) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + bound;
        loop {
            let snapshot = self.rx.borrow_and_update().clone();
            if let Some(found) = snapshot.sets.first().and_then(|s| pick(s)) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, self.rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(format!("the daemon stopped while waiting for {what}")),
                Err(_) => {
                    return Err(format!(
                        "no sign of {what} within {}s (see /status)",
                        bound.as_secs()
                    ))
                }
            }
        }
    }

    /// After a `--once` round: the admin server must call the result ready.
    async fn finish(&self) -> Result<(), Stop> {
        match certgate::http::client_request_body("GET", &self.readyz, Duration::from_secs(2)).await
        {
            Ok((200, _)) => {
                outln!("done: every step went as expected; /readyz answers 200")?;
                Ok(())
            }
            Ok((code, body)) => Err(Stop::Failed(format!(
                "/readyz answered {code}: {}",
                body.trim()
            ))),
            Err(e) => Err(Stop::Failed(format!("/readyz: {e}"))),
        }
    }
}

fn candidate<'a>(set: &'a SetStatus, fp: &str) -> Option<&'a CandidateStatus> {
    set.last_candidate
        .as_ref()
        .filter(|c| c.fingerprint_sha256.as_deref() == Some(fp))
}

fn live_generation_of(set: &SetStatus) -> Option<String> {
    set.live
        .as_ref()
        .and_then(|l| l.generation.as_ref().map(|g| g.to_string()))
}

fn live_generation(snapshot: &Snapshot) -> Option<String> {
    snapshot.sets.first().and_then(|s| live_generation_of(s))
}

/// `outcome: reason: message`, as the daemon recorded it.
fn describe(c: &CandidateStatus) -> String {
    match c.reasons.first() {
        Some(p) => format!(
            "{}: {}: {}",
            c.outcome.as_str().replace('_', " "),
            p.reason,
            p.message
        ),
        None => c.outcome.as_str().replace('_', " "),
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// Writes `leaf` with its key and the demo trust bundle into the source volume, the way
/// kubelet updates a Secret volume.
async fn write_candidate(source: &Path, pki: &Pki, leaf: &DemoLeaf) -> Result<(), String> {
    let dir = source.to_path_buf();
    let (chain, key, trust) = (
        leaf.chain_pem.clone(),
        leaf.key_pem.clone(),
        pki.trust_pem.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let files = [
            File::new(CERT_FILE, chain.as_bytes()),
            // Tighter than kubelet's default 0644: nobody else needs the demo keys.
            File::new(KEY_FILE, key.as_bytes()).mode(0o600),
            File::new(TRUST_FILE, trust.as_bytes()),
        ];
        kubelet::write_generation(&dir, &files, |_| {})
    })
    .await
    .map_err(|e| format!("writing the source volume: {e}"))?
    .map(|_| ())
    .map_err(|e| format!("writing the source volume: {e}"))
}

// === the throwaway PKI ===

/// A leaf ready to write.
struct DemoLeaf {
    /// Leaf then intermediate (ours), or the leaf alone (the unknown CA's), PEM.
    chain_pem: String,
    /// PKCS#8 PEM.
    key_pem: String,
    /// SHA-256 of the leaf's DER, lowercase hex (how `/status` names it).
    fingerprint: String,
}

/// Which CA issues a leaf.
#[derive(Debug, Clone, Copy)]
enum IssuedBy {
    /// The demo intermediate, under the root the daemon trusts.
    Ours,
    /// A CA the trust bundle does not hold.
    Unknown,
}

/// Root → intermediate that the daemon trusts, and a CA it has never heard of.
struct Pki {
    intermediate: Ca,
    unknown: Ca,
    /// The trust bundle: the root alone.
    trust_pem: String,
}

impl Pki {
    fn new() -> Self {
        let root = Ca::root("certgate demo root CA", Alg::P256);
        let intermediate = root.intermediate("certgate demo intermediate CA", Alg::P256);
        let unknown = Ca::root("some other CA", Alg::P256);
        Self {
            trust_pem: root.cert_pem,
            intermediate,
            unknown,
        }
    }

    /// One round's candidates, each with a fresh key, so every step is a real change.
    fn round(&self) -> [Step; 4] {
        [
            Step {
                label: "good certificate",
                leaf: self.leaf(IssuedBy::Ours, &[NAME]),
                expect: Expect::Published,
            },
            Step {
                label: "certificate from an unknown CA",
                leaf: self.leaf(IssuedBy::Unknown, &[NAME]),
                expect: Expect::Rejected,
            },
            Step {
                label: "certificate the workload refuses",
                leaf: self.leaf(IssuedBy::Ours, &[NAME, REFUSED_NAME]),
                expect: Expect::RolledBack,
            },
            Step {
                label: "good certificate",
                leaf: self.leaf(IssuedBy::Ours, &[NAME]),
                expect: Expect::Published,
            },
        ]
    }

    /// A server leaf for `names` issued by `by`, valid for 90 days (backdated five minutes for
    /// a clock a little behind). Ours chains leaf → intermediate (the root is the bundle); the
    /// unknown CA's is the leaf alone, as its CA is of no use to the daemon.
    fn leaf(&self, by: IssuedBy, names: &[&str]) -> DemoLeaf {
        let now = OffsetDateTime::now_utc();
        let spec = LeafSpec::new(NAME).dns(names).eku(Eku::Server).valid(
            now - time::Duration::minutes(5),
            now + time::Duration::days(90),
        );
        let (leaf, chain_pem) = match by {
            IssuedBy::Ours => {
                let leaf = self.intermediate.leaf(&spec);
                let chain = format!("{}{}", leaf.cert_pem, self.intermediate.cert_pem);
                (leaf, chain)
            }
            IssuedBy::Unknown => {
                let leaf = self.unknown.leaf(&spec);
                let chain = leaf.cert_pem.clone();
                (leaf, chain)
            }
        };
        DemoLeaf {
            chain_pem,
            key_pem: leaf.key.pkcs8_pem(),
            fingerprint: leaf.fingerprint_sha256(),
        }
    }
}

// === the temp dir ===

/// A private directory under the system temp dir, removed (with everything in it) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> io::Result<Self> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for attempt in 0u32..100 {
            let name = match attempt {
                0 => format!("certgate-demo-{pid}"),
                n => format!("certgate-demo-{pid}-{n}"),
            };
            let path = base.join(name);
            // Never an existing path (in a shared /tmp someone else may have planted it), and
            // 0700: it holds private keys, if throwaway ones.
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "every certgate-demo-* name tried is taken",
        ))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("certgate demo: could not remove {}: {e}", self.0.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_is_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::create().expect("temp dir");
        let path = tmp.path().to_path_buf();
        let mode = fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o700));
        drop(tmp);
        assert!(!path.exists(), "temp dir removed on drop");
    }

    #[test]
    fn refused_leaf_names_the_refusal_and_chains_to_the_root() {
        let pki = Pki::new();
        let round = pki.round();
        assert_eq!(round[2].expect, Expect::RolledBack);
        assert!(REFUSED_NAME.starts_with(REFUSED_PREFIX));
        assert!(round[2].leaf.chain_pem.matches("BEGIN CERTIFICATE").count() == 2);
        assert!(round[1].leaf.chain_pem.matches("BEGIN CERTIFICATE").count() == 1);
        let fps: std::collections::BTreeSet<_> =
            round.iter().map(|s| &s.leaf.fingerprint).collect();
        assert_eq!(fps.len(), 4, "every step is a new leaf");
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééééé", 2), "éé…");
    }
}
