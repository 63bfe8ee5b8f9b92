//! The commands behind the CLI, each returning an [`Outcome`] that `main` turns into an exit
//! code. Dispatch and wiring only: the admin server is [`crate::admin`], signals
//! [`crate::shutdown`], logging [`crate::logging`].

use std::io::Write;

use crate::admin::{AdminLimits, Server};
use crate::cli::{CheckArgs, InspectArgs, ProbeArgs, RunArgs};
use crate::config::{Config, SetConfig};
use crate::http;
use crate::pipeline::{self, EvalOptions, Evaluation};
use crate::report;
use crate::shutdown;
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
    /// `certgate fleet`: the query API is unreachable, erroring or answered with partial data.
    Unavailable = 3,
}

/// Prints `certgate: MSG` on stderr; the outcome for a usage or configuration error. A broken
/// stderr loses the message but keeps the exit code (`eprintln!` would panic).
pub fn usage_error(msg: impl std::fmt::Display) -> Outcome {
    let _ = writeln!(std::io::stderr(), "certgate: {msg}");
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

/// Makes the process not dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core dump, which would
/// hold the private keys certgate reads, and no ptrace or `/proc/PID/mem` by other processes
/// of the same user. Called first thing by every command, before logging exists; the kernel
/// does not refuse this flag, so the result is not checked.
pub fn forbid_core_dumps() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_DUMPABLE takes one integer argument and touches no memory.
    unsafe {
        let _ = libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// `certgate run`.
pub fn run(args: &RunArgs) -> Outcome {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    crate::logging::init(config.daemon.log_format);
    crate::memory::tune_allocator();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start runtime: {e}")),
    };
    rt.block_on(serve(config, args.admin_limits()))
}

/// Runs the daemon and its admin server (its peers bounded by `limits`) until SIGTERM/SIGINT
/// (a second signal aborts). SIGHUP asks for a resync; SIGUSR1, SIGUSR2 and SIGQUIT are logged.
pub async fn serve(config: Config, limits: AdminLimits) -> Outcome {
    let (shutdown, watch) = match shutdown::sigint_or_sigterm() {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let others = match shutdown::hup_and_others() {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let server = match Server::bind(config).await {
        Ok(s) => s.with_limits(limits),
        Err(e) => return usage_error(e),
    };
    tokio::spawn(shutdown.run(|| {}));
    let resync = server.resync_handle();
    tokio::spawn(others.run(move || resync.request()));
    match server.run(watch.signaled()).await {
        Ok(()) => Outcome::Ok,
        Err(e) => {
            tracing::error!("{e}");
            Outcome::Failed
        }
    }
}

/// `certgate gate release`: POSTs to the sidecar's loopback gate listener.
pub fn gate(cmd: &crate::cli::GateCommand) -> Outcome {
    let crate::cli::GateCommand::Release(args) = cmd;
    if let Some(fp) = &args.fingerprint {
        let fp = fp.trim();
        if fp.len() < 8 || fp.len() > 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return usage_error(format!(
                "gate release --fingerprint {fp:?}: expected a SHA-256 in hex (or a prefix of \
                 at least 8 hex digits)"
            ));
        }
    }
    let mut url = format!(
        "http://{}{}?set={}",
        args.admin,
        http::gate::RELEASE_PATH,
        crate::fleet::selector::form_encode(&args.set)
    );
    if let Some(fp) = &args.fingerprint {
        url.push_str("&fingerprint=");
        url.push_str(&crate::fleet::selector::form_encode(fp.trim()));
    }
    if args.removal {
        url.push_str("&removal=true");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(o) => return o,
    };
    let line = |s: &str| s.trim().replace('\n', " ");
    match rt.block_on(http::client_request_body("POST", &url, args.timeout)) {
        Ok((200, body)) => {
            let _ = writeln!(std::io::stdout(), "{}", line(&body));
            Outcome::Ok
        }
        Ok((409, body)) => {
            let _ = writeln!(std::io::stderr(), "certgate gate release: {}", line(&body));
            Outcome::Failed
        }
        Ok((400 | 404, body)) => usage_error(format!("gate release: {}", line(&body))),
        Ok((status, body)) => {
            let _ = writeln!(
                std::io::stderr(),
                "certgate gate release: HTTP {status}: {}",
                line(&body)
            );
            Outcome::Unavailable
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "certgate gate release: {e} (is a set's gate in mode \"hold\" on this pod? \
                 the listener is [daemon] admin_listen)"
            );
            Outcome::Unavailable
        }
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
