//! Command-line interface. Every flag has a `CERTGATE_*` environment fallback.
//!
//! Exit codes (all commands): 0 success; 1 the material (or the probed endpoint) failed;
//! 2 usage or configuration error; 3 (`fleet`) the query API is unreachable, erroring or partial.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admin::AdminLimits;
use crate::config::{self, ConfigError, LogFormat, RawDaemon, RawReload, RawSet};
use crate::duration::clap_duration;
use crate::pipeline::validate::Usage;

/// TLS certificate lifecycle gate for Kubernetes pods.
#[derive(Debug, Parser)]
#[command(name = "certgate", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-shot pre-flight validation (init containers). Exit 0 ok, 1 material fails, 2 usage.
    Check(CheckArgs),
    /// Print what is in certificate and key files (never key bytes).
    Inspect(InspectArgs),
    /// The sidecar: watch, validate, prove, publish, swap back, serve probes and metrics.
    Run(Box<RunArgs>),
    /// GET the local /readyz (or /healthz with --live); exit 0 when it answers 200, else 1.
    Probe(ProbeArgs),
    /// Which pods trust which CA, read back from Prometheus (or Thanos, Mimir). Exit 0 ok or
    /// converged, 1 not converged, 2 usage, 3 query API unreachable, erroring or partial.
    Fleet(FleetArgs),
    /// The fleet gate of a running sidecar (run in its pod: kubectl exec). Exit 0 released,
    /// 1 nothing released, 2 usage, 3 the sidecar's gate listener is unreachable.
    #[command(subcommand)]
    Gate(GateCommand),
    /// Show the whole lifecycle on a throwaway PKI in a temp dir. Ctrl-C stops it.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

/// One cert set given by flags.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// Certificate chain file (PEM or DER), leaf first.
    #[arg(long, env = "CERTGATE_CERT", value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// Private key file (PKCS#8, PKCS#1 or SEC1 PEM, or DER).
    #[arg(long, env = "CERTGATE_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Trust bundle the chain must lead to.
    #[arg(long, env = "CERTGATE_TRUST", value_name = "PATH")]
    pub trust: Option<PathBuf>,
    /// A name the leaf must cover (DNS, IP or URI such as spiffe://…). Repeatable.
    #[arg(
        long = "name",
        env = "CERTGATE_NAMES",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub names: Vec<String>,
    /// Which side of TLS the certificate serves.
    #[arg(long, env = "CERTGATE_USAGE", value_enum)]
    pub usage: Option<Usage>,
    /// Fail material that expires within this (e.g. 24h, 7d).
    #[arg(long, env = "CERTGATE_MIN_REMAINING", value_parser = clap_duration, value_name = "DURATION")]
    pub min_remaining: Option<Duration>,
    /// TLS versions the self-handshake (and the workload check) must succeed with
    /// [default: 1.3,1.2].
    #[arg(
        long,
        env = "CERTGATE_TLS_VERSIONS",
        value_delimiter = ',',
        value_name = "VERSION"
    )]
    pub tls_versions: Vec<String>,
}

impl SetArgs {
    fn to_raw(&self, name: &str) -> Result<RawSet, ConfigError> {
        let cert = self
            .cert
            .clone()
            .ok_or_else(|| ConfigError::new("--cert is required (or --config FILE)"))?;
        Ok(RawSet {
            name: name.to_string(),
            cert,
            key: self.key.clone(),
            trust: self.trust.clone(),
            names: self.names.clone(),
            usage: self.usage,
            min_remaining: self.min_remaining,
            tls_versions: (!self.tls_versions.is_empty()).then(|| self.tls_versions.clone()),
            ..RawSet::default()
        })
    }

