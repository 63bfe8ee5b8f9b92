//! `certgate demo`: the whole lifecycle on a throwaway PKI, in one process.
//!
//! A CA and leaves are minted with rcgen; each candidate is written into a source directory the
//! way kubelet updates a Secret volume; the real daemon (the same [`Server`] `certgate run`
//! uses) gates it into a publish directory that a small TLS workload serves; and what the
//! workload does with it decides whether a publish stands or is swapped back. Each round:
//!
//! 1. a good certificate → published, and the workload serves it;
//! 2. a certificate from an unknown CA → rejected, the previous generation stays live;
//! 3. a certificate the workload refuses → published, then swapped back;
//! 4. another good certificate → published.
//!
//! Outcomes are read from the daemon's own snapshots, the ones `/status` renders. Everything
//! lives in a private directory under the system temp dir, removed on exit. Daemon logs are off
//! except errors (on stderr); `RUST_LOG=info` shows them all.

use std::fs;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cli::DemoArgs;
use crate::commands::{wait_for_signal, Outcome, Server};
use crate::config::{Config, ConfigError, RawConfig, RawDaemon, RawSet, MAX_FILE_SIZE};
use crate::labels::Outcome as Rotation;
use crate::pipeline::inspect::{inspect_cert, San};
use crate::pipeline::load::{load_set, SourcePaths, DATA_LINK};
use crate::state::{CandidateStatus, SetStatus, Snapshot};

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
/// How long a connection to the demo workload may take.
const WORKLOAD_CONN_TIMEOUT: Duration = Duration::from_secs(5);
/// Width of the step column, so the outcomes line up.
const LABEL_WIDTH: usize = 50;
/// Longest reason message printed; `/status` has the full text.
const MESSAGE_WIDTH: usize = 120;

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
    init_logging();
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

/// Errors always reach stderr (a daemon that cannot start must say why); the daemon's routine
/// logs would drown the demo's own lines, so they need `RUST_LOG`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .try_init();
}

