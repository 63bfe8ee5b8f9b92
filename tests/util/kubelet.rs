//! kubelet's AtomicWriter, step for step, so tests see exactly what a Secret volume update
//! looks like to inotify: new `..<timestamp>` dir (0700, then 0755), files written, `..data_tmp`
//! symlink, rename onto `..data` (the commit), user-visible symlinks, old dir removed.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes one generation of `files` (name → bytes) into `dir`, atomically, like kubelet.
/// Returns the new generation's directory name.
pub fn atomic_write(dir: &Path, files: &[(&str, &[u8])]) -> String {
    atomic_write_with(dir, files, |_| {})
}

/// Like [`atomic_write`], calling `before_commit` just before the `..data` rename.
pub fn atomic_write_with(
    dir: &Path,
    files: &[(&str, &[u8])],
    before_commit: impl FnOnce(&Path),
) -> String {
    fs::create_dir_all(dir).expect("volume dir");
    let data = dir.join("..data");
    let old = fs::read_link(&data).ok();

    // 1. ..<UTC timestamp>.<random digits>, created 0700 then chmod 0755.
    let ts = time::OffsetDateTime::now_utc();
    let name = format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{}",
        ts.year(),
        u8::from(ts.month()),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        unique_digits()
    );
    let gen = dir.join(&name);
    fs::create_dir(&gen).expect("generation dir");
    fs::set_permissions(&gen, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    // 2. files with their modes.
    for (file, bytes) in files {
        let p = gen.join(file);
        fs::write(&p, bytes).expect("write payload");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod file");
    }
    fs::set_permissions(&gen, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    // 3. ..data_tmp -> new dir; 4. rename onto ..data (the commit point).
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(&name, &tmp).expect("..data_tmp symlink");
    before_commit(dir);
    fs::rename(&tmp, &data).expect("commit ..data");
    // 5. user-visible symlinks, 6. drop ones no longer in the payload.
    for (file, _) in files {
        let link = dir.join(file);
        if fs::symlink_metadata(&link).is_err() {
            symlink(PathBuf::from("..data").join(file), &link).expect("user-visible symlink");
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !files.iter().any(|(f, _)| *f == n) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    // 7. remove the previous generation.
    if let Some(old) = old {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    name
}

fn unique_digits() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos * 1000 + N.fetch_add(1, Ordering::Relaxed) % 1000
}
