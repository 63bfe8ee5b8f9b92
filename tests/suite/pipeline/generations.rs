//! The `..data` generation-consistent read: a kubelet rotation between or after reads never
//! yields a set mixing two generations.

use certgate::pipeline::load::{self, FileRole, RawSet, SourcePaths, DEFAULT_MAX_FILE_SIZE};
use certgate::pipeline::{self, EvalOptions};

use crate::util::kubelet::atomic_write;
use crate::util::pki::{Alg, Hierarchy, Leaf, LeafSpec};

use super::{assert_passes_with_handshake, block_on, now, policy, sha256_hex, SplitMix, NAME};

const FILES: [(&str, FileRole); 3] = [
    ("tls.crt", FileRole::Cert),
    ("tls.key", FileRole::Key),
    ("ca.crt", FileRole::Trust),
];

/// A kubelet-style volume whose generation `n` holds `gen n <file>` in every file.
struct Volume {
    dir: tempfile::TempDir,
    next: u32,
}

impl Volume {
    fn new() -> Self {
        let mut v = Self {
            dir: tempfile::tempdir().unwrap(),
            next: 0,
        };
        v.rotate();
        v
    }

    fn content(n: u32, file: &str) -> Vec<u8> {
        format!("gen {n} {file}\n").into_bytes()
    }

    /// Commits the next generation, kubelet-style (the previous one is removed).
    fn rotate(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        let files: Vec<(&str, Vec<u8>)> = FILES
            .iter()
            .map(|(f, _)| (*f, Self::content(n, f)))
            .collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(f, b)| (*f, b.as_slice())).collect();
        atomic_write(self.dir.path(), &refs);
        n
    }

    /// Commits the next generation but leaves the previous one on disk (kubelet not done yet).
    fn rotate_keeping_the_old(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        let name = format!("..gen_{n}");
        let gen = self.dir.path().join(&name);
        std::fs::create_dir(&gen).unwrap();
        for (f, _) in FILES {
            std::fs::write(gen.join(f), Self::content(n, f)).unwrap();
        }
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        n
    }

    fn paths(&self) -> SourcePaths {
        let p = |f: &str| self.dir.path().join(f);
        SourcePaths {
            cert: p("tls.crt"),
            key: Some(p("tls.key")),
            trust: Some(p("ca.crt")),
        }
    }

    fn data(&self) -> String {
        std::fs::read_link(self.dir.path().join("..data"))
            .unwrap()
            .display()
            .to_string()
    }
}

/// Every file of `set` comes from one generation, the one recorded on each snapshot, which
/// `..data` names now; returns that generation's number.
fn assert_one_generation(set: &RawSet, vol: &Volume) -> u32 {
    let gens: Vec<u32> = set
        .files()
        .map(|s| {
            let text = String::from_utf8(s.bytes().to_vec()).unwrap();
            let mut words = text.split_whitespace();
            assert_eq!(words.next(), Some("gen"));
            let n: u32 = words.next().unwrap().parse().unwrap();
            let file = FILES.iter().find(|(_, r)| *r == s.role).unwrap().0;
            assert_eq!(
                words.next(),
                Some(file),
                "{:?} holds the {file} content",
                s.role
            );
            assert_eq!(s.sha256, sha256_hex(s.bytes()));
            n
        })
        .collect();
    assert_eq!(gens.len(), 3);
    assert!(
        gens.iter().all(|g| *g == gens[0]),
        "mixed generations: {gens:?}"
    );
    let recorded: Vec<_> = set.files().map(|s| s.generation.clone()).collect();
    assert!(
        recorded.iter().all(|g| *g == Some(vol.data())),
        "{recorded:?} vs {}",
        vol.data()
    );
    gens[0]
}

#[test]
fn data_swap_between_reads_rereads_the_new_generation_whole() {
    for after in [FileRole::Cert, FileRole::Key] {
        let mut vol = Volume::new();
        let mut swaps = Vec::new();
        let mut reads = 0;
        let set = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |role| {
            reads += 1;
            if role == after && swaps.is_empty() {
                swaps.push(vol.rotate());
            }
        })
        .expect("consistent after a retry");
        assert_eq!(assert_one_generation(&set, &vol), swaps[0], "after {after}");
        assert!(
            reads > 3,
            "the set was read again after the swap ({reads} reads)"
        );
    }
}

#[test]
fn data_swap_after_the_last_read_is_caught() {
    let mut vol = Volume::new();
    let mut swapped = None;
    let set = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Trust && swapped.is_none() {
            swapped = Some(vol.rotate());
        }
    })
    .expect("consistent after a retry");
    // Every file had been read from generation 0 when it moved; the result is generation 1.
    assert_eq!(assert_one_generation(&set, &vol), swapped.unwrap());
}

