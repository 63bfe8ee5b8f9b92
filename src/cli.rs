//! Command-line interface. Every flag has a `CERTGATE_*` environment fallback.
//!
//! Exit codes (all commands): 0 success; 1 the material (or the probed endpoint) failed;
//! 2 usage or configuration error; 3 (`fleet`) the query API is unreachable, erroring or partial.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admin::AdminLimits;
use crate::config::{
    self, ConfigError, LogFormat, RawDaemon, RawFleet, RawGate, RawReload, RawSet,
};
use crate::duration::clap_duration;
use crate::gate::{GateMode, UnknownVerifiers};
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

/// The fleet gate of the set given by flags: its `[set.gate]` table.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fleet gate of the set given by flags ([set.gate])")]
pub struct GateArgs {
    /// Hold a leaf from a new CA until the verifiers trust that CA (hold), only report what
    /// would be held (observe, the only mode without --publish-dir), or no gate (off)
    /// [default: off].
    #[arg(long, env = "CERTGATE_GATE", value_enum, value_name = "MODE")]
    pub gate: Option<GateMode>,
    /// Label matchers naming the pods that verify this set's leaf, e.g.
    /// '{namespace="$POD_NAMESPACE"}' ($NAME expands from the environment). Repeatable; the
    /// environment variable holds one per line.
    #[arg(
        long = "gate-verifiers",
        env = "CERTGATE_GATE_VERIFIERS",
        value_delimiter = '\n',
        value_name = "SELECTOR"
    )]
    pub verifiers: Vec<String>,
    /// Label matchers naming the pods whose live leaves this set's bundle verifies (a bundle
    /// dropping an anchor they need is held) [default: the verifiers]. Repeatable; the
    /// environment variable holds one per line.
    #[arg(
        long = "gate-presenters",
        env = "CERTGATE_GATE_PRESENTERS",
        value_delimiter = '\n',
        value_name = "SELECTOR"
    )]
    pub presenters: Vec<String>,
    /// Fewer verifiers seen holds: a selector matching nothing is a typo [default: 1].
    #[arg(
        long = "gate-min-verifiers",
        env = "CERTGATE_GATE_MIN_VERIFIERS",
        value_name = "N"
    )]
    pub min_verifiers: Option<u32>,
    /// PromQL giving how many verifiers should exist, so verifiers without certgate are not
    /// invisible: fewer seen holds.
    #[arg(
        long = "gate-expected-verifiers",
        env = "CERTGATE_GATE_EXPECTED_VERIFIERS",
        value_name = "PROMQL"
    )]
    pub expected_verifiers: Option<String>,
    /// Verifiers whose scrape fails (or that export no trust series) hold, or are left out
    /// [default: hold].
    #[arg(
        long = "gate-unknown-verifiers",
        env = "CERTGATE_GATE_UNKNOWN_VERIFIERS",
        value_enum,
        value_name = "WHAT"
    )]
    pub unknown_verifiers: Option<UnknownVerifiers>,
    /// A clear answer must last this long [default: 60s].
    #[arg(long = "gate-stable-for", env = "CERTGATE_GATE_STABLE_FOR", value_parser = clap_duration, value_name = "DURATION")]
    pub stable_for: Option<Duration>,
    /// Every hold ends by the live chain's notAfter minus this: a duration (30m) or a share
    /// of its lifetime (10%) [default: max(10%, 5m)].
    #[arg(
        long = "gate-release-before-expiry",
        env = "CERTGATE_GATE_RELEASE_BEFORE_EXPIRY",
        value_name = "DURATION|PERCENT"
    )]
    pub release_before_expiry: Option<String>,
    /// A file (a mounted ConfigMap) of released leaf fingerprints or anchor ids, one per line.
    #[arg(
        long = "gate-release-file",
        env = "CERTGATE_GATE_RELEASE_FILE",
        value_name = "PATH"
    )]
    pub release_file: Option<PathBuf>,
}

impl GateArgs {
    /// `[set.gate]` from the flags: `None` without `--gate`.
    fn to_raw(&self) -> Result<Option<RawGate>, ConfigError> {
        let Some(mode) = self.gate else {
            // A gate setting without the switch would be silently ignored.
            return match self.given().iter().skip(1).find(|(_, g)| *g) {
                Some((flag, _)) => Err(ConfigError::new(format!(
                    "{flag} (or its CERTGATE_* variable) needs --gate hold or --gate observe"
                ))),
                None => Ok(None),
            };
        };
        Ok(Some(RawGate {
            mode: Some(mode),
            verifiers: lines(&self.verifiers),
            presenters: (!self.presenters.is_empty()).then(|| lines(&self.presenters)),
            min_verifiers: self.min_verifiers,
            expected_verifiers: self.expected_verifiers.clone(),
            unknown_verifiers: self.unknown_verifiers,
            stable_for: self.stable_for,
            release_before_expiry: self.release_before_expiry.clone(),
            release_file: self.release_file.clone(),
        }))
    }

