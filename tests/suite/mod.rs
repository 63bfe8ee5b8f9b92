//! The suites, compiled into the one integration-test binary.

mod cli;
mod daemon;
mod faults;
mod pipeline;
