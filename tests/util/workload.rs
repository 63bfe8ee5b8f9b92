//! The TLS workload for post-publish verification tests: the test kit's (see
//! `testkit/src/workload.rs`).

pub use certgate_testkit::workload::*;
