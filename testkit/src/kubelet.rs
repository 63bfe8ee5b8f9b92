//! kubelet's AtomicWriter, step for step, so tests (and the demo) show certgate exactly what a
//! Secret volume update looks like to inotify: a new `..<timestamp>` directory filled while
//! private (0700, then 0755), `..data_tmp` pointed at it and renamed onto `..data` (the one
//! commit point), user-visible symlinks `name -> ..data/name`, names no longer in the payload
//! unlinked, the previous generation removed.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The symlink whose rename commits a generation.
pub const DATA_LINK: &str = "..data";
/// The symlink built before the commit.
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, Copy)]
pub struct File<'a> {
    /// Name in the volume (no `/`).
    pub name: &'a str,
    /// Content.
    pub bytes: &'a [u8],
    /// Permission bits (kubelet's default is 0644).
    pub mode: u32,
}

impl<'a> File<'a> {
    /// A file with kubelet's default mode, 0644.
    pub fn new(name: &'a str, bytes: &'a [u8]) -> Self {
        Self {
            name,
            bytes,
            mode: 0o644,
        }
    }

    /// The same file with `mode`.
    pub fn mode(self, mode: u32) -> Self {
        Self { mode, ..self }
    }
}

/// Writes one generation of `files` (name → bytes, mode 0644) into `dir`, atomically, like
/// kubelet. Returns the new generation's directory name. Panics on I/O errors (tests only).
pub fn atomic_write(dir: &Path, files: &[(&str, &[u8])]) -> String {
    atomic_write_with(dir, files, |_| {})
}

/// Like [`atomic_write`], calling `before_commit` just before the `..data` rename.
pub fn atomic_write_with(
    dir: &Path,
    files: &[(&str, &[u8])],
    before_commit: impl FnOnce(&Path),
) -> String {
    let files: Vec<File<'_>> = files.iter().map(|(n, b)| File::new(n, b)).collect();
    match write_generation(dir, &files, before_commit) {
        Ok(name) => name,
        Err(e) => panic!("kubelet atomic write: {e}"),
    }
}

/// The writer itself: one generation of `files` into `dir` (created 0755 if missing), calling
/// `before_commit` just before the `..data` rename. Returns the new generation's name. Errors
/// name the path they concern.
pub fn write_generation(
    dir: &Path,
    files: &[File<'_>],
    before_commit: impl FnOnce(&Path),
) -> io::Result<String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(at(dir))?;
    let data = dir.join(DATA_LINK);
    let old = fs::read_link(&data).ok();

    // 1. `..<UTC timestamp>.<unique digits>`, created 0700: nobody reads it half-written.
    let name = generation_name();
    let gen = dir.join(&name);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&gen)
        .map_err(at(&gen))?;
    // 2. the payload, each file with its mode (set explicitly: the umask may have cleared bits).
    for file in files {
        let path = gen.join(file.name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&path)
            .map_err(at(&path))?;
        f.write_all(file.bytes).map_err(at(&path))?;
        f.set_permissions(fs::Permissions::from_mode(file.mode))
            .map_err(at(&path))?;
    }
    fs::set_permissions(&gen, fs::Permissions::from_mode(0o755)).map_err(at(&gen))?;

    // 3. `..data_tmp -> new dir`; 4. renamed onto `..data`: the commit point.
    let tmp = dir.join(DATA_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(at(&tmp)(e)),
        _ => {}
    }
    symlink(&name, &tmp).map_err(at(&tmp))?;
    before_commit(dir);
    fs::rename(&tmp, &data).map_err(at(&data))?;

    // 5. user-visible symlinks; 6. names no longer in the payload unlinked.
    for file in files {
        let link = dir.join(file.name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(PathBuf::from(DATA_LINK).join(file.name), &link).map_err(at(&link))?;
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !files.iter().any(|f| f.name == n) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    // 7. the previous generation removed: only ever a sibling `..` directory, whatever
    // `..data` pointed at.
    if let Some(old) = old.and_then(|o| o.to_str().map(str::to_string)) {
        if old != name && old.starts_with("..") && !old.contains('/') {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(name)
}

/// `..2006_01_02_15_04_05.<digits>`, kubelet's format, unique within the process.
fn generation_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let ts = time::OffsetDateTime::now_utc();
    let nanos = u64::from(ts.nanosecond());
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{}",
        ts.year(),
        u8::from(ts.month()),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        nanos * 1000 + N.fetch_add(1, Ordering::Relaxed) % 1000
    )
}

/// Prefixes an I/O error with the path it concerns.
fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let path = path.to_path_buf();
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_through_data_and_drops_the_old_generation() {
        let tmp = std::env::temp_dir().join(format!("testkit-kubelet-{}", std::process::id()));
        let dir = tmp.join("vol");
        let first = atomic_write(&dir, &[("a", b"1"), ("b", b"x")]);
        let second = write_generation(&dir, &[File::new("a", b"2").mode(0o600)], |d| {
            assert!(d.join(DATA_TMP).exists(), "hook runs before the commit");
        })
        .expect("second write");
        assert_ne!(first, second);
        assert_eq!(
            fs::read_link(dir.join(DATA_LINK)).ok(),
            Some(PathBuf::from(&second))
        );
        assert_eq!(fs::read(dir.join("a")).ok(), Some(b"2".to_vec()));
        assert!(!dir.join(&first).exists(), "previous generation removed");
        assert!(fs::symlink_metadata(dir.join("b")).is_err(), "b unlinked");
        assert!(!dir.join(DATA_TMP).exists());
        let mode =
            fs::metadata(dir.join(&second).join("a")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let _ = fs::remove_dir_all(&tmp);
    }
}
