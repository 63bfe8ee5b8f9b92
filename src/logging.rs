//! Logging set-up: one `tracing` subscriber per process, filtered by `RUST_LOG`. Logging never
//! takes the process down: once the log reader is gone (EPIPE) or the disk behind a redirect is
//! full, lines are dropped, never turned into a panic.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// For `certgate run`: `RUST_LOG`-style filter (default `info`), text or JSON lines on stdout.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = io::IsTerminal::is_terminal(&io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(Lossy(io::stdout))
        // Its own report of a failed write goes to stderr with `eprintln!`, which panics when
        // stderr is broken too (the same closed pipe, usually).
        .log_internal_errors(false);
    // Fails only when a subscriber is already set, which is then the one to keep.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// For commands whose stdout is their own output (`certgate demo`): text on stderr, filter
/// `RUST_LOG` or else `default_filter`.
pub fn init_stderr(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(Lossy(io::stderr))
        .log_internal_errors(false)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .try_init();
}

/// A [`MakeWriter`] whose writers swallow write errors: a log line that cannot be written is
/// lost, and there is nowhere left to report that.
#[derive(Debug, Clone, Copy)]
pub struct Lossy<F>(pub F);

/// The writer [`Lossy`] makes.
#[derive(Debug)]
pub struct LossyWriter<W>(W);

impl<'a, F, W> MakeWriter<'a> for Lossy<F>
where
    F: Fn() -> W + 'static,
    W: Write,
{
    type Writer = LossyWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        LossyWriter((self.0)())
    }
}

impl<W: Write> Write for LossyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Claiming the whole buffer on error ends `write_all` at once instead of retrying.
        Ok(self.0.write(buf).unwrap_or(buf.len()))
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader went away.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn write_errors_are_swallowed() {
        let make = Lossy(|| Broken);
        let mut w = make.make_writer();
        assert!(w.write_all(b"a log line\n").is_ok());
        assert!(w.flush().is_ok());
    }
}
