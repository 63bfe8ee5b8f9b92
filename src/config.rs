//! The validated configuration: built from a TOML file (`--config`) or from flags, through the
//! same checks, so both paths refuse the same mistakes with the same messages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::{parse_duration, serde_str};
use crate::fleet::selector::Selector;
use crate::gate::{self, FleetSettings, GateMode, GateSettings, ReleaseBefore};
use crate::pipeline::handshake::TlsVersions;
use crate::pipeline::load::{SourcePaths, DEFAULT_MAX_FILE_SIZE};
use crate::pipeline::validate::{ExpectedName, Policy, Usage};
use crate::pipeline::EvalOptions;

/// Default address of the admin server (probes, status, metrics).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9464";

/// A configuration mistake. The message names the file and key or the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

// === raw TOML shape ===

/// The file as written. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// The cert sets.
    #[serde(default, rename = "set")]
    pub sets: Vec<RawSet>,
    /// The query API the fleet gate reads (shared with `certgate fleet`).
    pub fleet: Option<RawFleet>,
}

/// `[fleet]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// `http(s)://host[:port][/prefix]` of Prometheus, Thanos Query or Mimir.
    pub prometheus_url: Option<String>,
    /// Extra headers, `Name: value` (e.g. `X-Scope-OrgID: fleet`).
    #[serde(default)]
    pub headers: Vec<String>,
    /// A file holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// CA bundle for an https:// URL.
    pub ca_file: Option<PathBuf>,
    /// Bound on each evaluation's queries.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub query_timeout: Option<Duration>,
    /// How often a holding set asks again.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub poll_interval: Option<Duration>,
    /// certgate's scrape job(s), a regex (for `up`).
    pub job: Option<String>,
}

/// `[set.gate]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// `hold`, `observe` or `off`.
    pub mode: Option<crate::gate::GateMode>,
    /// Label-matcher selectors naming the verifiers.
    #[serde(default)]
    pub verifiers: Vec<String>,
    /// Selectors naming the presenters (default: the verifiers).
    pub presenters: Option<Vec<String>>,
    /// Fewer verifiers seen holds (default 1).
    pub min_verifiers: Option<u32>,
    /// PromQL: how many verifiers should exist.
    pub expected_verifiers: Option<String>,
    /// `hold` (default) or `ignore`.
    pub unknown_verifiers: Option<crate::gate::UnknownVerifiers>,
    /// A clear answer must last this long.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub stable_for: Option<Duration>,
    /// A duration (`30m`) or a share of the lifetime (`10%`).
    pub release_before_expiry: Option<String>,
    /// A file of released fingerprints, one per line.
    pub release_file: Option<PathBuf>,
}

/// `[daemon]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Admin server address.
    pub listen: Option<String>,
    /// Periodic re-read of every set.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub resync_interval: Option<Duration>,
    /// Settle window for plain (non-atomic) writers.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub settle: Option<Duration>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Cap on any input file's size, bytes.
    pub max_file_size: Option<u64>,
    /// Bound on each self-handshake.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub handshake_timeout: Option<Duration>,
    /// Loopback address of the gate's admin listener (`certgate gate release`).
    pub admin_listen: Option<String>,
}

/// `[[set]]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSet {
    /// Unique name, used in metrics and status.
    pub name: String,
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: Option<PathBuf>,
    /// Trust bundle file.
    pub trust: Option<PathBuf>,
    /// Names the leaf must cover.
    #[serde(default)]
    pub names: Vec<String>,
    /// server, client or both.
    pub usage: Option<Usage>,
    /// Refuse material expiring within this.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub min_remaining: Option<Duration>,
    /// Warn (status, metrics) this long before expiry.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub warn_before: Option<Duration>,
    /// Turn not-ready this long before expiry (0 = only once expired).
    #[serde(default, deserialize_with = "serde_str::option")]
    pub fail_ready_before: Option<Duration>,
    /// Directory the workload reads; absent = monitor mode.
    pub publish_dir: Option<PathBuf>,
    /// Mode of the published key file: "0600" (default) or "0640" etc.
    pub key_mode: Option<String>,
    /// Whether this set counts for readiness (default true).
    pub required: Option<bool>,
    /// Run the self-handshake (default true).
    pub handshake: Option<bool>,
    /// Workload TLS address to verify after publishing.
    pub verify_addr: Option<String>,
    /// Name to verify the workload with (default: the first expected name).
    pub verify_name: Option<String>,
    /// How long the workload has to serve the new leaf.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub verify_timeout: Option<Duration>,
    /// Swap back after this many consecutive handshake failures of the workload …
    pub verify_failures: Option<u32>,
    /// … spanning at least this long.
    #[serde(default, deserialize_with = "serde_str::option")]
    pub verify_failure_window: Option<Duration>,
    /// TLS versions the material must work with: `["1.2", "1.3"]` by default.
    pub tls_versions: Option<Vec<String>>,
    /// How the published files are encoded: `pem` (default) or `as_is`.
    pub publish_format: Option<PublishFormat>,
    /// Above this many anchors in the bundle, only bundle-level series are exported.
    pub max_exported_anchors: Option<usize>,
    /// How to tell the workload to reload.
    pub reload: Option<RawReload>,
    /// The fleet gate.
    pub gate: Option<RawGate>,
}

