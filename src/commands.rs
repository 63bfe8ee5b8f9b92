//! The commands behind the CLI, each returning an [`Outcome`] that `main` turns into an exit code.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{CheckArgs, DemoArgs, InspectArgs, ProbeArgs, RunArgs};
use crate::config::{Config, LogFormat, SetConfig};
use crate::daemon::{Daemon, Shared};
use crate::http;
use crate::metrics::Metrics;
use crate::pipeline::{self, EvalOptions, Evaluation};
use crate::report;
use crate::time_fmt::{now_unix, parse_rfc3339};

/// Process outcome; the discriminant is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Everything passed.
    Ok = 0,
    /// The material or the probed endpoint failed.
    Failed = 1,
    /// Usage or configuration error.
    Usage = 2,
}

fn usage_error(msg: impl std::fmt::Display) -> Outcome {
    eprintln!("certgate: {msg}");
    Outcome::Usage
}

fn runtime() -> Result<tokio::runtime::Runtime, Outcome> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage_error(format!("cannot start runtime: {e}")))
}

/// `certgate check`.
pub fn check(args: &CheckArgs) -> Outcome {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let now = match &args.at {
        Some(at) => match parse_rfc3339(at) {
            Ok(t) => t,
            Err(e) => return usage_error(format!("--at: {e}")),
        },
        None => now_unix(),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(o) => return o,
    };
    let results = rt.block_on(check_sets(&config, args, now));
    let passed = results.iter().all(|(_, e)| e.passed());
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let doc = report::check_document(now, &results);
        match serde_json::to_string_pretty(&doc) {
            Ok(s) => {
                let _ = writeln!(stdout, "{s}");
            }
            Err(e) => return usage_error(format!("cannot encode JSON: {e}")),
        }
    } else {
        for (set, eval) in &results {
            let _ = write!(stdout, "{}", report::human_set(set, eval, now));
        }
        let failed = results.iter().filter(|(_, e)| !e.passed()).count();
        let _ = match failed {
            0 => writeln!(stdout, "PASS: {} set(s) valid", results.len()),
            n => writeln!(stdout, "FAIL: {n} of {} set(s) failed", results.len()),
        };
    }
    drop(stdout);
    for (set, eval) in &results {
        for line in report::failure_lines(set, eval) {
            eprintln!("{line}");
        }
    }
    if passed {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

async fn check_sets(config: &Config, args: &CheckArgs, now: i64) -> Vec<(SetConfig, Evaluation)> {
    let mut out = Vec::with_capacity(config.sets.len());
    for set in &config.sets {
        // Flags win; otherwise the config's [daemon] limits (built-in defaults without one).
        let opts = EvalOptions {
            max_file_size: args
                .max_file_size
                .unwrap_or(config.daemon.eval.max_file_size),
            handshake: !args.no_handshake && set.handshake,
            handshake_timeout: args
                .handshake_timeout
                .unwrap_or(config.daemon.eval.handshake_timeout),
        };
        let eval = pipeline::evaluate(&set.paths, &set.policy, &opts, now).await;
        out.push((set.clone(), eval));
    }
    out
}

/// `certgate inspect`.
pub fn inspect(args: &InspectArgs) -> Outcome {
    let files: Vec<_> = args
        .files
        .iter()
        .map(|f| report::inspect_file(f, args.max_file_size))
        .collect();
    let mut stdout = std::io::stdout().lock();
    if args.json {
        match serde_json::to_string_pretty(&files) {
            Ok(s) => {
                let _ = writeln!(stdout, "{s}");
            }
            Err(e) => return usage_error(format!("cannot encode JSON: {e}")),
        }
    } else {
        for f in &files {
            let _ = write!(stdout, "{}", report::human_inspected(f));
        }
    }
    drop(stdout);
    let mut failed = false;
    for f in &files {
        if let Some(e) = &f.error {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        Outcome::Failed
    } else {
        Outcome::Ok
    }
}

/// Sets up tracing: `RUST_LOG`-style filter (default `info`), text or JSON lines on stdout.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// glibc gives each thread that allocates its own arena, and memory freed in one is not
/// returned to the others: a sidecar with a couple of worker and blocking threads then holds
/// several times the memory it uses. Two arenas are plenty for this workload.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// `certgate run`.
pub fn run(args: &RunArgs) -> Outcome {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    init_tracing(config.daemon.log_format);
    limit_malloc_arenas();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start runtime: {e}")),
    };
    rt.block_on(serve(config))
}

/// Runs the daemon and its admin server until SIGTERM/SIGINT (a second signal aborts).
pub async fn serve(config: Config) -> Outcome {
    let server = match Server::bind(config).await {
        Ok(s) => s,
        Err(o) => return o,
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: aborting");
        std::process::exit(130);
    });
    server
        .run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await
}

