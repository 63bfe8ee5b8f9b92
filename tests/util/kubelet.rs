//! kubelet's atomic writer: the test kit's (see `testkit/src/kubelet.rs`).

pub use certgate_testkit::kubelet::*;