#[test]
fn data_swap_that_keeps_the_old_generation_is_caught() {
    let mut vol = Volume::new();
    let mut swapped = None;
    let set = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Cert && swapped.is_none() {
            swapped = Some(vol.rotate_keeping_the_old());
        }
    })
    .expect("consistent after a retry");
    assert_eq!(assert_one_generation(&set, &vol), swapped.unwrap());
}

#[test]
fn paths_through_data_itself_are_pinned_too() {
    // `--cert /vol/..data/tls.crt` goes through the symlink kubelet swaps: each open could land
    // in a different generation unless the read is pinned like the user-visible paths.
    let mut vol = Volume::new();
    let through = |f: &str| vol.dir.path().join("..data").join(f);
    let paths = SourcePaths {
        cert: through("tls.crt"),
        key: Some(through("tls.key")),
        trust: Some(through("ca.crt")),
    };
    let mut swapped = None;
    let set = load::read_set_observed(&paths, DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Cert && swapped.is_none() {
            swapped = Some(vol.rotate());
        }
    })
    .expect("consistent after a retry");
    assert_eq!(assert_one_generation(&set, &vol), swapped.unwrap());
}

#[test]
fn data_that_never_settles_is_an_error_not_a_mix() {
    let mut vol = Volume::new();
    let dir = vol.dir.path().to_path_buf();
    let err = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |_| {
        vol.rotate();
    })
    .expect_err("never consistent");
    assert_eq!(err.reason().as_str(), "generation_unstable");
    assert_eq!(err.path(), dir.as_path());
    assert!(
        err.to_string().contains("rotation still in progress"),
        "{err}"
    );
}

#[test]
fn data_swaps_at_random_points_never_yield_a_mixed_set() {
    let mut rng = SplitMix(0x5eed);
    let (mut consistent, mut unstable, mut total_swaps) = (0, 0, 0);
    for round in 0..60 {
        let mut vol = Volume::new();
        let keep_old = round % 3 == 0;
        let mut swaps_left = rng.below(6);
        let p = rng.below(100);
        let result = load::read_set_observed(&vol.paths(), DEFAULT_MAX_FILE_SIZE, &mut |_| {
            if swaps_left > 0 && rng.below(100) < p {
                swaps_left -= 1;
                total_swaps += 1;
                if keep_old {
                    vol.rotate_keeping_the_old();
                } else {
                    vol.rotate();
                }
            }
        });
        match result {
            Ok(set) => {
                let n = assert_one_generation(&set, &vol);
                assert_eq!(n, vol.next - 1, "round {round}: the newest generation");
                consistent += 1;
            }
            Err(e) => {
                assert_eq!(
                    e.reason().as_str(),
                    "generation_unstable",
                    "round {round}: {e}"
                );
                unstable += 1;
            }
        }
    }
    assert!(total_swaps > 30, "the rounds did swap ({total_swaps})");
    assert!(
        consistent > 0,
        "{consistent} consistent, {unstable} unstable"
    );
}

#[test]
fn data_swap_mid_read_still_validates_the_new_pair() {
    // Real material: without pinning, cert A with key B would be a key mismatch.
    let h = Hierarchy::shared(Alg::P256);
    let (a, b) = (&h.leaf, h.intermediate.leaf(&LeafSpec::new(NAME)));
    let dir = tempfile::tempdir().unwrap();
    let write = |leaf: &Leaf| {
        let chain = h.chain_pem_of(leaf);
        let key = leaf.key.pkcs8_pem();
        atomic_write(
            dir.path(),
            &[
                ("tls.crt", chain.as_bytes()),
                ("tls.key", key.as_bytes()),
                ("ca.crt", h.root.cert_pem.as_bytes()),
            ],
        );
    };
    write(a);
    let paths = SourcePaths {
        cert: dir.path().join("tls.crt"),
        key: Some(dir.path().join("tls.key")),
        trust: Some(dir.path().join("ca.crt")),
    };
    let mut swapped = false;
    let raw = load::read_set_observed(&paths, DEFAULT_MAX_FILE_SIZE, &mut |role| {
        if role == FileRole::Cert && !swapped {
            swapped = true;
            write(&b);
        }
    })
    .expect("consistent");
    let eval = block_on(pipeline::evaluate_raw(
        raw,
        0.0,
        &policy(&[NAME]),
        &EvalOptions::default(),
        now(),
    ));
    assert_passes_with_handshake(&eval);
    let leaf = eval.verdict().unwrap().leaf().unwrap();
    assert_eq!(leaf.fingerprint_sha256, sha256_hex(&b.cert_der));
    assert!(eval.files().iter().all(|f| f.generation.is_some()));
}
