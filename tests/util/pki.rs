//! The test PKI: the test kit's rcgen builder (see `testkit/src/pki.rs`).

pub use certgate_testkit::pki::*;
