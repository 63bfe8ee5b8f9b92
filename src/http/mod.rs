//! HTTP: the admin router ([`server`]) and the minimal client ([`client`]) `probe` and reload
//! actions use; apart, so neither drags in the other.

pub mod client;
pub mod gate;
pub mod server;

#[cfg(test)]
mod tests;

pub use client::{client_request, client_request_body};
pub use server::{router, AppState};

/// Wall clock in Unix milliseconds: the clock [`AppState`] is given outside tests.
pub fn wall_clock_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}