    /// The per-set flags given (by flag or environment), by name.
    fn given(&self) -> [(&'static str, bool); 7] {
        [
            ("--cert", self.cert.is_some()),
            ("--key", self.key.is_some()),
            ("--trust", self.trust.is_some()),
            ("--name", !self.names.is_empty()),
            ("--usage", self.usage.is_some()),
            ("--min-remaining", self.min_remaining.is_some()),
            ("--tls-versions", !self.tls_versions.is_empty()),
        ]
    }
}

/// Refuses the first flag of `given` that was given along with `--config`: the file holds every
/// set's settings, and a flag silently ignored would look like it applied.
fn refuse_with_config(given: &[(&'static str, bool)]) -> Result<(), ConfigError> {
    match given.iter().find(|(_, g)| *g) {
        Some((flag, _)) => Err(ConfigError::new(format!(
            "{flag} (or its CERTGATE_* variable) cannot be combined with --config: per-set \
             settings come from the config file"
        ))),
        None => Ok(()),
    }
}

/// `certgate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The set to check, from flags.
    #[command(flatten)]
    pub set: SetArgs,
    /// Check every set of this TOML config instead of flags.
    #[arg(long, env = "CERTGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate as of this time (RFC 3339) instead of now.
    #[arg(long, env = "CERTGATE_AT", value_name = "RFC3339")]
    pub at: Option<String>,
    /// Skip the loopback self-handshake.
    #[arg(long, env = "CERTGATE_NO_HANDSHAKE")]
    pub no_handshake: bool,
    /// Print one JSON document instead of human lines.
    #[arg(long, env = "CERTGATE_JSON")]
    pub json: bool,
    /// Refuse input files larger than this many bytes [default: the config's
    /// daemon.max_file_size, else 1048576], so `check` judges files as `run` would.
    #[arg(long, env = "CERTGATE_MAX_FILE_SIZE", value_parser = clap::value_parser!(u64).range(1..), value_name = "BYTES")]
    pub max_file_size: Option<u64>,
    /// Bound on the self-handshake [default: the config's daemon.handshake_timeout, else 2s].
    #[arg(long, env = "CERTGATE_HANDSHAKE_TIMEOUT", value_parser = positive_duration, value_name = "DURATION")]
    pub handshake_timeout: Option<Duration>,
}

/// A duration flag that must be more than zero (a zero bound would fail every candidate).
fn positive_duration(s: &str) -> Result<Duration, String> {
    match clap_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

/// `certgate inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Certificate, bundle or key files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long, env = "CERTGATE_JSON")]
    pub json: bool,
    /// Refuse files larger than this many bytes.
    #[arg(long, env = "CERTGATE_MAX_FILE_SIZE", default_value_t = config::MAX_FILE_SIZE, value_parser = clap::value_parser!(u64).range(1..), value_name = "BYTES")]
    pub max_file_size: u64,
}

/// `certgate run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The set to watch, from flags.
    #[command(flatten)]
    pub set: SetArgs,
    /// Watch every set of this TOML config instead of flags.
    #[arg(long, env = "CERTGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Name of the set given by flags (a metric label) [default: default].
    #[arg(long, env = "CERTGATE_SET_NAME", value_name = "NAME")]
    pub set_name: Option<String>,
    /// Publish validated material here (kubelet-style); without it certgate only monitors.
    #[arg(long, env = "CERTGATE_PUBLISH_DIR", value_name = "DIR")]
    pub publish_dir: Option<PathBuf>,
    /// Mode of the published key file (0600, or 0640 for fsGroup setups).
    #[arg(long, env = "CERTGATE_KEY_MODE", value_name = "MODE")]
    pub key_mode: Option<String>,
    /// How published files are encoded: pem (certificates and key as PEM, whatever the
    /// source encoding) or as-is (the key byte for byte) [default: pem].
    #[arg(
        long,
        env = "CERTGATE_PUBLISH_FORMAT",
        value_enum,
        value_name = "FORMAT"
    )]
    pub publish_format: Option<config::PublishFormat>,
    /// Warn this long before expiry.
    #[arg(long, env = "CERTGATE_WARN_BEFORE", value_parser = clap_duration, value_name = "DURATION")]
    pub warn_before: Option<Duration>,
    /// Report not-ready this long before expiry (default 0: once expired).
    #[arg(long, env = "CERTGATE_FAIL_READY_BEFORE", value_parser = clap_duration, value_name = "DURATION")]
    pub fail_ready_before: Option<Duration>,
    /// After publishing, check the workload serves the new leaf at this address; else swap back.
    #[arg(long, env = "CERTGATE_VERIFY_ADDR", value_name = "ADDR")]
    pub verify_addr: Option<String>,
    /// Deadline for the workload to serve the new leaf.
    #[arg(long, env = "CERTGATE_VERIFY_TIMEOUT", value_parser = clap_duration, value_name = "DURATION")]
    pub verify_timeout: Option<Duration>,
    /// Signal to send the workload after a publish (e.g. SIGHUP).
    #[arg(long, env = "CERTGATE_RELOAD_SIGNAL", value_name = "SIGNAL")]
    pub reload_signal: Option<String>,
    /// Pid file of the process to signal.
    #[arg(long, env = "CERTGATE_RELOAD_PID_FILE", value_name = "PATH")]
    pub reload_pid_file: Option<PathBuf>,
    /// Name of the process to signal (needs shareProcessNamespace).
    #[arg(long, env = "CERTGATE_RELOAD_PROCESS", value_name = "NAME")]
    pub reload_process: Option<String>,
    /// URL to POST to after a publish.
    #[arg(long, env = "CERTGATE_RELOAD_URL", value_name = "URL")]
    pub reload_url: Option<String>,
    /// Admin server address (/healthz /readyz /status /metrics).
    #[arg(long, env = "CERTGATE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Periodic re-read of every set.
    #[arg(long, env = "CERTGATE_RESYNC_INTERVAL", value_parser = clap_duration, value_name = "DURATION")]
    pub resync_interval: Option<Duration>,
    /// Settle window for plain (non-atomic) writers.
    #[arg(long, env = "CERTGATE_SETTLE", value_parser = clap_duration, value_name = "DURATION")]
    pub settle: Option<Duration>,
    /// Log format.
    #[arg(long, env = "CERTGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Skip the loopback self-handshake.
    #[arg(long, env = "CERTGATE_NO_HANDSHAKE")]
    pub no_handshake: bool,
    /// Most admin connections open at once; at the cap the oldest is closed [default: 128,
    /// lowered to fit the open-file limit].
    #[arg(long, env = "CERTGATE_ADMIN_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub admin_max_connections: Option<u32>,
    /// An admin request head must arrive within this; closes idle keep-alive, half-open and
    /// slow peers [default: 5s].
    #[arg(long, env = "CERTGATE_ADMIN_HEADER_TIMEOUT", value_parser = positive_duration, value_name = "DURATION")]
    pub admin_header_timeout: Option<Duration>,
    /// Total lifetime of one admin connection [default: 60s].
    #[arg(long, env = "CERTGATE_ADMIN_CONNECTION_TIMEOUT", value_parser = positive_duration, value_name = "DURATION")]
    pub admin_connection_timeout: Option<Duration>,
}

