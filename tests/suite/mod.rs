//! The suites, compiled into the one integration-test binary.

mod admin;
mod cli;
mod daemon;
#[cfg(feature = "demo")]
mod demo;
mod faults;
mod fleet;
mod fleet_pods;
mod gate;
mod pipeline;
mod process;
mod prometheus;
mod volume;
mod workloads;