/// The daemon with its admin server bound but not yet serving: split from [`serve`] so an
/// embedder (`certgate demo`) can read the bound address and the daemon's snapshots, and stop
/// it with its own shutdown future instead of a signal.
pub struct Server {
    daemon: Daemon,
    shared: Shared,
    listener: tokio::net::TcpListener,
    listen: SocketAddr,
    heartbeat_bound: Duration,
}

impl Server {
    /// Builds the metrics and the daemon and binds the admin address. Errors are printed and
    /// returned as the outcome to exit with.
    pub async fn bind(config: Config) -> Result<Self, Outcome> {
        let metrics = match Metrics::new() {
            Ok(m) => Arc::new(m),
            Err(e) => return Err(usage_error(format!("metrics: {e}"))),
        };
        let listen = config.daemon.listen;
        let heartbeat_bound = config.daemon.resync_interval * 3 + Duration::from_secs(10);
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => return Err(usage_error(format!("--listen {listen}: cannot bind: {e}"))),
        };
        let (daemon, shared) = Daemon::new(config, metrics, http::wall_clock_millis);
        // With port 0 the kernel picks the port: report the one actually bound.
        let listen = listener.local_addr().unwrap_or(listen);
        tracing::info!(listen = %listen, version = env!("CARGO_PKG_VERSION"), "admin server listening (/healthz /readyz /status /metrics)");
        Ok(Self {
            daemon,
            shared,
            listener,
            listen,
            heartbeat_bound,
        })
    }

    /// The admin server's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The handles the admin server reads: snapshots, heartbeat, metrics.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Serves until `shutdown` resolves; an in-flight evaluation or publish finishes first.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Outcome {
        let Self {
            daemon,
            shared,
            listener,
            heartbeat_bound,
            ..
        } = self;
        let app = http::router(http::AppState {
            snapshot: shared.snapshot.clone(),
            heartbeat: shared.heartbeat.clone(),
            heartbeat_bound,
            metrics: shared.metrics.clone(),
            clock: http::wall_clock_millis,
        });
        // The daemon loop polls `shutdown`; this channel passes its firing on to the server.
        let (stop_tx, mut http_stop) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|s| *s).await;
                })
                .await
        });
        let result = daemon
            .run(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        server.abort();
        match result {
            Ok(()) => {
                tracing::info!("stopped");
                Outcome::Ok
            }
            Err(e) => {
                tracing::error!("{e}");
                Outcome::Failed
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT (never, if the handlers cannot be installed).
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// `certgate probe`.
pub fn probe(args: &ProbeArgs) -> Outcome {
    let url = args.url.clone().unwrap_or_else(|| {
        format!(
            "http://127.0.0.1:9464/{}",
            if args.live { "healthz" } else { "readyz" }
        )
    });
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(o) => return o,
    };
    match rt.block_on(http::client_request_body("GET", &url, args.timeout)) {
        Ok((200, _)) => Outcome::Ok,
        Ok((status, body)) => {
            eprintln!("certgate probe: {url}: HTTP {status}: {}", body.trim());
            Outcome::Failed
        }
        Err(e) => {
            eprintln!("certgate probe: {e}");
            Outcome::Failed
        }
    }
}

/// `certgate demo`.
pub fn demo(args: &DemoArgs) -> Outcome {
    crate::demo::run(args)
}
