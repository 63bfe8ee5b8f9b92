//! `data_dir`: the generation-pinned (`..data`) reader against arbitrary directory layouts.
//!
//! The input is a small program run in a fresh directory `R` each iteration:
//!
//! * byte 0, flags: bit 0 = key configured (`R/vol/tls.key`); bits 1-2 = trust bundle
//!   (0 none, 1 `R/vol/ca.crt`, 2 `R/out/ca.crt`, 3 `R/vol/..gen1/ca.crt`); bit 3 = cert is
//!   `R/vol2/tls.crt` (a second atomic-writer volume) instead of `R/vol/tls.crt`.
//! * then operations, an opcode byte (taken modulo 9) and its argument bytes:
//!   `0 WRITE path content` (content 9 = inline: a length byte, then that many bytes),
//!   `1 MKDIR path`, `2 LINK path target`, `3 FIFO path` (libc::mkfifo), `4 REMOVE path`,
//!   `5 RENAME from to`, `6 SOCKET path` (a bound unix socket), `7 HOOK`,
//!   `8 SWAP generation` (kubelet's commit: `vol/..data_tmp -> ..genN`, renamed onto `vol/..data`).
//!   Operations before the first `HOOK` build the initial layout; each later `HOOK`-separated
//!   chunk runs inside `read_set_observed`'s after-each-read hook, i.e. between two file reads,
//!   the way a rotation races the reader.
//!
//! Paths, contents and symlink targets are indices into the tables below (taken modulo their
//! length). Targets include dangling links, loops, links out of the volume, absolute links,
//! `/dev/null` and targets composed of 1-4 path tokens. Every entry is created strictly inside
//! `R`: a parent that resolves outside `R` makes the operation a no-op, and existing entries are
//! replaced, never written through.
//!
//! Then, on the initial layout: `load::read_set` (with an oracle: what it returns for each file
//! must be exactly what reading the configured path gives, since nothing moves), `load::load_set`
//! (+ `validate` when it loads), and finally `read_set_observed` with the hook chunks (oracle:
//! files of one directory come from one generation, and `..data` still names it on return; when
//! the hook chunks only commit `..data` and remove entries, as kubelet does, the bytes are what
//! that generation's file holds). Every error has a reason, names a configured file (or its
//! directory, for an unsettled `..data`) and is one line of printable text. When every configured
//! path reads directly as a regular file within the cap, `read_set` must succeed. Nothing may
//! panic or block: FIFOs must be refused without waiting for a writer (libFuzzer's -timeout
//! catches a hang).

#![no_main]

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use certgate::labels::Reason;
use certgate::pipeline::load::{self, FileRole, SourcePaths};
use certgate::pipeline::validate::{self, Policy};
use libfuzzer_sys::fuzz_target;

mod common;
use common::scratch_dir;

/// The read cap handed to the loader.
const CAP: u64 = 4096;

/// 2027-01-15T08:00:00Z, inside the seed PKI's validity.
const NOW: i64 = 1_800_000_000;

/// At most this many operations per input.
const MAX_OPS: usize = 96;

/// Entries the program can create, relative to `R` (order matters: fuzz/gen_seeds.sh).
const PATHS: &[&str] = &[
    "vol/tls.crt",
    "vol/tls.key",
    "vol/ca.crt",
    "vol/..data",
    "vol/..gen1",
    "vol/..gen2",
    "vol/..gen1/tls.crt",
    "vol/..gen1/tls.key",
    "vol/..gen1/ca.crt",
    "vol/..gen2/tls.crt",
    "vol/..gen2/tls.key",
    "vol/..gen2/ca.crt",
    "vol/..data_tmp",
    "out",
    "out/ca.crt",
    "out/tls.crt",
    "vol2/tls.crt",
    "vol2/..data",
    "vol2/..gen1",
    "vol2/..gen1/tls.crt",
    "vol/..gen1/sub",
    "vol/..gen1/sub/tls.crt",
    "vol",
    "vol/sub",
];

/// Symlink targets. `abs:` is replaced by `R/`; `composed` reads 1-4 tokens of [`TOKENS`].
const TARGETS: &[&str] = &[
    "..data/tls.crt",
    "..data/tls.key",
    "..data/ca.crt",
    "..gen1",
    "..gen2",
    "..gen3",
    "..data",
    "tls.crt",
    "../out/ca.crt",
    "../out",
    "/nonexistent/certgate-fuzz",
    "/dev/null",
    "abs:out/tls.crt",
    "..data/../..gen2/tls.crt",
    "..data/sub/tls.crt",
    ".",
    "..",
    "..data/..data/tls.crt",
    "sub/tls.crt",
    "..gen1/tls.crt",
    "composed",
    "abs:vol/..gen2",
    "..data/",
    "../vol2/..data/tls.crt",
    "abs:out",
];