impl RunArgs {
    /// The bounds on admin peers: flags over the defaults.
    pub fn admin_limits(&self) -> AdminLimits {
        let d = AdminLimits::default();
        AdminLimits {
            max_connections: self
                .admin_max_connections
                .map_or(d.max_connections, |n| n as usize),
            header_read_timeout: self.admin_header_timeout.unwrap_or(d.header_read_timeout),
            connection_timeout: self
                .admin_connection_timeout
                .unwrap_or(d.connection_timeout),
        }
    }

    /// The validated config: from `--config` (flags for daemon settings override it) or flags.
    pub fn to_config(&self) -> Result<config::Config, ConfigError> {
        let mut raw = match &self.config {
            Some(path) => {
                refuse_with_config(&self.set.given())?;
                refuse_with_config(&[
                    ("--set-name", self.set_name.is_some()),
                    ("--publish-dir", self.publish_dir.is_some()),
                    ("--key-mode", self.key_mode.is_some()),
                    ("--publish-format", self.publish_format.is_some()),
                    ("--warn-before", self.warn_before.is_some()),
                    ("--fail-ready-before", self.fail_ready_before.is_some()),
                    ("--verify-addr", self.verify_addr.is_some()),
                    ("--verify-timeout", self.verify_timeout.is_some()),
                    ("--reload-signal", self.reload_signal.is_some()),
                    ("--reload-pid-file", self.reload_pid_file.is_some()),
                    ("--reload-process", self.reload_process.is_some()),
                    ("--reload-url", self.reload_url.is_some()),
                    ("--no-handshake", self.no_handshake),
                ])?;
                config::read_raw(path)?
            }
            None => {
                let mut set = self
                    .set
                    .to_raw(self.set_name.as_deref().unwrap_or("default"))?;
                set.publish_dir = self.publish_dir.clone();
                set.key_mode = self.key_mode.clone();
                set.publish_format = self.publish_format;
                set.warn_before = self.warn_before;
                set.fail_ready_before = self.fail_ready_before;
                set.verify_addr = self.verify_addr.clone();
                set.verify_timeout = self.verify_timeout;
                set.handshake = Some(!self.no_handshake);
                let reload = RawReload {
                    signal: self.reload_signal.clone(),
                    pid_file: self.reload_pid_file.clone(),
                    process_name: self.reload_process.clone(),
                    url: self.reload_url.clone(),
                    command: None,
                };
                if reload.signal.is_some()
                    || reload.pid_file.is_some()
                    || reload.process_name.is_some()
                    || reload.url.is_some()
                {
                    set.reload = Some(reload);
                }
                config::RawConfig {
                    daemon: RawDaemon::default(),
                    sets: vec![set],
                    fleet: None,
                }
            }
        };
        let d = &mut raw.daemon;
        d.listen = self.listen.clone().or(d.listen.take());
        d.resync_interval = self.resync_interval.or(d.resync_interval);
        d.settle = self.settle.or(d.settle);
        d.log_format = self.log_format.or(d.log_format);
        let ctx = self
            .config
            .as_ref()
            .map(|p| format!("config {}: ", p.display()))
            .unwrap_or_default();
        config::Config::from_raw(raw).map_err(|e| ConfigError::new(format!("{ctx}{e}")))
    }
}

