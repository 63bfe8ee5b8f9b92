//! One integration-test binary (one link) declaring every suite.

// Test and bench code may panic on a broken fixture; the lint is for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod util;

mod suite;