/// Tokens of composed targets: no name that exists outside `R`, so even a target that climbs
/// out of `R` names nothing real.
const TOKENS: &[&str] = &[
    "..data", "..gen1", "..gen2", "..gen3", "tls.crt", "tls.key", "ca.crt", "sub", "..", ".",
    "out", "vol", "x", "",
];

/// Generations `SWAP` can commit.
const SWAP_TARGETS: &[&str] = &["..gen1", "..gen2", "..gen3", "/nonexistent/certgate-fuzz"];

const CHAIN: &[u8] = include_bytes!("../seeds/pki/leaf-chain.pem");
const KEY: &[u8] = include_bytes!("../seeds/pki/leaf.key");
const ROOT: &[u8] = include_bytes!("../seeds/pki/root.pem");
const RSA: &[u8] = include_bytes!("../seeds/pki/rsa.pem");
const RSA_KEY: &[u8] = include_bytes!("../seeds/pki/rsa-pkcs1.key");

enum Op {
    Write(usize, Vec<u8>),
    Mkdir(usize),
    Link(usize, String),
    Fifo(usize),
    Remove(usize),
    Rename(usize, usize),
    Socket(usize),
    Swap(usize),
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
    fn index(&mut self, len: usize) -> Option<usize> {
        self.byte().map(|b| b as usize % len)
    }
}

fn content(which: u8, input: &mut Input<'_>) -> Option<Vec<u8>> {
    Some(match which % 12 {
        0 => Vec::new(),
        1 => CHAIN.to_vec(),
        2 => KEY.to_vec(),
        3 => ROOT.to_vec(),
        4 => RSA.to_vec(),
        5 => RSA_KEY.to_vec(),
        6 => b"\n \t\r\n".to_vec(),
        7 => b"not a certificate\n".to_vec(),
        8 => vec![b'A'; 5000],
        9 => {
            let n = input.byte()? as usize;
            let n = n.min(input.0.len());
            let (bytes, rest) = input.0.split_at(n);
            input.0 = rest;
            bytes.to_vec()
        }
        10 => vec![b'A'; CAP as usize],
        _ => vec![b'A'; CAP as usize + 1],
    })
}

fn target(which: usize, root: &Path, input: &mut Input<'_>) -> Option<String> {
    let t = TARGETS[which];
    Some(if let Some(rel) = t.strip_prefix("abs:") {
        root.join(rel).to_string_lossy().into_owned()
    } else if t == "composed" {
        let n = input.byte()? as usize % 4 + 1;
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            parts.push(TOKENS[input.index(TOKENS.len())?]);
        }
        parts.join("/")
    } else {
        t.to_string()
    })
}

/// Flags, then the initial chunk and the hook chunks.
fn parse(data: &[u8], root: &Path) -> (u8, Vec<Vec<Op>>) {
    let mut input = Input(data);
    let flags = input.byte().unwrap_or(0);
    let mut chunks = vec![Vec::new()];
    let mut count = 0;
    while count < MAX_OPS {
        let Some(code) = input.byte() else { break };
        count += 1;
        let op = (|| {
            Some(match code % 9 {
                0 => {
                    let p = input.index(PATHS.len())?;
                    let c = input.byte()?;
                    Op::Write(p, content(c, &mut input)?)
                }
                1 => Op::Mkdir(input.index(PATHS.len())?),
                2 => {
                    let p = input.index(PATHS.len())?;
                    let t = input.index(TARGETS.len())?;
                    Op::Link(p, target(t, root, &mut input)?)
                }
                3 => Op::Fifo(input.index(PATHS.len())?),
                4 => Op::Remove(input.index(PATHS.len())?),
                5 => Op::Rename(input.index(PATHS.len())?, input.index(PATHS.len())?),
                6 => Op::Socket(input.index(PATHS.len())?),
                7 => {
                    chunks.push(Vec::new());
                    return None;
                }
                _ => Op::Swap(input.index(SWAP_TARGETS.len())?),
            })
        })();
        match op {
            Some(op) => chunks.last_mut().expect("a chunk").push(op),
            None if input.0.is_empty() => break,
            None => {}
        }
    }
    (flags, chunks)
}

/// `R/rel`, once every directory above it exists and resolves inside `R`; `None` otherwise.
fn place(root: &Path, root_canon: &Path, rel: &str, create: bool) -> Option<PathBuf> {
    let rel = Path::new(rel);
    let mut cur = root.to_path_buf();
    for comp in rel.parent()?.components() {
        cur.push(comp);
        if fs::symlink_metadata(&cur).is_err() {
            if !create {
                return None;
            }
            fs::create_dir(&cur).ok()?;
        }
        let canon = fs::canonicalize(&cur).ok()?;
        if !canon.starts_with(root_canon) || !canon.is_dir() {
            return None;
        }
    }
    Some(root.join(rel))
}

