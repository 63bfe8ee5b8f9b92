//! Bounded reads of files that come from outside: a regular file only (opened non-blocking, so
//! a FIFO can never hang the caller; a device or directory is refused), and at most `cap + 1`
//! bytes read (a link to `/dev/zero` or a huge file cannot grow memory). Used for the set's
//! files, the config, the state file and reload pid files.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing at the path.
    #[error("file not found")]
    NotFound,
    /// A directory, FIFO, socket or device.
    #[error("not a regular file ({0})")]
    NotRegularFile(&'static str),
    /// More than `cap` bytes.
    #[error("larger than the {0}-byte limit")]
    TooLarge(u64),
    /// Opening or reading failed.
    #[error("cannot read: {0}")]
    Io(#[source] io::Error),
}

/// Reads `path` (following links) if it is a regular file of at most `cap` bytes.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Io(e),
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotRegularFile(if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        }));
    }
    let expected = usize::try_from(meta.len().min(cap)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(expected.saturating_add(1));
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A FIFO with no writer would block a plain open forever.
        assert!(matches!(
            read_regular(&fifo, 64),
            Err(ReadError::NotRegularFile("a FIFO"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 64),
            Err(ReadError::NotRegularFile("a device"))
        ));
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_regular(&zero, 64),
            Err(ReadError::NotRegularFile("a device"))
        ));
        assert!(matches!(
            read_regular(dir.path(), 64),
            Err(ReadError::NotRegularFile("a directory"))
        ));
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; 65]).unwrap();
        assert!(matches!(
            read_regular(&big, 64),
            Err(ReadError::TooLarge(64))
        ));
        fs::write(&big, vec![b'x'; 64]).unwrap();
        assert_eq!(read_regular(&big, 64).unwrap().len(), 64);
        assert!(matches!(
            read_regular(&dir.path().join("none"), 64),
            Err(ReadError::NotFound)
        ));
    }
}