/// `[set.reload]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    /// Signal name, e.g. `SIGHUP`.
    pub signal: Option<String>,
    /// Pid file of the process to signal.
    pub pid_file: Option<PathBuf>,
    /// Name (comm) of the process to signal; needs `shareProcessNamespace`.
    pub process_name: Option<String>,
    /// URL to POST to.
    pub url: Option<String>,
    /// Command to run (argv).
    pub command: Option<Vec<String>>,
}

// === validated ===

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Admin server address.
    pub listen: SocketAddr,
    /// Periodic resync.
    pub resync_interval: Duration,
    /// Settle window for plain writers.
    pub settle: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Pipeline options.
    pub eval: EvalOptions,
    /// The gate's admin listener (loopback only); bound when a set has a holding gate.
    pub admin_listen: SocketAddr,
}

/// Default `[daemon] admin_listen`.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9465);

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 9464))),
            resync_interval: Duration::from_secs(60),
            settle: Duration::from_millis(100),
            log_format: LogFormat::Text,
            eval: EvalOptions::default(),
            admin_listen: DEFAULT_ADMIN_LISTEN,
        }
    }
}

/// Where and how to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSettings {
    /// The directory the workload reads.
    pub dir: PathBuf,
    /// Mode of the key file.
    pub key_mode: u32,
    /// How the files are encoded.
    pub format: PublishFormat,
}

/// How published files are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PublishFormat {
    /// Certificates as PEM `CERTIFICATE` blocks, the key as a PEM block of its own form
    /// (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`), whatever the source encoding:
    /// what every workload loads.
    #[default]
    Pem,
    /// Certificates as PEM blocks, the key file byte for byte as the source has it (a DER
    /// key stays DER).
    #[value(name = "as-is", alias = "as_is")]
    AsIs,
}

/// Which process to signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalTarget {
    /// The pid in this file.
    PidFile(PathBuf),
    /// Every process with this `comm`.
    ProcessName(String),
}

/// How to tell the workload about new material.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadSettings {
    /// Signal number and target.
    pub signal: Option<(i32, SignalTarget)>,
    /// URL to POST to.
    pub url: Option<String>,
    /// Command argv.
    pub command: Option<Vec<String>>,
}

/// Post-publish verification of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySettings {
    /// Workload TLS address.
    pub addr: SocketAddr,
    /// Name to verify.
    pub name: Option<ExpectedName>,
    /// Deadline for the workload to serve the new leaf; the bound when it does not answer.
    pub timeout: Duration,
    /// Swap back at once after this many consecutive handshakes the workload failed …
    pub failures: u32,
    /// … when they span at least this long (a reload settling is not a refusal).
    pub failure_window: Duration,
}

/// Default of `verify_failures`.
pub const DEFAULT_VERIFY_FAILURES: u32 = 3;
/// Default of `verify_failure_window`.
pub const DEFAULT_VERIFY_FAILURE_WINDOW: Duration = Duration::from_secs(2);

/// One validated cert set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetConfig {
    /// Unique name.
    pub name: String,
    /// Source files.
    pub paths: SourcePaths,
    /// What the material must satisfy.
    pub policy: Policy,
    /// Not-ready this long before expiry.
    pub fail_ready_before: Duration,
    /// Counts for readiness.
    pub required: bool,
    /// Run the self-handshake.
    pub handshake: bool,
    /// Publishing; `None` = monitor mode.
    pub publish: Option<PublishSettings>,
    /// Reload actions.
    pub reload: Option<ReloadSettings>,
    /// Workload verification.
    pub verify: Option<VerifySettings>,
    /// Above this many anchors, per-anchor series are not exported.
    pub max_exported_anchors: usize,
    /// The fleet gate (`None`: off).
    pub gate: Option<GateSettings>,
}