/// Removes whatever is at `p` (a directory recursively; a symlink itself, never its target).
fn remove_entry(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

fn apply(op: &Op, root: &Path, root_canon: &Path) {
    let at = |i: usize, create: bool| place(root, root_canon, PATHS[i], create);
    match op {
        Op::Write(i, bytes) => {
            if let Some(p) = at(*i, true) {
                remove_entry(&p);
                if let Ok(mut f) = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)
                {
                    let _ = f.write_all(bytes);
                }
            }
        }
        Op::Mkdir(i) => {
            if let Some(p) = at(*i, true) {
                let _ = fs::create_dir(&p);
            }
        }
        Op::Link(i, target) => {
            if let Some(p) = at(*i, true) {
                remove_entry(&p);
                let _ = symlink(target, &p);
            }
        }
        Op::Fifo(i) => {
            if let Some(p) = at(*i, true) {
                remove_entry(&p);
                let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL in path");
                // SAFETY: a valid NUL-terminated path.
                unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
            }
        }
        Op::Remove(i) => {
            if let Some(p) = at(*i, false) {
                remove_entry(&p);
            }
        }
        Op::Rename(from, to) => {
            if let (Some(a), Some(b)) = (at(*from, false), at(*to, true)) {
                let _ = fs::rename(a, b);
            }
        }
        Op::Socket(i) => {
            if let Some(p) = at(*i, true) {
                remove_entry(&p);
                let _ = std::os::unix::net::UnixListener::bind(&p);
            }
        }
        Op::Swap(g) => {
            let (Some(tmp), Some(data)) = (at(12, true), at(3, true)) else {
                return;
            };
            remove_entry(&tmp);
            if symlink(SWAP_TARGETS[*g], &tmp).is_ok() {
                let _ = fs::rename(&tmp, &data);
            }
        }
    }
}

/// What reading the configured path directly gives, refusing anything but a regular file
/// without blocking (the oracle must not hang on a FIFO either).
fn read_direct(p: &Path) -> Option<Vec<u8>> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out).ok()?;
    Some(out)
}

fn parent_dir(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

/// `CERTGATE_FUZZ_DEBUG=1` prints each outcome (for triage: run the binary on one input).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("CERTGATE_FUZZ_DEBUG").is_some())
}