impl CheckArgs {
    /// The sets to check: every set of `--config`, or one from flags.
    pub fn to_config(&self) -> Result<config::Config, ConfigError> {
        match &self.config {
            Some(path) => {
                refuse_with_config(&self.set.given())?;
                config::Config::from_file(path)
            }
            None => config::Config::from_raw(config::RawConfig {
                daemon: RawDaemon::default(),
                sets: vec![self.set.to_raw("default")?],
                fleet: None,
            }),
        }
    }
}

/// `certgate probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// URL to GET (default: http://127.0.0.1:9464/readyz, or /healthz with --live).
    #[arg(long, env = "CERTGATE_PROBE_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Probe liveness (/healthz) instead of readiness.
    #[arg(long)]
    pub live: bool,
    /// Give up after this long.
    #[arg(long, env = "CERTGATE_PROBE_TIMEOUT", value_parser = clap_duration, default_value = "2s", value_name = "DURATION")]
    pub timeout: Duration,
}

/// `certgate gate` subcommands.
#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Release the one candidate a set's gate holds now (a leaf, or with --removal a bundle
    /// removal), so it is published without waiting for the verifiers. Scoped to that
    /// candidate: a later one is gated again.
    Release(GateReleaseArgs),
}

/// `certgate gate release`.
#[derive(Debug, Args)]
pub struct GateReleaseArgs {
    /// The set whose held candidate to release.
    #[arg(long, value_name = "NAME")]
    pub set: String,
    /// Release only if the held leaf is this one (SHA-256, or a prefix of at least 8 hex
    /// digits, as `/status` shows under gate.candidate_fingerprint_sha256).
    #[arg(long, value_name = "SHA256")]
    pub fingerprint: Option<String>,
    /// Release a held bundle removal (the anchors kept for presenters are dropped).
    #[arg(long)]
    pub removal: bool,
    /// The sidecar's gate listener ([daemon] admin_listen).
    #[arg(
        long,
        env = "CERTGATE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9465",
        value_name = "ADDR"
    )]
    pub admin: std::net::SocketAddr,
    /// Give up after this long.
    #[arg(long, value_parser = clap_duration, default_value = "35s", value_name = "DURATION")]
    pub timeout: Duration,
}

/// `certgate demo`.
#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Admin server address for the demo daemon.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: String,
    /// Seconds between demo rotations.
    #[arg(long, value_parser = clap_duration, default_value = "5s", value_name = "DURATION")]
    pub every: Duration,
    /// Run one full cycle of the scenario, then exit (for scripted runs).
    #[arg(long)]
    pub once: bool,
}

// === certgate fleet ===