/// Default of `max_exported_anchors`.
pub const DEFAULT_MAX_EXPORTED_ANCHORS: usize = 16;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Process-wide settings.
    pub daemon: DaemonSettings,
    /// At least one set, names unique.
    pub sets: Vec<SetConfig>,
    /// The query API, when configured.
    pub fleet: Option<FleetSettings>,
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw(read_raw(path)?)
            .map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_raw(parse_raw(text).map_err(ConfigError)?)
    }

    /// Validates the raw shape.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let daemon = validate_daemon(&raw.daemon)?;
        if raw.sets.is_empty() {
            return Err(ConfigError::new("no [[set]] configured"));
        }
        let mut sets: Vec<SetConfig> = Vec::with_capacity(raw.sets.len());
        for (i, set) in raw.sets.iter().enumerate() {
            let set = validate_set(set).map_err(|e| {
                let name = if set.name.is_empty() {
                    format!("#{i}")
                } else {
                    format!("{:?}", set.name)
                };
                ConfigError(format!("set {name}: {}", e.0))
            })?;
            if sets.iter().any(|s| s.name == set.name) {
                return Err(ConfigError(format!(
                    "set {:?}: duplicate set name",
                    set.name
                )));
            }
            if let Some(p) = &set.publish {
                // Two spellings of one directory (`x/../web`, a symlink) are one directory.
                let dir = canonical(&p.dir);
                if let Some(other) = sets
                    .iter()
                    .find(|s| s.publish.as_ref().is_some_and(|q| canonical(&q.dir) == dir))
                {
                    return Err(ConfigError(format!(
                        "set {:?}: publish_dir {} already used by set {:?}",
                        set.name,
                        p.dir.display(),
                        other.name
                    )));
                }
            }
            sets.push(set);
        }
        let fleet = raw.fleet.as_ref().map(validate_fleet).transpose()?;
        if fleet.is_none() {
            if let Some(s) = sets.iter().find(|s| s.gate.is_some()) {
                return Err(ConfigError(format!(
                    "set {:?}: gate: needs [fleet] prometheus_url (where the verifiers' trust \
                     is read)",
                    s.name
                )));
            }
        }
        Ok(Self {
            daemon,
            sets,
            fleet,
        })
    }
}

