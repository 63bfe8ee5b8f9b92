//! certgate: TLS certificate lifecycle safety for Kubernetes pods.
//!
//! The pipeline, and the invariants it keeps:
//! 1. **Load** ([`pipeline::load`]): cert, key and bundle are read bounded, never from a FIFO,
//!    and from one `..data` generation, so a pair is never torn across two rotations.
//! 2. **Inspect** ([`pipeline::inspect`]): every certificate is described; key bytes never are.
//! 3. **Validate** ([`pipeline::validate`]) at an explicit `now`: chain to the *current* bundle,
//!    names, key match, validity of every certificate in the built chain, remaining lifetime.
//! 4. **Prove** ([`pipeline::handshake`]): a real rustls handshake over loopback.
//! 5. **Publish** ([`publish`]): only an [`pipeline::Approved`] candidate is written, atomically,
//!    kubelet-style; the previous generation is kept for swap-back.
//! 6. **Report** ([`http`], [`metrics`]): probes and metrics read a snapshot, never wait on work.

//!
//! Around the pipeline: [`daemon`] runs it on every change, [`admin`] serves its reports,
//! [`shutdown`] stops both in order, [`commands`] is what the CLI ([`cli`]) dispatches to.
//! [`fleet`] reads the fleet's trust back from Prometheus (`certgate fleet`).
//! `certgate demo` lives in the binary, behind the `demo` feature: the library mints no
//! certificates.

pub mod admin;
pub mod bounded;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod fleet;
pub mod gate;
pub mod http;
pub mod ids;
pub mod labels;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod publish;
pub mod report;
pub mod shutdown;
pub mod state;
pub mod time_fmt;

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
