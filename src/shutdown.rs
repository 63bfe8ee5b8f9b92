//! Shutdown as a value (after kubert's `shutdown.rs`): [`sigint_or_sigterm`] registers the
//! handlers up front, so a failure to register is an error at start-up rather than a process
//! that never stops; the first SIGTERM or SIGINT asks every [`Watch`] to stop in order, a second
//! one aborts. [`hup_and_others`] keeps the other signals a shared-PID pod may send from
//! killing the daemon: SIGHUP asks for a resync, the rest are logged.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// Exit code after a second signal: 128 + SIGINT, as a shell reports an interrupted command.
pub const ABORT_EXIT_CODE: i32 = 130;

/// A signal handler could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("cannot register a {signal} handler: {source}")]
pub struct RegisterError {
    signal: &'static str,
    #[source]
    source: std::io::Error,
}

/// Owns the signal handlers; [`Shutdown::run`] turns them into the orderly stop and the abort.
#[derive(Debug)]
pub struct Shutdown {
    term: Signal,
    int: Signal,
    tx: watch::Sender<bool>,
}

/// Resolves once the first signal arrived; clone one per component that must stop.
#[derive(Debug, Clone)]
pub struct Watch(watch::Receiver<bool>);

/// Registers SIGTERM and SIGINT handlers. Needs a tokio runtime with I/O enabled.
pub fn sigint_or_sigterm() -> Result<(Shutdown, Watch), RegisterError> {
    let term = signal(SignalKind::terminate()).map_err(|source| RegisterError {
        signal: "SIGTERM",
        source,
    })?;
    let int = signal(SignalKind::interrupt()).map_err(|source| RegisterError {
        signal: "SIGINT",
        source,
    })?;
    let (tx, rx) = watch::channel(false);
    Ok((Shutdown { term, int, tx }, Watch(rx)))
}

// === impl Shutdown ===

impl Shutdown {
    /// Waits for the first signal and tells every [`Watch`]; then waits for a second, runs
    /// `on_abort` (last-resort clean-up) and exits the process with [`ABORT_EXIT_CODE`]. Meant
    /// to be spawned; dropping it before a signal resolves every [`Watch`] too.
    pub async fn run(mut self, on_abort: impl FnOnce()) {
        let name = self.next().await;
        tracing::info!(signal = name, "stopping (a second signal aborts)");
        let _ = self.tx.send(true);
        let name = self.next().await;
        tracing::warn!(signal = name, "second signal: aborting");
        on_abort();
        std::process::exit(ABORT_EXIT_CODE);
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The other signals a shared-PID pod may send certgate, whose default action would kill it:
/// SIGHUP (the usual "reload") asks for a resync; SIGUSR1, SIGUSR2 and SIGQUIT are logged and
/// ignored. Run by [`OtherSignals::run`].
#[derive(Debug)]
pub struct OtherSignals {
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
    quit: Signal,
}

/// Registers SIGHUP, SIGUSR1, SIGUSR2 and SIGQUIT handlers; from then on none of them kills
/// the process. Needs a tokio runtime with I/O enabled.
pub fn hup_and_others() -> Result<OtherSignals, RegisterError> {
    let register = |kind: SignalKind, signal: &'static str| {
        tokio::signal::unix::signal(kind).map_err(|source| RegisterError { signal, source })
    };
    Ok(OtherSignals {
        hup: register(SignalKind::hangup(), "SIGHUP")?,
        usr1: register(SignalKind::user_defined1(), "SIGUSR1")?,
        usr2: register(SignalKind::user_defined2(), "SIGUSR2")?,
        quit: register(SignalKind::quit(), "SIGQUIT")?,
    })
}

// === impl OtherSignals ===

impl OtherSignals {
    /// Calls `on_hup` at each SIGHUP and logs the others, until the runtime stops. Meant to be
    /// spawned.
    pub async fn run(mut self, on_hup: impl Fn()) {
        loop {
            let name = tokio::select! {
                Some(()) = self.hup.recv() => {
                    tracing::info!(signal = "SIGHUP", "resync requested");
                    on_hup();
                    continue;
                }
                Some(()) = self.usr1.recv() => "SIGUSR1",
                Some(()) = self.usr2.recv() => "SIGUSR2",
                Some(()) = self.quit.recv() => "SIGQUIT",
                else => return,
            };
            tracing::info!(
                signal = name,
                "signal ignored (SIGHUP resyncs; SIGTERM or SIGINT stops)"
            );
        }
    }
}

// === impl Watch ===

impl Watch {
    /// Resolves when shutdown was signalled (at once if it already was). Also resolves when the
    /// [`Shutdown`] was dropped without a signal: nothing could ever signal it then.
    pub async fn signaled(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// Whether shutdown was signalled.
    pub fn is_signaled(&self) -> bool {
        *self.0.borrow()
    }
}
