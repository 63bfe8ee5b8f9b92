//! One integration-test binary (one link) declaring every suite.

mod util;

mod suite;
