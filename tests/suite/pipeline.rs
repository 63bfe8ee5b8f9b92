//! Library-level pipeline tests.