async fn demo(listen: SocketAddr, every: Duration, once: bool, tmp: &TempDir) -> Outcome {
    println!("certgate demo: throwaway PKI in {}", tmp.path().display());
    // Taken over first, so Ctrl-C at any point stops in order and removes the temp dir; a
    // signal during setup is seen as soon as the scenario starts.
    let (interrupt_tx, mut interrupt_rx) = watch::channel(false);
    let tmp_path = tmp.path().to_path_buf();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        let _ = interrupt_tx.send(true);
        wait_for_signal().await;
        // The orderly stop is stuck: clean up what we can and leave.
        let _ = fs::remove_dir_all(&tmp_path);
        std::process::exit(130);
    });
    let failed = |msg: String| {
        eprintln!("certgate demo: {msg}");
        Outcome::Failed
    };
    let pki = match Pki::new() {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot mint the demo CA: {e}")),
    };
    let source = tmp.path().join("source");
    let publish = tmp.path().join("publish");
    let workload = match Workload::start(publish.clone()).await {
        Ok(w) => w,
        Err(e) => return failed(format!("cannot start the demo workload: {e}")),
    };
    let config = match demo_config(listen, &source, &publish, workload.addr) {
        Ok(c) => c,
        Err(e) => return failed(format!("demo configuration: {e}")),
    };
    let first_round = match pki.round() {
        Ok(r) => r,
        Err(e) => return failed(format!("cannot mint the demo certificates: {e}")),
    };
    // The first candidate goes in before the daemon starts: its first evaluation then finds
    // material, where an empty volume would be counted (and shown) as a rejection.
    let first_started = Instant::now();
    if let Err(e) = write_candidate(&source, &pki, &first_round[0].leaf).await {
        return failed(e);
    }
    let server = match Server::bind(config).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let base = admin_base(server.local_addr());
    println!("  status  {base}/status   metrics {base}/metrics");
    println!(
        "  source  {}   publish {}   workload {}",
        source.display(),
        publish.display(),
        workload.addr
    );

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
            _ = interrupt_rx.wait_for(|s| *s) => {
                println!();
                println!("certgate demo: stopping");
                Ok(())
            }
        }
    };
    // The daemon only ends on its own when it fails; the scenario then stops at once rather
    // than at its next wait.
    let (result, daemon_outcome) = tokio::select! {
        r = scenario => {
            let _ = stop_tx.send(true);
            (r, daemon.await)
        }
        o = &mut daemon => (Err("the daemon stopped".to_string()), o),
    };
    signals.abort();
    drop(workload);
    match result {
        Err(e) => {
            println!();
            failed(e)
        }
        Ok(()) if daemon_outcome != Outcome::Ok => failed("the daemon failed".into()),
        Ok(()) => Outcome::Ok,
    }
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
    leaf: Leaf,
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
    ) -> Result<(), String> {
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
            println!("round {round_no}");
            round = self
                .pki
                .round()
                .map_err(|e| format!("cannot mint the demo certificates: {e}"))?;
        }
    }

    /// Writes a step's candidate (unless `written` says when it was) and waits for, then
    /// prints, what the daemon made of it. Returns when the step started.
    async fn step(
        &mut self,
        n: usize,
        step: &Step,
        written: Option<Instant>,
    ) -> Result<Instant, String> {
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
        print!("[{n}] {label:<LABEL_WIDTH$} → ");
        flush();
        match step.expect {
            Expect::Published => {
                let generation = self.published(fp).await?;
                print!("published generation {generation}");
                flush();
                self.served(fp).await?;
                println!("; the workload serves it");
            }
            Expect::Rejected => {
                let c = self
                    .wait(OUTCOME_BOUND, "a verdict", |s| candidate(s, fp).cloned())
                    .await?;
                if c.outcome != Rotation::Rejected {
                    return Err(format!("expected a rejection, got {}", describe(&c)));
                }
                print!("{}", clip(&describe(&c), MESSAGE_WIDTH));
                let live = live_generation(&self.rx.borrow());
                match (&before, &live) {
                    (Some(b), Some(l)) if b == l => println!("; {l} stays live"),
                    _ => {
                        return Err(format!(
                            "the live generation changed from {before:?} to {live:?} on a rejection"
                        ))
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
                    (Rotation::Published, Some(g)) => print!("published generation {g}, "),
                    // Swapped back before we looked: it was published, under a name now gone.
                    (Rotation::RolledBack, _) => print!("published, "),
                    _ => return Err(format!("expected a publish, got {}", describe(&c))),
                }
                flush();
                let c = self
                    .wait(VERIFY_TIMEOUT + OUTCOME_BOUND, "the swap-back", |s| {
                        candidate(s, fp)
                            .filter(|c| c.outcome != Rotation::Published)
                            .cloned()
                    })
                    .await?;
                if c.outcome != Rotation::RolledBack {
                    return Err(format!("expected a swap-back, got {}", describe(&c)));
                }
                let why = c.reasons.first().map(|p| p.message.as_str()).unwrap_or("");
                print!("then rolled back: {}", clip(why, MESSAGE_WIDTH));
                let live = live_generation(&self.rx.borrow());
                match (&before, &live) {
                    (Some(b), Some(l)) if b == l => println!("; {l} live again"),
                    _ => {
                        return Err(format!(
                            "swapped back to {live:?}, expected the previous generation {before:?}"
                        ))
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
    async fn finish(&self) -> Result<(), String> {
        match crate::http::client_request_body("GET", &self.readyz, Duration::from_secs(2)).await {
            Ok((200, _)) => {
                println!("done: every step went as expected; /readyz answers 200");
                Ok(())
            }
            Ok((code, body)) => Err(format!("/readyz answered {code}: {}", body.trim())),
            Err(e) => Err(format!("/readyz: {e}")),
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

fn flush() {
    // Progress only: a closed stdout is not worth failing the demo over.
    let _ = io::stdout().flush();
}

/// Writes `leaf` with its key and the demo trust bundle into the source volume.
async fn write_candidate(source: &Path, pki: &Pki, leaf: &Leaf) -> Result<(), String> {
    let dir = source.to_path_buf();
    let files = vec![
        (CERT_FILE, leaf.chain_pem.clone().into_bytes(), 0o644),
        // Tighter than kubelet's default 0644: nobody else needs the demo keys.
        (KEY_FILE, leaf.key_pem.clone().into_bytes(), 0o600),
        (TRUST_FILE, pki.trust_pem.clone().into_bytes(), 0o644),
    ];
    tokio::task::spawn_blocking(move || atomic_write(&dir, &files))
        .await
        .map_err(|e| format!("writing the source volume: {e}"))?
        .map(|_| ())
        .map_err(|e| format!("writing the source volume: {e}"))
}

// === kubelet's atomic writer ===

/// Writes one generation of `files` (name, bytes, mode) into `dir` the way kubelet's
/// AtomicWriter updates a Secret volume, so the daemon sees what it sees in a pod: a new
/// `..<timestamp>` directory filled while private, `..data_tmp` pointed at it and renamed onto
/// `..data` (the one commit point), user-visible symlinks `name -> ..data/name`, the previous
/// generation removed. Returns the new generation's name.
fn atomic_write(dir: &Path, files: &[(&str, Vec<u8>, u32)]) -> io::Result<String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(at(dir))?;
    let data = dir.join(DATA_LINK);
    let old = fs::read_link(&data).ok();

    let name = crate::publish::generation_name().to_string();
    let gen = dir.join(&name);
    // Created 0700 and opened up only when complete: nobody reads a half-written generation.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&gen)
        .map_err(at(&gen))?;
    for (file, bytes, mode) in files {
        let path = gen.join(file);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .open(&path)
            .map_err(at(&path))?;
        f.write_all(bytes).map_err(at(&path))?;
        // The umask may have cleared bits of `mode`: set it explicitly.
        f.set_permissions(fs::Permissions::from_mode(*mode))
            .map_err(at(&path))?;
    }
    fs::set_permissions(&gen, fs::Permissions::from_mode(0o755)).map_err(at(&gen))?;

    let tmp = dir.join("..data_tmp");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(at(&tmp)(e)),
        _ => {}
    }
    symlink(&name, &tmp).map_err(at(&tmp))?;
    fs::rename(&tmp, &data).map_err(at(&data))?;

    for (file, _, _) in files {
        let link = dir.join(file);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(file), &link).map_err(at(&link))?;
        }
    }
    // Only ever a sibling generation directory, whatever `..data` pointed at.
    if let Some(old) = old.and_then(|o| o.to_str().map(str::to_string)) {
        if old != name && old.starts_with("..") && !old.contains('/') {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(name)
}

/// Prefixes an I/O error with the path it concerns.
fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let path = path.to_path_buf();
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

// === the throwaway PKI ===

/// A leaf ready to write.
struct Leaf {
    /// Leaf then intermediate, PEM.
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
    intermediate: CertifiedIssuer<'static, KeyPair>,
    unknown: CertifiedIssuer<'static, KeyPair>,
    /// The trust bundle: the root alone.
    trust_pem: String,
}

fn new_key() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
}

fn ca_params(cn: &str, constraints: BasicConstraints) -> CertificateParams {
    let now = time::OffsetDateTime::now_utc();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "certgate demo");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(constraints);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.use_authority_key_identifier_extension = true;
    // Backdated a little so a clock a few minutes behind still accepts it.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(365);
    p
}

impl Pki {
    fn new() -> Result<Self, rcgen::Error> {
        let root = CertifiedIssuer::self_signed(
            ca_params("certgate demo root CA", BasicConstraints::Unconstrained),
            new_key()?,
        )?;
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(
                "certgate demo intermediate CA",
                BasicConstraints::Constrained(0),
            ),
            new_key()?,
            &root,
        )?;
        let unknown = CertifiedIssuer::self_signed(
            ca_params("some other CA", BasicConstraints::Unconstrained),
            new_key()?,
        )?;
        Ok(Self {
            trust_pem: root.pem(),
            intermediate,
            unknown,
        })
    }

    /// One round's candidates, each with a fresh key, so every step is a real change.
    fn round(&self) -> Result<[Step; 4], rcgen::Error> {
        Ok([
            Step {
                label: "good certificate",
                leaf: self.leaf(IssuedBy::Ours, &[NAME])?,
                expect: Expect::Published,
            },
            Step {
                label: "certificate from an unknown CA",
                leaf: self.leaf(IssuedBy::Unknown, &[NAME])?,
                expect: Expect::Rejected,
            },
            Step {
                label: "certificate the workload refuses",
                leaf: self.leaf(IssuedBy::Ours, &[NAME, REFUSED_NAME])?,
                expect: Expect::RolledBack,
            },
            Step {
                label: "good certificate",
                leaf: self.leaf(IssuedBy::Ours, &[NAME])?,
                expect: Expect::Published,
            },
        ])
    }

    /// A server leaf for `names` issued by `by`. Ours chains leaf → intermediate (the root is
    /// the bundle); the unknown CA's is the leaf alone, as its CA is of no use to the daemon.
    fn leaf(&self, by: IssuedBy, names: &[&str]) -> Result<Leaf, rcgen::Error> {
        let issuer = match by {
            IssuedBy::Ours => &self.intermediate,
            IssuedBy::Unknown => &self.unknown,
        };
        let now = time::OffsetDateTime::now_utc();
        let key = new_key()?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, NAME);
        p.distinguished_name = dn;
        for name in names {
            p.subject_alt_names
                .push(SanType::DnsName((*name).try_into()?));
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::days(90);
        let cert = p.signed_by(&key, issuer)?;
        let fingerprint =
            crate::hex(ring::digest::digest(&ring::digest::SHA256, cert.der()).as_ref());
        let chain_pem = match by {
            IssuedBy::Ours => format!("{}{}", cert.pem(), issuer.pem()),
            IssuedBy::Unknown => cert.pem(),
        };
        Ok(Leaf {
            chain_pem,
            key_pem: key.serialize_pem(),
            fingerprint,
        })
    }
}

// === the demo workload ===

/// A TLS server on loopback that serves whatever is published, read afresh on every
/// connection (so it needs no reload signal), and refuses any leaf named `refuse.*`, the way a
/// workload fails on a certificate it cannot use. Stops when dropped.
struct Workload {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Workload {
    async fn start(publish_dir: PathBuf) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let paths = Arc::new(SourcePaths {
            cert: publish_dir.join(CERT_FILE),
            key: Some(publish_dir.join(KEY_FILE)),
            trust: None,
        });
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        tokio::spawn(serve_connection(tcp, paths.clone()));
                    }
                    // Out of descriptors or the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(tcp: TcpStream, paths: Arc<SourcePaths>) {
    // Through certgate's own loader: cert and key come from one `..data` generation even when
    // a publish or a swap-back lands mid-read.
    let material = match tokio::task::spawn_blocking(move || load_set(&paths, MAX_FILE_SIZE)).await
    {
        Ok(Ok(m)) => m,
        // Nothing published yet: closing the connection is all a workload without a
        // certificate can do.
        _ => return,
    };
    let (Some(leaf), Some(key)) = (Some(material.chain.leaf()), material.key.as_ref()) else {
        return;
    };
    let refused = inspect_cert(leaf, 0).is_ok_and(|info| {
        info.sans
            .iter()
            .any(|san| matches!(san, San::Dns(d) if d.starts_with(REFUSED_PREFIX)))
    });
    if refused {
        // Dropping the connection unanswered fails the client's handshake.
        return;
    }
    let Ok(builder) = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions() else {
        return;
    };
    let Ok(config) = builder
        .with_no_client_auth()
        .with_single_cert(material.chain.to_vec(), key.der().clone_key())
    else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let conversation = async {
        let mut tls = acceptor.accept(tcp).await?;
        tls.write_all(b"hello from the certgate demo workload\n")
            .await?;
        tls.shutdown().await
    };
    // A client that stalls must not hold a task forever; its errors are its own business.
    let _ = tokio::time::timeout(WORKLOAD_CONN_TIMEOUT, conversation).await;
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
                Err(e) => return Err(at(&path)(e)),
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
    fn atomic_write_commits_through_data_and_drops_the_old_generation() {
        let tmp = TempDir::create().expect("temp dir");
        let dir = tmp.path().join("vol");
        let first = atomic_write(&dir, &[("a", b"1".to_vec(), 0o644)]).expect("first write");
        let second = atomic_write(&dir, &[("a", b"2".to_vec(), 0o600)]).expect("second write");
        assert_ne!(first, second);
        assert_eq!(
            fs::read_link(dir.join(DATA_LINK)).ok(),
            Some(PathBuf::from(&second))
        );
        assert_eq!(fs::read(dir.join("a")).ok(), Some(b"2".to_vec()));
        assert!(!dir.join(&first).exists(), "previous generation removed");
        assert!(!dir.join("..data_tmp").exists());
        let mode =
            fs::metadata(dir.join(&second).join("a")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let path = tmp.path().to_path_buf();
        drop(tmp);
        assert!(!path.exists(), "temp dir removed on drop");
    }

    #[test]
    fn refused_leaf_names_the_refusal_and_chains_to_the_root() {
        let pki = Pki::new().expect("pki");
        let round = pki.round().expect("round");
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