struct Scratch {
    _base: tempfile::TempDir,
    root: PathBuf,
    root_canon: PathBuf,
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let base = scratch_dir("certgate-fuzz-data-dir-");
        let root = base.path().join("r");
        fs::create_dir(&root).expect("root");
        let root_canon = fs::canonicalize(&root).expect("canonical root");
        Scratch {
            _base: base,
            root,
            root_canon,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let (root, root_canon) = (&s.root, &s.root_canon);
    let _ = fs::remove_dir_all(root);
    fs::create_dir(root).expect("fresh root");

    let (flags, chunks) = parse(data, root);
    let paths = SourcePaths {
        cert: root.join(if flags & 8 != 0 {
            "vol2/tls.crt"
        } else {
            "vol/tls.crt"
        }),
        key: (flags & 1 != 0).then(|| root.join("vol/tls.key")),
        trust: match (flags >> 1) & 3 {
            0 => None,
            1 => Some(root.join("vol/ca.crt")),
            2 => Some(root.join("out/ca.crt")),
            _ => Some(root.join("vol/..gen1/ca.crt")),
        },
    };
    let mut chunks = chunks.into_iter();
    for op in chunks.next().unwrap_or_default() {
        apply(&op, root, root_canon);
    }

    // Static layout: what the reader returns is what the configured paths hold, and when every
    // configured path reads directly as a regular file within the cap, the reader succeeds.
    let direct: Vec<Option<Vec<u8>>> = paths.iter().map(|(_, p)| read_direct(p)).collect();
    let all_readable = direct
        .iter()
        .all(|d| d.as_ref().is_some_and(|b| b.len() as u64 <= CAP));
    let first = load::read_set(&paths, CAP);
    if debug() {
        match &first {
            Ok(raw) => raw.files().for_each(|f| eprintln!("read {f:?}")),
            Err(e) => eprintln!("read_set: {e}"),
        }
    }
    match &first {
        Ok(raw) => {
            for (snap, direct) in raw.files().zip(&direct) {
                assert!(
                    direct.as_deref() == Some(snap.bytes()),
                    "{} ({}) read {} bytes through generation {:?}, but the path holds {:?} bytes",
                    snap.path.display(),
                    snap.role,
                    snap.bytes().len(),
                    snap.generation,
                    direct.as_ref().map(Vec::len),
                );
            }
        }
        Err(e) => {
            check_error(e, &paths);
            assert!(
                !all_readable,
                "read_set refused ({e}) a layout whose files all read directly"
            );
        }
    }
    match load::load_set(&paths, CAP) {
        Ok(material) => {
            assert!(
                !material.chain.is_empty(),
                "load_set returned no certificate"
            );
            let verdict = validate::validate(&material, &Policy::default(), NOW);
            if debug() {
                eprintln!(
                    "load_set ok; validation first failure: {:?}",
                    verdict.first_reason()
                );
            }
            std::hint::black_box(verdict.passed());
        }
        Err(e) => check_error(&e, &paths),
    }

    // The same layout changing between reads. When the changes are kubelet's own (commits of
    // `..data` and removals), a generation directory's files never change, so what was read
    // through a generation is still what that generation holds.
    let kubelet_only = chunks
        .as_slice()
        .iter()
        .flatten()
        .all(|op| matches!(op, Op::Swap(_) | Op::Remove(_)));
    let mut hook = |_: FileRole| {
        if let Some(chunk) = chunks.next() {
            for op in chunk {
                apply(&op, root, root_canon);
            }
        }
    };
    let observed = load::read_set_observed(&paths, CAP, &mut hook);
    if debug() {
        match &observed {
            Ok(raw) => raw.files().for_each(|f| eprintln!("observed {f:?}")),
            Err(e) => eprintln!("read_set_observed: {e}"),
        }
    }
    match observed {
        Ok(raw) => {
            let files: Vec<_> = raw.files().collect();
            for (i, a) in files.iter().enumerate() {
                for b in &files[..i] {
                    if let (Some(ga), Some(gb)) = (&a.generation, &b.generation) {
                        assert!(
                            parent_dir(&a.path) != parent_dir(&b.path) || ga == gb,
                            "{} and {} read from two generations: {ga:?} and {gb:?}",
                            a.role,
                            b.role
                        );
                    }
                }
            }
            for snap in &files {
                let Some(generation) = &snap.generation else {
                    continue;
                };
                let dir = parent_dir(&snap.path);
                // The reader re-checked `..data` after the last read (and hook): it still names
                // the generation the files were read through.
                let now = fs::read_link(dir.join(load::DATA_LINK)).ok();
                assert_eq!(
                    now.as_deref(),
                    Some(Path::new(generation)),
                    "{} ({}) was read through {generation:?}, but ..data now names {now:?}",
                    snap.path.display(),
                    snap.role,
                );
                if kubelet_only {
                    if let Some(held) = generation_file(&snap.path, dir, generation) {
                        assert!(
                            held == snap.bytes(),
                            "{} ({}) read {} bytes through {generation:?}, which holds {} bytes",
                            snap.path.display(),
                            snap.role,
                            snap.bytes().len(),
                            held.len(),
                        );
                    }
                }
            }
        }
        Err(e) => check_error(&e, &paths),
    }
});

/// Every load error has a non-empty reason label and names a configured file (or, when `..data`
/// would not settle, the directory of one), and its message is one line of printable text.
fn check_error(e: &load::LoadError, paths: &SourcePaths) {
    let msg = e.to_string();
    assert!(!e.reason().as_str().is_empty(), "empty reason for {msg:?}");
    let named = e.path();
    assert!(
        paths
            .iter()
            .any(|(_, p)| p == named
                || (e.reason() == Reason::GenerationUnstable && parent_dir(p) == named)),
        "error names {}, not a configured file: {msg:?}",
        named.display()
    );
    assert!(
        msg.contains(&named.display().to_string()),
        "message does not name the file: {msg:?}"
    );
    assert!(
        !msg.chars().any(char::is_control),
        "message is not one line of printable text: {msg:?}"
    );
}

/// What `path` (a `..data/<name>` link) names inside `generation` now, when `generation` is a
/// plain directory name (as kubelet's are) that is a real directory; `None` otherwise.
fn generation_file(path: &Path, dir: &Path, generation: &str) -> Option<Vec<u8>> {
    let g = Path::new(generation);
    if g.components().count() != 1
        || !matches!(g.components().next(), Some(std::path::Component::Normal(_)))
    {
        return None;
    }
    let gen_dir = dir.join(g);
    if !fs::symlink_metadata(&gen_dir).ok()?.is_dir() {
        return None;
    }
    let target = fs::read_link(path).ok()?;
    let inside = target.strip_prefix(load::DATA_LINK).ok()?;
    read_direct(&gen_dir.join(inside))
}