    /// The gate flags given (by flag or environment), by name; `--gate` first.
    fn given(&self) -> [(&'static str, bool); 9] {
        [
            ("--gate", self.gate.is_some()),
            ("--gate-verifiers", !self.verifiers.is_empty()),
            ("--gate-presenters", !self.presenters.is_empty()),
            ("--gate-min-verifiers", self.min_verifiers.is_some()),
            (
                "--gate-expected-verifiers",
                self.expected_verifiers.is_some(),
            ),
            ("--gate-unknown-verifiers", self.unknown_verifiers.is_some()),
            ("--gate-stable-for", self.stable_for.is_some()),
            (
                "--gate-release-before-expiry",
                self.release_before_expiry.is_some(),
            ),
            ("--gate-release-file", self.release_file.is_some()),
        ]
    }
}

/// The query API the fleet gate reads, for the set given by flags: the `[fleet]` table.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Query API of the fleet gate ([fleet])")]
pub struct QueryApiArgs {
    /// Where the gate reads the verifiers' trust: Prometheus (http://prometheus:9090), Thanos
    /// Query or Mimir (http://mimir/prometheus); the variable `certgate fleet` reads too.
    #[arg(
        long = "prometheus-url",
        env = "CERTGATE_PROMETHEUS_URL",
        value_name = "URL"
    )]
    pub prometheus_url: Option<String>,
    /// An extra request header, e.g. 'X-Scope-OrgID: tenant' for Mimir. Repeatable; the
    /// environment variable holds one per line.
    #[arg(
        long = "prometheus-header",
        env = "CERTGATE_PROMETHEUS_HEADERS",
        value_delimiter = '\n',
        value_name = "NAME: VALUE"
    )]
    pub headers: Vec<String>,
    /// Send `Authorization: Bearer <contents of this file>` (read at start).
    #[arg(
        long = "prometheus-bearer-token-file",
        env = "CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM CA certificates to trust for an https:// URL [default: SSL_CERT_FILE, else the
    /// system bundle].
    #[arg(
        long = "prometheus-ca-file",
        env = "CERTGATE_PROMETHEUS_CA_FILE",
        value_name = "PATH"
    )]
    pub ca_file: Option<PathBuf>,
    /// How often a holding gate asks, with jitter and back-off; nothing is asked while
    /// nothing is held [default: 30s].
    #[arg(long = "fleet-poll-interval", env = "CERTGATE_FLEET_POLL_INTERVAL", value_parser = clap_duration, value_name = "DURATION")]
    pub poll_interval: Option<Duration>,
    /// Bound on each evaluation's queries [default: 10s].
    #[arg(long = "fleet-query-timeout", env = "CERTGATE_FLEET_QUERY_TIMEOUT", value_parser = clap_duration, value_name = "DURATION")]
    pub query_timeout: Option<Duration>,
    /// Regex over the `job` label of certgate's scrape jobs, whose `up` tells unknown
    /// verifiers [default: .*certgate.*].
    #[arg(long = "fleet-job", env = "CERTGATE_FLEET_JOB", value_name = "REGEX")]
    pub job: Option<String>,
}

impl QueryApiArgs {
    /// `[fleet]` from the flags: `None` when none is given.
    fn to_raw(&self) -> Option<RawFleet> {
        self.given().iter().any(|(_, g)| *g).then(|| RawFleet {
            prometheus_url: self.prometheus_url.clone(),
            headers: lines(&self.headers),
            bearer_token_file: self.bearer_token_file.clone(),
            ca_file: self.ca_file.clone(),
            query_timeout: self.query_timeout,
            poll_interval: self.poll_interval,
            job: self.job.clone(),
        })
    }