/// `certgate fleet`: the fleet's trust anchors and leaves, from a Prometheus-compatible query
/// API. Without a subcommand: per group, each pod's leaf and anchors. Its flags are accepted
/// before or after the subcommand.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// What to show (default: each pod's leaf and anchors, per group).
    #[command(subcommand)]
    pub command: Option<FleetCommand>,
    /// Query API base URL: Prometheus (http://prometheus:9090), Thanos Query, Mimir
    /// (http://mimir/prometheus). http:// or https://.
    #[arg(
        long,
        env = "CERTGATE_PROMETHEUS_URL",
        global = true,
        value_name = "URL"
    )]
    pub prometheus: Option<String>,
    /// An extra request header, e.g. 'X-Scope-OrgID: tenant' for Mimir. Repeatable; the
    /// environment variable holds one per line.
    #[arg(
        long = "header",
        env = "CERTGATE_PROMETHEUS_HEADERS",
        value_delimiter = '\n',
        global = true,
        value_name = "NAME: VALUE"
    )]
    pub headers: Vec<String>,
    /// Send `Authorization: Bearer <contents of this file>`.
    #[arg(
        long,
        env = "CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA certificates to trust for an https:// URL [default: SSL_CERT_FILE, else the
    /// system bundle /etc/ssl/certs/ca-certificates.crt].
    #[arg(
        long,
        env = "CERTGATE_PROMETHEUS_CA_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub ca_file: Option<PathBuf>,
    /// Bound on the whole invocation [default: 30s; for wait: 30m].
    #[arg(long, env = "CERTGATE_FLEET_TIMEOUT", global = true, value_parser = positive_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Label matchers narrowing the fleet, e.g. '{namespace="shop", workload=~"web|api"}'.
    #[arg(
        long,
        env = "CERTGATE_FLEET_SELECTOR",
        global = true,
        value_name = "MATCHERS"
    )]
    pub selector: Option<String>,
    /// Labels grouping the pods [default: namespace,workload,set].
    #[arg(
        long,
        env = "CERTGATE_FLEET_BY",
        value_delimiter = ',',
        global = true,
        value_name = "LABELS"
    )]
    pub by: Vec<String>,
    /// Regex over the `job` label of the scrape jobs whose `up` series tell failing pods
    /// [default: .*certgate.*].
    #[arg(long, env = "CERTGATE_FLEET_JOB", global = true, value_name = "REGEX")]
    pub job: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long, env = "CERTGATE_JSON", global = true)]
    pub json: bool,
    /// Read the query API settings from this config file's [fleet] table (the one the
    /// sidecar's gate uses); the flags above override it.
    #[arg(long, env = "CERTGATE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `certgate fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Per anchor: subject, pods trusting it, first seen (earliest, latest), propagation.
    Anchors,
    /// The pods lacking an anchor, and the unknown ones. Exit 0 none, 1 some.
    Stale(FleetStaleArgs),
    /// Wait until enough pods of every group trust an anchor (before switching an issuer).
    /// Exit 0 converged, 1 timed out.
    Wait(FleetWaitArgs),
}

/// Which anchor `stale` and `wait` look for.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct AnchorChoice {
    /// Anchor id (64 hex digits, or a unique prefix of at least 6).
    #[arg(long, value_name = "ID")]
    pub anchor: Option<String>,
    /// Each group's newest anchor (the latest earliest first-seen time).
    #[arg(long)]
    pub newest: bool,
}

/// `certgate fleet stale`.
#[derive(Debug, Args)]
pub struct FleetStaleArgs {
    /// The anchor.
    #[command(flatten)]
    pub which: AnchorChoice,
}

/// `certgate fleet wait`.
#[derive(Debug, Args)]
pub struct FleetWaitArgs {
    /// The anchor.
    #[command(flatten)]
    pub which: AnchorChoice,
    /// Share of the pods of every group that must trust it (unknown pods count against).
    #[arg(
        long,
        env = "CERTGATE_FLEET_COVERAGE",
        default_value = "100%",
        value_name = "PERCENT"
    )]
    pub coverage: String,
    /// Time between rounds of queries (100ms to 10m).
    #[arg(long, env = "CERTGATE_FLEET_INTERVAL", default_value = "5s", value_parser = poll_interval, value_name = "DURATION")]
    pub interval: Duration,
}

/// A `fleet wait --interval`: 100 ms to 10 minutes.
fn poll_interval(s: &str) -> Result<Duration, String> {
    match clap_duration(s)? {
        d if d < Duration::from_millis(100) => Err("at least 100ms".into()),
        d if d > Duration::from_secs(600) => Err("at most 10m".into()),
        d => Ok(d),
    }
}
