//! Shared by the fuzz targets (each includes it with `mod common;`).

/// A scratch directory: under `$CERTGATE_FUZZ_TMP` (run.sh sets it and removes it afterwards),
/// else on tmpfs (`/dev/shm`) when there is one, else in the system temp dir.
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    match std::env::var_os("CERTGATE_FUZZ_TMP") {
        Some(dir) => b.tempdir_in(dir),
        None => b.tempdir_in("/dev/shm").or_else(|_| b.tempdir()),
    }
    .expect("scratch dir")
}