    /// The query API flags given (by flag or environment), by name.
    fn given(&self) -> [(&'static str, bool); 7] {
        [
            ("--prometheus-url", self.prometheus_url.is_some()),
            ("--prometheus-header", !self.headers.is_empty()),
            (
                "--prometheus-bearer-token-file",
                self.bearer_token_file.is_some(),
            ),
            ("--prometheus-ca-file", self.ca_file.is_some()),
            ("--fleet-poll-interval", self.poll_interval.is_some()),
            ("--fleet-query-timeout", self.query_timeout.is_some()),
            ("--fleet-job", self.job.is_some()),
        ]
    }
}

/// The non-blank entries of a list flag: its variable holds one entry per line, and a YAML
/// block scalar ends in a newline.
fn lines(values: &[String]) -> Vec<String> {
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .collect()
}

/// Config keys as `run` spells them in flags, in the order they are tried at each position:
/// a set given by flags goes through the config file's validation, and its errors name the
/// flags the user typed. The query API's own errors name `certgate fleet`'s flags.
const FLAG_OF_KEY: &[(&str, &str)] = &[
    ("needs [fleet] prometheus_url", "needs --prometheus-url"),
    ("[fleet]: ", ""),
    ("fleet.prometheus_url", "--prometheus-url"),
    ("prometheus_url", "--prometheus-url"),
    ("fleet.query_timeout", "--fleet-query-timeout"),
    ("fleet.poll_interval", "--fleet-poll-interval"),
    ("--bearer-token-file", "--prometheus-bearer-token-file"),
    ("--ca-file", "--prometheus-ca-file"),
    ("--header", "--prometheus-header"),
    ("daemon.admin_listen", "--admin-listen"),
    (
        "gate.mode: \"hold\" needs publish_dir",
        "--gate hold needs --publish-dir",
    ),
    ("use \"observe\")", "use --gate observe)"),
    ("gate.mode", "--gate"),
    ("gate.verifiers", "--gate-verifiers"),
    ("gate.presenters", "--gate-presenters"),
    ("gate.expected_verifiers", "--gate-expected-verifiers"),
    ("gate.stable_for", "--gate-stable-for"),
    ("gate.release_before_expiry", "--gate-release-before-expiry"),
    (": gate: ", ": --gate: "),
];

/// `msg` with each key of `table` replaced by its flag, in one pass (a flag is never
/// rewritten again).
fn name_flags(msg: &str, table: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(msg.len() + 16);
    let mut rest = msg;
    'scan: while let Some(c) = rest.chars().next() {
        for (key, flag) in table {
            if let Some(after) = rest.strip_prefix(key) {
                out.push_str(flag);
                rest = after;
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Refuses the first flag of `given` that was given along with `--config`: the file holds every
/// set's settings, and a flag silently ignored would look like it applied.
fn refuse_with_config(given: &[(&'static str, bool)]) -> Result<(), ConfigError> {
    refuse_with_config_as(given, "per-set settings come from the config file")
}

/// [`refuse_with_config`], saying where the file holds the setting.
fn refuse_with_config_as(given: &[(&'static str, bool)], why: &str) -> Result<(), ConfigError> {
    match given.iter().find(|(_, g)| *g) {
        Some((flag, _)) => Err(ConfigError::new(format!(
            "{flag} (or its CERTGATE_* variable) cannot be combined with --config: {why}"
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
    /// Loopback address of the gate's release listener (`certgate gate release`, which reads
    /// the same variable); bound only when a gate holds [default: 127.0.0.1:9465].
    #[arg(long, env = "CERTGATE_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// The fleet gate of the set given by flags.
    #[command(flatten)]
    pub gate: GateArgs,
    /// The query API the gate reads.
    #[command(flatten)]
    pub query_api: QueryApiArgs,
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
                refuse_with_config(&self.gate.given())?;
                refuse_with_config_as(
                    &self.query_api.given(),
                    "the query API settings come from the config file's [fleet] table",
                )?;
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
                set.gate = self.gate.to_raw()?;
                config::RawConfig {
                    daemon: RawDaemon::default(),
                    sets: vec![set],
                    fleet: self.query_api.to_raw(),
                }
            }
        };
        let d = &mut raw.daemon;
        d.listen = self.listen.clone().or(d.listen.take());
        d.resync_interval = self.resync_interval.or(d.resync_interval);
        d.settle = self.settle.or(d.settle);
        d.log_format = self.log_format.or(d.log_format);
        d.admin_listen = self.admin_listen.clone().or(d.admin_listen.take());
        config::Config::from_raw(raw).map_err(|e| {
            let e = e.to_string();
            match &self.config {
                // Settings from flags are named as flags.
                None => ConfigError::new(name_flags(&e, FLAG_OF_KEY)),
                Some(path) => {
                    let flags = [
                        ("daemon.listen", "--listen"),
                        ("daemon.admin_listen", "--admin-listen"),
                    ];
                    let given = [self.listen.is_some(), self.admin_listen.is_some()];
                    let overridden: Vec<_> = flags
                        .into_iter()
                        .zip(given)
                        .filter_map(|(f, g)| g.then_some(f))
                        .collect();
                    ConfigError::new(format!(
                        "config {}: {}",
                        path.display(),
                        name_flags(&e, &overridden)
                    ))
                }
            }
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_errors_become_flags_once() {
        let cases = [
            (
                "set \"default\": gate.verifiers: \"shop\": must start with '{'",
                "set \"default\": --gate-verifiers: \"shop\": must start with '{'",
            ),
            (
                "set \"a\": gate: needs [fleet] prometheus_url (where the verifiers' trust is read)",
                "set \"a\": --gate: needs --prometheus-url (where the verifiers' trust is read)",
            ),
            (
                "[fleet]: --ca-file is for https:// URLs; prometheus_url is http://",
                "--prometheus-ca-file is for https:// URLs; --prometheus-url is http://",
            ),
            (
                "[fleet]: --header: expected 'Name: value'",
                "--prometheus-header: expected 'Name: value'",
            ),
            (
                "fleet.poll_interval: must be between 100ms and 1h",
                "--fleet-poll-interval: must be between 100ms and 1h",
            ),
            // What is not a gate or query API key is left as it is.
            (
                "set \"a\": key_mode: only meaningful with publish_dir",
                "set \"a\": key_mode: only meaningful with publish_dir",
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(name_flags(msg, FLAG_OF_KEY), want);
        }
        // A flag is never rewritten again.
        for (_, flag) in FLAG_OF_KEY {
            assert_eq!(name_flags(flag, FLAG_OF_KEY), *flag, "{flag}");
        }
    }
}
