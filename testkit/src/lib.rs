//! certgate's test kit, one of each fixture, shared by the tests, the benches, the fuzz targets
//! and `certgate demo`:
//!
//! 1. [`pki`]: the PKI builder (rcgen): roots, intermediates, leaves, keys in every encoding;
//! 2. [`kubelet`]: kubelet's atomic writer, the `..data` swap a Secret volume update makes;
//! 3. [`workload`]: a TLS workload serving a publish directory, reloading (or not) its cert.
//!
//! It does not depend on certgate: the sidecar links it only with its `demo` feature.

pub mod kubelet;
pub mod pki;
pub mod workload;
