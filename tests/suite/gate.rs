//! The fleet gate against the real world: `certgate run` processes as the pods of a server and
//! its clients, scraped by a real Prometheus (Debian's) through `file_sd_configs`; the server's
//! workload is a TLS server reading its publish directory; each client runs a TLS client loop
//! against it with the roots from the client's *published* bundle.
//!
//! The outage certgate was built for: the server's source gets a leaf from a new root R2 (and
//! a bundle [R1, R2]) while most clients still trust only R1. With the gate the bundle goes out
//! at once, the leaf waits until every client trusts R2, and no handshake fails; without it
//! (the negative control) the lagging clients fail with `UnknownIssuer`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::util::daemon::Running;
use crate::util::fleet::{prometheus_available, wait_for, FleetPrometheus, SdTarget};
use crate::util::pki::{Alg, Ca, Leaf, LeafSpec};
use crate::util::workload::{Behaviour, Workload};

const BOUND: Duration = Duration::from_secs(45);
const SCRAPE: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(500);
const STABLE_FOR: Duration = Duration::from_secs(2);

/// One pod: its source and publish directories, and its certgate.
struct Pod {
    name: &'static str,
    workload: &'static str,
    src: PathBuf,
    out: PathBuf,
    config: PathBuf,
    d: Option<Running>,
}

fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

impl Pod {
    /// A pod whose certgate runs `gate` (a `[set.gate]` table, or nothing) against `prom`.
    fn new(
        dir: &Path,
        workload: &'static str,
        name: &'static str,
        leaf: &Leaf,
        ca: &str,
        prom: &str,
        gate: &str,
    ) -> Self {
        let src = dir.join(name).join("src");
        let out = dir.join(name).join("out");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("tls.key"), leaf.key.pkcs8_pem()).unwrap();
        fs::write(src.join("tls.crt"), &leaf.cert_pem).unwrap();
        fs::write(src.join("ca.crt"), ca).unwrap();
        let config = dir.join(name).join("certgate.toml");
        let p = |f: &str| src.join(f).display().to_string();
        fs::write(
            &config,
            format!(
                "[daemon]\nsettle = \"100ms\"\n\
                 [fleet]\nprometheus_url = \"{prom}\"\npoll_interval = \"{}ms\"\n\
                 query_timeout = \"5s\"\n\
                 [[set]]\nname = \"web\"\ncert = {:?}\nkey = {:?}\ntrust = {:?}\n\
                 names = [\"localhost\"]\npublish_dir = {:?}\n{gate}",
                POLL.as_millis(),
                p("tls.crt"),
                p("tls.key"),
                p("ca.crt"),
                out.display().to_string(),
            ),
        )
        .unwrap();
        let mut pod = Self {
            name,
            workload,
            src,
            out,
            config,
            d: None,
        };
        pod.start();
        pod
    }

    fn start(&mut self) {
        let d = Running::start(&self.config);
        wait_for(BOUND, "pod live", || d.live_fingerprint(0).is_some());
        self.d = Some(d);
    }

    fn d(&self) -> &Running {
        self.d.as_ref().expect("running")
    }

    /// A rotation of the source: key and cert (when given), then the bundle.
    fn rotate(&self, leaf: Option<&Leaf>, ca: &str) {
        if let Some(leaf) = leaf {
            replace(&self.src.join("tls.key"), &leaf.key.pkcs8_pem());
            replace(&self.src.join("tls.crt"), &leaf.cert_pem);
        }
        replace(&self.src.join("ca.crt"), ca);
    }

    fn gate(&self) -> serde_json::Value {
        self.d().status()["sets"][0]["gate"].clone()
    }

    fn blocking(&self) -> Vec<String> {
        let mut b: Vec<String> = self.gate()["blocking"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        b.sort();
        b
    }

    fn published_bundle(&self) -> String {
        fs::read_to_string(self.out.join("ca.crt")).unwrap_or_default()
    }

    fn target(&self) -> SdTarget {
        SdTarget::pod(self.d().addr, "shop", self.workload, self.name)
    }
}