/// A set that can be published: its files keep their base names in the publish directory, so
/// the names must differ (`…/cert/value` and `…/key/value` would both publish as `value`) —
/// except cert and key given as one file holding both — and the publish directory must not be
/// a directory the set reads from.
fn check_publishable(
    dir: &Path,
    cert: &Path,
    key: Option<&Path>,
    trust: Option<&Path>,
) -> Result<(), ConfigError> {
    let sources = [("cert", Some(cert)), ("key", key), ("trust", trust)];
    for (i, (a, pa)) in sources.iter().enumerate() {
        for (b, pb) in &sources[i + 1..] {
            let (Some(pa), Some(pb)) = (pa, pb) else {
                continue;
            };
            let combined = *a == "cert" && *b == "key" && canonical(pa) == canonical(pb);
            if pa.file_name() == pb.file_name() && !combined {
                return Err(ConfigError(format!(
                    "{a} and {b}: both are named {:?}, and files keep their names in publish_dir \
                     {}; give them different names",
                    pa.file_name().unwrap_or_default(),
                    dir.display()
                )));
            }
        }
    }
    let published = canonical(dir);
    for (role, path) in sources {
        let Some(path) = path else { continue };
        let source_dir = canonical(path.parent().unwrap_or(Path::new(".")));
        if source_dir == published {
            return Err(ConfigError(format!(
                "publish_dir: {} is the directory {role} {} is read from; publish elsewhere",
                dir.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// `p` made absolute with symlinks and `..` resolved as far as it exists, the rest normalized
/// lexically: two spellings of one directory (`x/../web`, a link to it) compare equal even
/// before it is created.
pub fn canonical(p: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    let base = loop {
        if let Ok(c) = existing.canonicalize() {
            break c;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            // A `..` or the root: resolve what is left lexically.
            _ => break PathBuf::new(),
        }
    };
    let mut out = base;
    let tail: PathBuf = if out.as_os_str().is_empty() {
        absolute.clone()
    } else {
        rest.iter().rev().collect()
    };
    for c in tail.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Largest config file read.
pub const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

/// Reads a TOML config file into its raw shape; errors name the file.
pub fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let ctx = format!("config {}", path.display());
    // A config is a few KiB; a FIFO or a link to a device must not hang or grow the start.
    let bytes = crate::bounded::read_regular(path, MAX_CONFIG_SIZE)
        .map_err(|e| ConfigError(format!("{ctx}: {e}")))?;
    let text =
        String::from_utf8(bytes).map_err(|_| ConfigError(format!("{ctx}: not UTF-8 text")))?;
    parse_raw(&text).map_err(|e| ConfigError(format!("{ctx}: {e}")))
}

/// Parses TOML into the raw shape; the error is one line and names the key of a bad value.
fn parse_raw(text: &str) -> Result<RawConfig, String> {
    toml::from_str(text).map_err(|e| {
        let key = e.span().and_then(|span| key_at(text, span.start));
        let key = key.map(|k| format!("{k}: ")).unwrap_or_default();
        format!("{key}{}", one_line(&e.to_string()))
    })
}

/// The key of the `key = value` line holding byte `at`, when a value is what failed: lets a
/// bad value's error name its key, as the unknown-key error does.
fn key_at(text: &str, at: usize) -> Option<&str> {
    let start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    (!key.is_empty() && key.chars().all(bare) && start + line.find('=')? < at).then_some(key)
}

/// TOML errors span several lines (a source excerpt); keep the first for a one-line error.
fn one_line(msg: &str) -> String {
    let mut lines = msg.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("invalid TOML").trim().to_string();
    // toml puts the actual complaint last, after the excerpt.
    match lines.next_back() {
        Some(last) if !last.trim_start().starts_with('|') => format!("{first}: {}", last.trim()),
        _ => first,
    }
}

/// Validates `[daemon]`.
pub fn validate_daemon(raw: &RawDaemon) -> Result<DaemonSettings, ConfigError> {
    let mut d = DaemonSettings::default();
    if let Some(listen) = &raw.listen {
        d.listen = listen.parse().map_err(|_| {
            ConfigError(format!(
                "daemon.listen: {listen:?} is not an address like 0.0.0.0:9464"
            ))
        })?;
    }
    if let Some(r) = raw.resync_interval {
        if r < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "daemon.resync_interval: must be at least 1s",
            ));
        }
        d.resync_interval = r;
    }
    if let Some(s) = raw.settle {
        if s > Duration::from_secs(10) {
            return Err(ConfigError::new("daemon.settle: must be at most 10s"));
        }
        d.settle = s;
    }
    if let Some(f) = raw.log_format {
        d.log_format = f;
    }
    if let Some(m) = raw.max_file_size {
        if m == 0 {
            return Err(ConfigError::new("daemon.max_file_size: must be positive"));
        }
        d.eval.max_file_size = m;
    }
    if let Some(t) = raw.handshake_timeout {
        if t.is_zero() {
            return Err(ConfigError::new(
                "daemon.handshake_timeout: must be positive",
            ));
        }
        d.eval.handshake_timeout = t;
    }
    if let Some(a) = &raw.admin_listen {
        let addr: SocketAddr = a.parse().map_err(|_| {
            ConfigError(format!(
                "daemon.admin_listen: {a:?} is not an address like 127.0.0.1:9465"
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(ConfigError(format!(
                "daemon.admin_listen: {a:?} is not a loopback address; the admin listener \
                 releases held candidates and must be reachable only from inside the pod \
                 (kubectl exec)"
            )));
        }
        d.admin_listen = addr;
    }
    Ok(d)
}

/// Validates one `[[set]]`.
pub fn validate_set(raw: &RawSet) -> Result<SetConfig, ConfigError> {
    let name = raw.name.trim();
    if name.is_empty() {
        return Err(ConfigError::new("name: must not be empty"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.len() > 63
    {
        return Err(ConfigError(format!(
            "name: {name:?} must be at most 63 characters of [A-Za-z0-9._-]"
        )));
    }
    if raw.cert.as_os_str().is_empty() {
        return Err(ConfigError::new("cert: must be set"));
    }
    let names = raw
        .names
        .iter()
        .map(|n| ExpectedName::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError(format!("names: {e}")))?;
    let defaults = Policy::default();
    let tls_versions = match &raw.tls_versions {
        None => defaults.tls_versions,
        Some(v) => TlsVersions::parse(v).map_err(|e| ConfigError(format!("tls_versions: {e}")))?,
    };
    let policy = Policy {
        usage: raw.usage.unwrap_or_default(),
        names,
        min_remaining: raw.min_remaining.unwrap_or(defaults.min_remaining),
        warn_before: raw.warn_before.unwrap_or(defaults.warn_before),
        tls_versions,
    };
    let publish = raw
        .publish_dir
        .as_ref()
        .map(|dir| {
            let key_mode = match raw.key_mode.as_deref() {
                None => 0o600,
                Some(m) => parse_key_mode(m)?,
            };
            Ok::<_, ConfigError>(PublishSettings {
                dir: dir.clone(),
                key_mode,
                format: raw.publish_format.unwrap_or_default(),
            })
        })
        .transpose()?;
    if let Some(p) = &publish {
        check_publishable(&p.dir, &raw.cert, raw.key.as_deref(), raw.trust.as_deref())?;
    }
    if raw.key_mode.is_some() && publish.is_none() {
        return Err(ConfigError::new(
            "key_mode: only meaningful with publish_dir",
        ));
    }
    if raw.publish_format.is_some() && publish.is_none() {
        return Err(ConfigError::new(
            "publish_format: only meaningful with publish_dir",
        ));
    }
    let failures = raw.verify_failures.unwrap_or(DEFAULT_VERIFY_FAILURES);
    if !(1..=100).contains(&failures) {
        return Err(ConfigError(format!(
            "verify_failures: {failures} must be between 1 and 100"
        )));
    }
    let timeout = raw.verify_timeout.unwrap_or(Duration::from_secs(30));
    if timeout.is_zero() {
        return Err(ConfigError::new("verify_timeout: must be positive"));
    }
    // The default window shrinks to a short verify_timeout; a window set longer than the
    // timeout could never act, which is a mistake to name.
    let failure_window = raw
        .verify_failure_window
        .unwrap_or(DEFAULT_VERIFY_FAILURE_WINDOW.min(timeout));
    if failure_window > timeout {
        return Err(ConfigError(format!(
            "verify_failure_window: {} must not exceed verify_timeout ({})",
            crate::duration::format_duration(failure_window),
            crate::duration::format_duration(timeout)
        )));
    }
    if raw.verify_addr.is_none()
        && (raw.verify_failures.is_some() || raw.verify_failure_window.is_some())
    {
        return Err(ConfigError::new(
            "verify_failures, verify_failure_window: only meaningful with verify_addr",
        ));
    }
    let reload = raw.reload.as_ref().map(validate_reload).transpose()?;
    let max_exported_anchors = raw
        .max_exported_anchors
        .unwrap_or(DEFAULT_MAX_EXPORTED_ANCHORS);
    if max_exported_anchors > 1000 {
        return Err(ConfigError(format!(
            "max_exported_anchors: {max_exported_anchors} is above 1000 (each anchor is a few \
             series in every scrape of every pod)"
        )));
    }
    let gate = match &raw.gate {
        Some(g) => validate_gate(g, publish.is_some())?,
        None => None,
    };
    let verify = match &raw.verify_addr {
        None => None,
        Some(addr) => Some(VerifySettings {
            addr: addr.parse().map_err(|_| {
                ConfigError(format!(
                    "verify_addr: {addr:?} is not an address like 127.0.0.1:8443"
                ))
            })?,
            name: raw
                .verify_name
                .as_deref()
                .map(ExpectedName::parse)
                .transpose()
                .map_err(|e| ConfigError(format!("verify_name: {e}")))?,
            timeout,
            failures,
            failure_window,
        }),
    };
    if verify.is_some() && publish.is_none() {
        return Err(ConfigError::new(
            "verify_addr: needs publish_dir (swap-back needs a published generation)",
        ));
    }
    Ok(SetConfig {
        name: name.to_string(),
        paths: SourcePaths {
            cert: raw.cert.clone(),
            key: raw.key.clone(),
            trust: raw.trust.clone(),
        },
        policy,
        fail_ready_before: raw.fail_ready_before.unwrap_or(Duration::ZERO),
        required: raw.required.unwrap_or(true),
        handshake: raw.handshake.unwrap_or(true),
        publish,
        reload,
        verify,
        max_exported_anchors,
        gate,
    })
}

/// Validates `[fleet]`; the URL and files are checked again when the client is built.
pub fn validate_fleet(raw: &RawFleet) -> Result<FleetSettings, ConfigError> {
    let url = raw
        .prometheus_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ConfigError::new("fleet.prometheus_url: must be set"))?;
    let query_timeout = raw.query_timeout.unwrap_or(gate::DEFAULT_QUERY_TIMEOUT);
    if query_timeout.is_zero() || query_timeout > Duration::from_secs(300) {
        return Err(ConfigError::new(
            "fleet.query_timeout: must be more than 0 and at most 5m",
        ));
    }
    let poll_interval = raw.poll_interval.unwrap_or(gate::DEFAULT_POLL_INTERVAL);
    if poll_interval < Duration::from_millis(100) || poll_interval > Duration::from_secs(3600) {
        return Err(ConfigError::new(
            "fleet.poll_interval: must be between 100ms and 1h",
        ));
    }
    let settings = FleetSettings {
        prometheus_url: url.to_string(),
        headers: raw.headers.clone(),
        bearer_token_file: raw.bearer_token_file.clone(),
        ca_file: raw.ca_file.clone(),
        query_timeout,
        poll_interval,
        job: raw
            .job
            .clone()
            .unwrap_or_else(|| crate::fleet::DEFAULT_JOB.to_string()),
    };
    // The same checks the client makes, so a bad URL or header is a config error at start.
    gate::query::PromFleet::new(&settings).map_err(ConfigError)?;
    Ok(settings)
}

/// Validates `[set.gate]` of a set (`publish`: whether it publishes).
fn validate_gate(raw: &RawGate, publish: bool) -> Result<Option<GateSettings>, ConfigError> {
    let mode = raw.mode.unwrap_or(GateMode::Hold);
    if mode == GateMode::Off {
        return Ok(None);
    }
    if mode == GateMode::Hold && !publish {
        return Err(ConfigError::new(
            "gate.mode: \"hold\" needs publish_dir (monitor mode publishes nothing to hold; \
             use \"observe\")",
        ));
    }
    let env = |name: &str| std::env::var(name).ok();
    let selectors = |key: &str, list: &[String]| -> Result<Vec<Selector>, ConfigError> {
        list.iter()
            .map(|s| {
                let expanded = gate::expand_env(s, &env)
                    .map_err(|e| ConfigError(format!("gate.{key}: {e}")))?;
                Selector::parse(&expanded).map_err(|e| {
                    ConfigError(format!("gate.{key}: {}", e.replacen("--selector ", "", 1)))
                })
            })
            .collect()
    };
    let verifiers = selectors("verifiers", &raw.verifiers)?;
    if verifiers.is_empty() {
        return Err(ConfigError::new(
            "gate.verifiers: name the pods that verify this set's leaf, e.g. \
             ['{namespace=\"$POD_NAMESPACE\"}']",
        ));
    }
    let presenters = match &raw.presenters {
        Some(p) => selectors("presenters", p)?,
        None => verifiers.clone(),
    };
    let min_verifiers = raw.min_verifiers.unwrap_or(1);
    let stable_for = raw.stable_for.unwrap_or(gate::DEFAULT_STABLE_FOR);
    if stable_for > Duration::from_secs(24 * 3600) {
        return Err(ConfigError::new("gate.stable_for: must be at most 24h"));
    }
    let release_before_expiry = raw
        .release_before_expiry
        .as_deref()
        .map(ReleaseBefore::parse)
        .transpose()
        .map_err(|e| ConfigError(format!("gate.release_before_expiry: {e}")))?;
    let expected_verifiers = raw
        .expected_verifiers
        .as_deref()
        .map(str::trim)
        .map(|e| {
            if e.is_empty() {
                return Err(ConfigError::new("gate.expected_verifiers: empty"));
            }
            gate::expand_env(e, &env)
                .map_err(|e| ConfigError(format!("gate.expected_verifiers: {e}")))
        })
        .transpose()?;
    Ok(Some(GateSettings {
        mode,
        verifiers,
        presenters,
        min_verifiers,
        expected_verifiers,
        unknown_verifiers: raw.unknown_verifiers.unwrap_or_default(),
        stable_for,
        release_before_expiry,
        release_file: raw.release_file.clone(),
    }))
}

fn parse_key_mode(m: &str) -> Result<u32, ConfigError> {
    let mode = u32::from_str_radix(m.trim_start_matches("0o"), 8).map_err(|_| {
        ConfigError(format!(
            "key_mode: {m:?} is not an octal mode like \"0600\""
        ))
    })?;
    // Only owner read/write and group read: no setuid/setgid/sticky, nothing for others.
    if mode & !0o640 != 0 || mode & 0o400 == 0 {
        return Err(ConfigError(format!(
            "key_mode: {m:?} must be owner-readable and at most group-readable (0400, 0440, 0600 or 0640)"
        )));
    }
    Ok(mode)
}

fn validate_reload(raw: &RawReload) -> Result<ReloadSettings, ConfigError> {
    let signal = match (&raw.signal, &raw.pid_file, &raw.process_name) {
        (None, None, None) => None,
        (None, _, _) => {
            return Err(ConfigError::new(
                "reload: pid_file/process_name need signal",
            ))
        }
        (Some(_), None, None) => {
            return Err(ConfigError::new(
                "reload.signal: needs pid_file or process_name",
            ))
        }
        (Some(_), Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "reload: give pid_file or process_name, not both",
            ))
        }
        (Some(sig), pid_file, process) => {
            let num = parse_signal(sig)?;
            let target = match (pid_file, process) {
                (Some(p), _) => SignalTarget::PidFile(p.clone()),
                (_, Some(n)) => SignalTarget::ProcessName(n.clone()),
                _ => {
                    return Err(ConfigError::new(
                        "reload.signal: needs pid_file or process_name",
                    ))
                }
            };
            Some((num, target))
        }
    };
    if let Some(url) = &raw.url {
        if !url.starts_with("http://") {
            return Err(ConfigError(format!(
                "reload.url: {url:?} must be an http:// URL (local workload)"
            )));
        }
    }
    if raw.command.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(ConfigError::new("reload.command: must not be empty"));
    }
    let settings = ReloadSettings {
        signal,
        url: raw.url.clone(),
        command: raw.command.clone(),
    };
    if settings == ReloadSettings::default() {
        return Err(ConfigError::new("reload: set signal, url or command"));
    }
    Ok(settings)
}

/// Parses `SIGHUP`, `HUP`, `hup` or a number.
pub fn parse_signal(s: &str) -> Result<i32, ConfigError> {
    let upper = s.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let num = match bare {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "TERM" => libc::SIGTERM,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "WINCH" => libc::SIGWINCH,
        other => match other.parse::<i32>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => {
                return Err(ConfigError(format!(
                    "reload.signal: unknown signal {s:?} (e.g. SIGHUP)"
                )))
            }
        },
    };
    Ok(num)
}

/// Parses a duration for a config key, naming the key.
pub fn duration_for(key: &str, s: &str) -> Result<Duration, ConfigError> {
    parse_duration(s).map_err(|e| ConfigError(format!("{key}: {e}")))
}

/// Default cap, re-exported for flag defaults.
pub const MAX_FILE_SIZE: u64 = DEFAULT_MAX_FILE_SIZE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config/certgate.example.toml");
        let cfg = Config::from_toml(text).expect("example config is valid");
        assert!(!cfg.sets.is_empty());
    }

    #[test]
    fn the_documented_example_is_the_example_file() {
        let doc = include_str!("../docs/configuration.md");
        let file = include_str!("../config/certgate.example.toml");
        assert!(
            doc.contains(file),
            "docs/configuration.md ## Example is out of date"
        );
    }

    #[test]
    fn gate_mistakes_are_named() {
        let set = |gate: &str, publish: bool| {
            format!(
                "[fleet]\nprometheus_url = \"http://127.0.0.1:9090\"\n\
                 [[set]]\nname = \"a\"\ncert = \"/src/tls.crt\"\n{}[set.gate]\n{gate}",
                if publish {
                    "publish_dir = \"/out\"\n"
                } else {
                    ""
                }
            )
        };
        let ok = "verifiers = ['{namespace=\"shop\"}']\n";
        let cfg = Config::from_toml(&set(ok, true)).expect("valid gate");
        let g = cfg.sets[0].gate.as_ref().expect("gate");
        assert_eq!((g.mode, g.min_verifiers), (GateMode::Hold, 1));
        assert_eq!(g.presenters, g.verifiers);
        assert_eq!(cfg.daemon.admin_listen, DEFAULT_ADMIN_LISTEN);
        let off = Config::from_toml(&set(&format!("mode = \"off\"\n{ok}"), true)).unwrap();
        assert!(off.sets[0].gate.is_none());
        let cases = [
            (set(ok, false), "gate.mode: \"hold\" needs publish_dir"),
            (set("", true), "gate.verifiers: name the pods"),
            (
                set("verifiers = ['shop']\n", true),
                "gate.verifiers: \"shop\": must start with '{'",
            ),
            (
                set(
                    "verifiers = ['{namespace=\"$CERTGATE_TEST_UNSET_VAR\"}']\n",
                    true,
                ),
                "CERTGATE_TEST_UNSET_VAR is not set",
            ),
            (
                set(&format!("{ok}release_before_expiry = \"100%\"\n"), true),
                "gate.release_before_expiry: ",
            ),
            (set(&format!("{ok}mode = \"maybe\"\n"), true), "mode"),
            (
                format!(
                    "[[set]]\nname = \"a\"\ncert = \"/x\"\npublish_dir = \"/o\"\n[set.gate]\n{ok}"
                ),
                "needs [fleet] prometheus_url",
            ),
            (
                format!(
                    "[daemon]\nadmin_listen = \"0.0.0.0:9465\"\n{}",
                    set(ok, true)
                ),
                "daemon.admin_listen: \"0.0.0.0:9465\" is not a loopback address",
            ),
            (
                set(ok, true).replace("http://127.0.0.1:9090", "ftp://x"),
                "prometheus_url",
            ),
            (
                set(ok, true).replace("[[set]]", "poll_interval = \"1ms\"\n[[set]]"),
                "fleet.poll_interval",
            ),
        ];
        for (text, want) in cases {
            let err = Config::from_toml(&text).expect_err(want).to_string();
            assert!(err.contains(want), "want {want:?} in {err:?}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[[set]]\nname = \"a\"\ncert = \"/x\"\ncolour = \"red\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = Config::from_toml("[daemon]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let cases = [
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\nmin_remaining = \"3y\"\n",
                "min_remaining: ",
            ),
            (
                "[daemon]\nsettle = 5\n[[set]]\nname = \"a\"\ncert = \"/x\"\n",
                "settle: ",
            ),
            ("[[set]]\nname = \"a b\"\ncert = \"/x\"\n", "name"),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\nusage = \"peer\"\n",
                "peer",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\npublish_dir = \"/p\"\nkey_mode = \"0644\"\n",
                "key_mode",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\nnames = [\"bad name!\"]\n",
                "names",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\n[[set]]\nname = \"a\"\ncert = \"/y\"\n",
                "duplicate",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\n[set.reload]\nsignal = \"SIGHUP\"\n",
                "pid_file",
            ),
            (
                "[daemon]\nlisten = \"nowhere\"\n[[set]]\nname = \"a\"\ncert = \"/x\"\n",
                "daemon.listen",
            ),
            ("", "no [[set]]"),
            // Configs that validate but could never publish.
            (
                "[[set]]\nname = \"a\"\ncert = \"/s/cert/value\"\nkey = \"/s/key/value\"\npublish_dir = \"/p\"\n",
                "cert and key: both are named \"value\"",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/s/tls.crt\"\ntrust = \"/t/tls.crt\"\npublish_dir = \"/p\"\n",
                "cert and trust",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/s/tls.crt\"\npublish_dir = \"/s\"\n",
                "publish_dir: /s is the directory cert",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x/tls.crt\"\npublish_dir = \"/p/web\"\n\
                 [[set]]\nname = \"b\"\ncert = \"/y/tls.crt\"\npublish_dir = \"/p/x/../web\"\n",
                "already used by set \"a\"",
            ),
            // Absurd durations: refused with the key, not overflowed later.
            (
                "[daemon]\nresync_interval = \"99999999d\"\n[[set]]\nname = \"a\"\ncert = \"/x\"\n",
                "resync_interval: ",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\nfail_ready_before = \"5000d\"\n",
                "fail_ready_before: ",
            ),
            (
                "[[set]]\nname = \"a\"\ncert = \"/x\"\nverify_addr = \"127.0.0.1:1\"\nverify_timeout = \"4000d\"\n",
                "verify_timeout: ",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::from_toml(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn one_file_holding_cert_and_key_can_be_published() {
        let text = "[[set]]\nname = \"a\"\ncert = \"/s/combined.pem\"\nkey = \"/s/combined.pem\"\n\
                    publish_dir = \"/p\"\n";
        Config::from_toml(text).expect("cert and key as one file");
    }

    #[test]
    fn a_symlinked_spelling_of_a_publish_dir_is_the_same_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("web");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("alias");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let text = format!(
            "[[set]]\nname = \"a\"\ncert = \"/x/tls.crt\"\npublish_dir = \"{}\"\n\
             [[set]]\nname = \"b\"\ncert = \"/y/tls.crt\"\npublish_dir = \"{}\"\n",
            real.display(),
            link.display()
        );
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("already used by set"), "{err}");
    }

    #[test]
    fn config_files_are_read_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo.toml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = Config::from_file(&fifo).unwrap_err().to_string();
        assert!(err.contains("FIFO") && err.contains("fifo.toml"), "{err}");
        let zero = tmp.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = Config::from_file(&zero).unwrap_err().to_string();
        assert!(err.contains("device"), "{err}");
    }

    #[test]
    fn key_modes() {
        assert_eq!(parse_key_mode("0600").ok(), Some(0o600));
        assert_eq!(parse_key_mode("0640").ok(), Some(0o640));
        assert!(parse_key_mode("0644").is_err());
        assert!(parse_key_mode("0200").is_err());
        for special in ["4640", "2600", "1400", "10600", "77777640"] {
            assert!(parse_key_mode(special).is_err(), "{special} accepted");
        }
    }

    /// fuzz/artifacts/config/crash-36539b0c…: `key_mode = "4640"` (setuid) was accepted, since
    /// only the permission bits were checked.
    #[test]
    fn key_mode_with_special_bits_is_refused() {
        let text = "[[set]]\nname = \"a\"\ncert = \"/x\"\npublish_dir = \"/p\"\nkey_mode = \"4640\"\n\
            verify_addr = \"127.0.0.1:8443\"\nverify_name = \"example.com\"\nverify_timeout = \"30s\"\n\
            [set.reload]\nsignal = \"SIGHUP\"\npid_file = \"/run/app.pid\"\n\
            url = \"http://127.0.0.1:8080/-/reload\"\ncommand = [\"/bin/true\"]\n\
            [[set]]\nname = \"b\"\ncert = \"/y\"\npublish_dir = \"/q'\"\n\
            [set.reload]\nsignal = \"10\"\nprocess_name = \"nginx\"\n";
        let err = Config::from_toml(text)
            .expect_err("setuid key_mode")
            .to_string();
        assert!(err.contains("key_mode") && err.contains("4640"), "{err}");
        let fixed = Config::from_toml(&text.replace("4640", "0640")).expect("otherwise valid");
        assert_eq!(
            fixed.sets[0].publish.as_ref().map(|p| p.key_mode),
            Some(0o640)
        );
    }
}