/// What one client's loop saw.
#[derive(Debug, Default)]
struct Seen {
    ok: u32,
    /// Handshakes that saw each leaf (by the first bytes of its DER's hash).
    leaves: BTreeMap<String, u32>,
    failures: Vec<String>,
}

/// A TLS client loop: every 50 ms, a handshake with `server` trusting the roots published in
/// `bundle` (read again each time, as a reloading client does).
fn client_loop(server: SocketAddr, bundle: PathBuf, stop: Arc<AtomicBool>) -> JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            match handshake(server, &bundle) {
                Ok(leaf) => {
                    seen.ok += 1;
                    *seen.leaves.entry(leaf).or_default() += 1;
                }
                Err(e) => seen.failures.push(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    })
}

fn handshake(server: SocketAddr, bundle: &Path) -> Result<String, String> {
    let pem = fs::read(bundle).map_err(|e| format!("bundle: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(c.map_err(|e| format!("bundle: {e:?}"))?)
            .map_err(|e| format!("bundle: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect_timeout(&server, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let mut buf = [0u8; 6];
    // The workload greets once the handshake is done.
    tls.flush().map_err(|e| e.to_string())?;
    tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| {
            let d = ring::digest::digest(&ring::digest::SHA256, c.as_ref());
            d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
        })
        .unwrap_or_default();
    Ok(leaf)
}

/// What a run of the outage scenario produced.
struct Outage {
    clients: BTreeMap<&'static str, Seen>,
    /// Last client's new bundle published → the server's new leaf published.
    release_after: Option<Duration>,
}

/// The outage script with the server's gate in `mode`.
fn outage(mode: &str) -> Option<Outage> {
    if !prometheus_available() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r1 = Ca::root("gate root 1", Alg::P256);
    let r2 = Ca::root("gate root 2", Alg::P256);
    let spec = LeafSpec::new("localhost");
    let (old_leaf, new_leaf) = (r1.leaf(&spec), r2.leaf(&spec));
    let both = format!("{}{}", r1.cert_pem, r2.cert_pem);
    let prom = FleetPrometheus::start(&[], SCRAPE, false);
    let gate = format!(
        "[set.gate]\nmode = \"{mode}\"\nverifiers = ['{{namespace=\"shop\", workload=\"client\"}}']\n\
         stable_for = \"{}ms\"\n",
        STABLE_FOR.as_millis()
    );
    let server = Pod::new(
        tmp.path(),
        "server",
        "s",
        &old_leaf,
        &r1.cert_pem,
        &prom.url(),
        &gate,
    );
    let clients: Vec<Pod> = ["c1", "c2", "c3"]
        .into_iter()
        .map(|n| {
            let leaf = r1.leaf(&spec);
            Pod::new(
                tmp.path(),
                "client",
                n,
                &leaf,
                &r1.cert_pem,
                &prom.url(),
                "",
            )
        })
        .collect();
    let mut targets = vec![server.target()];
    targets.extend(clients.iter().map(Pod::target));
    prom.set_targets(&targets);
    wait_for(BOUND, "every pod scraped", || {
        prom.query("certgate_trust_anchor_info").len() == 4
    });
    let workload = Workload::start(server.out.clone(), Behaviour::Reloading);
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<(&'static str, JoinHandle<Seen>)> = clients
        .iter()
        .map(|c| {
            (
                c.name,
                client_loop(workload.addr, c.out.join("ca.crt"), stop.clone()),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // The CA rotates: the server's source gets a leaf from R2 and the bundle [R1, R2]; C1 gets
    // the new bundle at the same time, C2 and C3 later.
    let new_fp = new_leaf.fingerprint_sha256();
    server.rotate(Some(&new_leaf), &both);
    clients[0].rotate(None, &both);
    let r2_line = r2.cert_pem.lines().nth(1).unwrap_or_default().to_string();
    let mut release_after = None;
    if mode == "hold" {
        // Trust before leaf: the bundle is published at once, the leaf is held.
        wait_for(BOUND, "the server's new bundle published", || {
            server.published_bundle().contains(&r2_line)
        });
        wait_for(BOUND, "the hold naming c2 and c3", || {
            server.blocking() == ["shop/c2", "shop/c3"]
        });
        let g = server.gate();
        assert_eq!(g["state"], "holding", "{g}");
        assert_eq!(g["kind"], "leaf", "{g}");
        assert_eq!(g["candidate_fingerprint_sha256"], new_fp.as_str(), "{g}");
        assert_ne!(
            server.d().live_fingerprint(0).as_deref(),
            Some(new_fp.as_str())
        );
        // /readyz is untouched by a hold: the live material is valid.
        assert_eq!(server.d().get("/readyz").0, 200);
        assert_eq!(
            server
                .d()
                .metric("certgate_gate_holding{kind=\"leaf\",set=\"web\"}"),
            Some(1.0)
        );
        clients[1].rotate(None, &both);
        wait_for(BOUND, "the hold naming only c3", || {
            server.blocking() == ["shop/c3"]
        });
        assert_ne!(
            server.d().live_fingerprint(0).as_deref(),
            Some(new_fp.as_str())
        );
        clients[2].rotate(None, &both);
        wait_for(BOUND, "c3's new bundle published", || {
            clients[2].published_bundle().contains(&r2_line)
        });
        let moved = Instant::now();
        wait_for(BOUND, "the new leaf published", || {
            server.d().live_fingerprint(0).as_deref() == Some(new_fp.as_str())
        });
        release_after = Some(moved.elapsed());
        let g = server.gate();
        assert_eq!(g["state"], "idle", "{g}");
        assert_eq!(g["last_release"], "clear", "{g}");
        assert_eq!(
            server
                .d()
                .metric("certgate_gate_releases_total{kind=\"leaf\",reason=\"clear\",set=\"web\"}"),
            Some(1.0)
        );
    } else {
        wait_for(BOUND, "the new leaf published", || {
            server.d().live_fingerprint(0).as_deref() == Some(new_fp.as_str())
        });
        std::thread::sleep(Duration::from_secs(2));
        clients[1].rotate(None, &both);
        clients[2].rotate(None, &both);
        wait_for(BOUND, "every client's new bundle published", || {
            clients
                .iter()
                .all(|c| c.published_bundle().contains(&r2_line))
        });
    }
    // The clients keep going a while on the new leaf.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let clients = loops
        .into_iter()
        .map(|(name, h)| (name, h.join().expect("client loop")))
        .collect();
    Some(Outage {
        clients,
        release_after,
    })
}

#[test]
fn the_outage_is_prevented_by_holding_the_leaf_until_the_clients_trust_its_root() {
    let Some(run) = outage("hold") else {
        return;
    };
    for (name, seen) in &run.clients {
        assert!(seen.failures.is_empty(), "{name}: {:?}", seen.failures);
        assert_eq!(
            seen.leaves.len(),
            2,
            "{name} saw the old and the new leaf: {seen:?}"
        );
        assert!(seen.ok > 20, "{name}: {seen:?}");
    }
    // Release latency: the last client's bundle published → the leaf published, within
    // stable_for, two scrapes, a poll and a query (plus slack for a loaded machine).
    let took = run.release_after.expect("measured");
    let bound = STABLE_FOR + 2 * SCRAPE + POLL + Duration::from_millis(1500);
    assert!(took <= bound, "released after {took:?}, bound {bound:?}");
    eprintln!("gate: released {took:?} after the last client moved");
}

#[test]
fn without_the_gate_the_lagging_clients_fail_with_unknown_issuer() {
    let Some(run) = outage("off") else {
        return;
    };
    let c = &run.clients;
    assert!(
        c["c1"].failures.is_empty(),
        "c1 trusted both: {:?}",
        c["c1"].failures
    );
    for lagging in ["c2", "c3"] {
        let f = &c[lagging].failures;
        assert!(
            !f.is_empty(),
            "{lagging} should have failed: {:?}",
            c[lagging]
        );
        assert!(
            f.iter().all(|e| e.contains("UnknownIssuer")),
            "{lagging}: {f:?}"
        );
    }
}
