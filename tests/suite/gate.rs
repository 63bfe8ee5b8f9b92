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
        // Each gated pod's release listener on a port of its own (tests run in parallel).
        let admin = format!("admin_listen = \"{}\"", crate::util::fleet::free_port());
        Self::with(
            dir,
            workload,
            name,
            &leaf.cert_pem,
            leaf,
            ca,
            prom,
            &admin,
            gate,
        )
    }

    /// [`Pod::new`] with the chain given (leaf first), `extra` lines in `[daemon]` and `set`
    /// keys before the gate table.
    #[allow(clippy::too_many_arguments)]
    fn with(
        dir: &Path,
        workload: &'static str,
        name: &'static str,
        chain: &str,
        leaf: &Leaf,
        ca: &str,
        prom: &str,
        daemon: &str,
        gate: &str,
    ) -> Self {
        let src = dir.join(name).join("src");
        let out = dir.join(name).join("out");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("tls.key"), leaf.key.pkcs8_pem()).unwrap();
        fs::write(src.join("tls.crt"), chain).unwrap();
        fs::write(src.join("ca.crt"), ca).unwrap();
        let config = dir.join(name).join("certgate.toml");
        let p = |f: &str| src.join(f).display().to_string();
        fs::write(
            &config,
            format!(
                "[daemon]\nsettle = \"100ms\"\n{daemon}\n\
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

    /// A rotation of the source to `chain` (leaf first) with `leaf`'s key, then the bundle.
    fn rotate_chain(&self, chain: &str, leaf: &Leaf, ca: &str) {
        replace(&self.src.join("tls.key"), &leaf.key.pkcs8_pem());
        replace(&self.src.join("tls.crt"), chain);
        replace(&self.src.join("ca.crt"), ca);
    }

    fn live(&self) -> Option<String> {
        self.d().live_fingerprint(0)
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

/// Client pods (workload `client`), each on a leaf of its own from `ca`, trusting [`ca`].
fn clients(dir: &Path, names: &[&'static str], ca: &Ca, prom: &str) -> Vec<Pod> {
    let spec = LeafSpec::new("localhost");
    names
        .iter()
        .map(|n| Pod::new(dir, "client", n, &ca.leaf(&spec), &ca.cert_pem, prom, ""))
        .collect()
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
    let clients = clients(tmp.path(), &["c1", "c2", "c3"], &r1, &prom.url());
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
        // `certgate fleet` reads the same [fleet] table from the sidecar's config.
        let r2_id = certgate::pipeline::inspect::anchor_id_of(&r2.cert_der)
            .unwrap()
            .to_string();
        let o = crate::util::command()
            .args(["fleet", "stale", "--anchor", &r2_id, "--selector"])
            .arg("{workload=\"client\"}")
            .arg("--config")
            .arg(&server.config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(
            text.contains("shop/c2") && text.contains("shop/c3") && !text.contains("shop/c1"),
            "{text}"
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

/// `certgate gate release` against `admin`.
fn release(admin: SocketAddr, args: &[&str]) -> std::process::Output {
    crate::util::command()
        .args([
            "gate",
            "release",
            "--set",
            "web",
            "--admin",
            &admin.to_string(),
        ])
        .args(args)
        .output()
        .expect("run certgate gate release")
}

#[test]
fn a_hold_survives_restarts_and_api_outages_and_only_the_named_candidate_is_released() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (r1, r2, r3) = (
        Ca::root("hold root 1", Alg::P256),
        Ca::root("hold root 2", Alg::P256),
        Ca::root("hold root 3", Alg::P256),
    );
    let spec = LeafSpec::new("localhost");
    let (l0, l2, l3, l4) = (
        r1.leaf(&spec),
        r2.leaf(&spec),
        r3.leaf(&spec),
        r2.leaf(&spec),
    );
    let mut prom = FleetPrometheus::start(&[], SCRAPE, false);
    let admin = crate::util::fleet::free_port();
    let gate = "[set.gate]\nverifiers = ['{namespace=\"shop\", workload=\"client\"}']\n\
                stable_for = \"1s\"\n";
    let mut server = Pod::with(
        tmp.path(),
        "server",
        "s",
        &l0.cert_pem,
        &l0,
        &r1.cert_pem,
        &prom.url(),
        &format!("admin_listen = \"{admin}\""),
        gate,
    );
    let mut clients = clients(tmp.path(), &["c1", "c2"], &r1, &prom.url());
    let mut targets = vec![server.target()];
    targets.extend(clients.iter().map(Pod::target));
    prom.set_targets(&targets);
    wait_for(BOUND, "every pod scraped", || {
        prom.query("certgate_trust_anchor_info").len() == 3
    });
    let r12 = format!("{}{}", r1.cert_pem, r2.cert_pem);
    server.rotate(Some(&l2), &r12);
    wait_for(BOUND, "the hold naming c1 and c2", || {
        server.blocking() == ["shop/c1", "shop/c2"]
    });

    // A restart rebuilds the hold from the source and the publish directory: never published.
    drop(server.d.take());
    server.start();
    assert_eq!(server.live(), Some(l0.fingerprint_sha256()));
    wait_for(BOUND, "the hold rebuilt after the restart", || {
        server.gate()["state"] == "holding" && server.blocking() == ["shop/c1", "shop/c2"]
    });
    assert_eq!(server.live(), Some(l0.fingerprint_sha256()));

    // The query API goes away: the hold stays, with the error in /status; back, it recovers.
    prom.stop();
    wait_for(BOUND, "the query error in /status", || {
        server.gate()["last_error"].is_string()
    });
    assert_eq!(server.gate()["state"], "holding");
    assert!(
        server
            .d()
            .metric("certgate_gate_evaluations_total{result=\"error\",set=\"web\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    prom.restart();
    wait_for(BOUND, "answers again", || {
        server.gate()["last_error"].is_null() && server.blocking() == ["shop/c1", "shop/c2"]
    });

    // c2's certgate dies before it moves; c1 moves. c2 is unknown, and unknown holds.
    drop(clients[1].d.take());
    clients[0].rotate(None, &r12);
    wait_for(BOUND, "c2 unknown, c1 no longer blocking", || {
        let g = server.gate();
        server.blocking() == ["shop/c2"] && g["verifiers"]["unknown"] == 1
    });
    assert_eq!(server.live(), Some(l0.fingerprint_sha256()));

    // An override names the candidate: another fingerprint releases nothing.
    let o = release(admin, &["--fingerprint", "0123456789abcdef"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&l2.fingerprint_sha256()),
        "{o:?}"
    );
    assert_eq!(server.gate()["state"], "holding");
    let o = release(admin, &["--fingerprint", &l2.fingerprint_sha256()[..16]]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    wait_for(BOUND, "the released leaf published", || {
        server.live() == Some(l2.fingerprint_sha256())
    });
    assert_eq!(server.gate()["last_release"], "override");
    assert_eq!(
        server
            .d()
            .metric("certgate_gate_releases_total{kind=\"leaf\",reason=\"override\",set=\"web\"}"),
        Some(1.0)
    );

    // The override was for that candidate only: the next one from a new CA is held again.
    let r123 = format!("{r12}{}", r3.cert_pem);
    server.rotate(Some(&l3), &r123);
    wait_for(BOUND, "the next candidate held", || {
        server.gate()["state"] == "holding"
            && server.gate()["candidate_fingerprint_sha256"] == l3.fingerprint_sha256().as_str()
    });
    // Superseded while held: a newer candidate (from the live CA) replaces it; the held one is
    // never published.
    server.rotate(Some(&l4), &r12);
    wait_for(BOUND, "the newer candidate published", || {
        server.live() == Some(l4.fingerprint_sha256())
    });
    let events = server.d().status()["sets"][0]["events"].clone();
    let events = events.as_array().cloned().unwrap_or_default();
    let l3_short = &l3.fingerprint_sha256()[..16];
    assert!(
        events.iter().any(|e| e["kind"] == "gate_superseded"
            && e["message"].as_str().is_some_and(|m| m.contains(l3_short))),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e["kind"] == "published"
            && e["message"].as_str().is_some_and(|m| m.contains(l3_short))),
        "the superseded leaf was never published: {events:?}"
    );
    assert_ne!(server.live(), Some(l3.fingerprint_sha256()));
    // Nothing left to release.
    let o = release(admin, &[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

#[test]
fn a_bundle_dropping_a_root_is_held_until_the_presenters_moved_or_released() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (r1, r2) = (
        Ca::root("removal root 1", Alg::P256),
        Ca::root("removal root 2", Alg::P256),
    );
    let spec = LeafSpec::new("localhost");
    let r12 = format!("{}{}", r1.cert_pem, r2.cert_pem);
    let prom = FleetPrometheus::start(&[], SCRAPE, false);
    let admin = crate::util::fleet::free_port();
    // The server verifies the clients' leaves: they are its presenters.
    let gate = "[set.gate]\nverifiers = ['{namespace=\"shop\", workload=\"server\"}']\n\
                presenters = ['{namespace=\"shop\", workload=\"client\"}']\n\
                stable_for = \"1s\"\n";
    let server_leaf = r2.leaf(&spec);
    let server = Pod::with(
        tmp.path(),
        "server",
        "s",
        &server_leaf.cert_pem,
        &server_leaf,
        &r12,
        &prom.url(),
        &format!("admin_listen = \"{admin}\""),
        gate,
    );
    // c1's live leaf chains to R1; c2's to R2.
    let clients = [("c1", &r1), ("c2", &r2)].map(|(n, ca)| {
        Pod::new(
            tmp.path(),
            "client",
            n,
            &ca.leaf(&spec),
            &r12,
            &prom.url(),
            "",
        )
    });
    let mut targets = vec![server.target()];
    targets.extend(clients.iter().map(Pod::target));
    prom.set_targets(&targets);
    wait_for(BOUND, "every pod's chain anchors scraped", || {
        prom.query("certgate_chain_anchor_info").len() == 3
    });
    let r1_line = r1.cert_pem.lines().nth(1).unwrap_or_default().to_string();

    // The bundle drops R1 while c1 still serves a leaf from it: the removal is held and R1
    // stays published.
    server.rotate(None, &r2.cert_pem);
    wait_for(BOUND, "the removal held, naming c1", || {
        let g = server.gate();
        g["state"] == "holding" && g["kind"] == "removal" && server.blocking() == ["shop/c1"]
    });
    let kept = server.gate()["kept_anchors"].clone();
    assert_eq!(kept.as_array().map(Vec::len), Some(1), "{kept}");
    assert!(server.published_bundle().contains(&r1_line), "R1 kept");
    // c1 moves to a leaf from R2: nothing needs R1 any more, the removal goes out.
    let moved = r2.leaf(&spec);
    clients[0].rotate(Some(&moved), &r12);
    wait_for(BOUND, "R1 dropped", || {
        !server.published_bundle().contains(&r1_line) && server.gate()["state"] == "idle"
    });
    assert_eq!(server.gate()["last_release"], "clear");

    // Again, and this time released by hand: --removal drops it at once.
    server.rotate(None, &r12);
    wait_for(BOUND, "R1 back", || {
        server.published_bundle().contains(&r1_line)
    });
    let back = r1.leaf(&spec);
    clients[0].rotate(Some(&back), &r12);
    wait_for(BOUND, "c1 chains to R1 again", || {
        prom.query(&format!(
            "certgate_chain_anchor_info{{pod=\"c1\",anchor_id=\"{}\"}}",
            certgate::pipeline::inspect::anchor_id_of(&r1.cert_der).unwrap()
        ))
        .len()
            == 1
    });
    server.rotate(None, &r2.cert_pem);
    wait_for(BOUND, "the removal held again", || {
        server.blocking() == ["shop/c1"]
    });
    let o = release(admin, &[]);
    assert_eq!(o.status.code(), Some(1), "no leaf is held: {o:?}");
    let o = release(admin, &["--removal"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    wait_for(BOUND, "R1 dropped by the override", || {
        !server.published_bundle().contains(&r1_line)
    });
    assert_eq!(server.gate()["last_release"], "override");
}

#[test]
fn cross_signed_chains_go_at_once_and_a_selector_matching_nothing_holds() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (r1, r2) = (
        Ca::root("cross root 1", Alg::P256),
        Ca::root("cross root 2", Alg::P256),
    );
    let i2 = r2.intermediate("cross issuer 2", Alg::P256);
    let spec = LeafSpec::new("localhost");
    let (l0, l2) = (r1.leaf(&spec), i2.leaf(&spec));
    let cross = format!("{}{}{}", l2.cert_pem, i2.cert_pem, i2.cross_signed_by(&r1));
    let r12 = format!("{}{}", r1.cert_pem, r2.cert_pem);
    let prom = FleetPrometheus::start(&[], SCRAPE, false);
    let gate = |sel: &str| format!("[set.gate]\nverifiers = ['{sel}']\nstable_for = \"1s\"\n");
    let server = Pod::new(
        tmp.path(),
        "server",
        "s",
        &l0,
        &r1.cert_pem,
        &prom.url(),
        &gate("{namespace=\"shop\", workload=\"client\"}"),
    );
    let typo = Pod::new(
        tmp.path(),
        "server",
        "t",
        &l0,
        &r1.cert_pem,
        &prom.url(),
        &gate("{namespace=\"shop\", workload=\"clinet\"}"),
    );
    let clients = clients(tmp.path(), &["c1", "c2"], &r1, &prom.url());
    let mut targets = vec![server.target(), typo.target()];
    targets.extend(clients.iter().map(Pod::target));
    prom.set_targets(&targets);
    wait_for(BOUND, "every pod scraped", || {
        prom.query("certgate_trust_anchor_info").len() == 4
    });
    let workload = Workload::start(server.out.clone(), Behaviour::Reloading);
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<JoinHandle<Seen>> = clients
        .iter()
        .map(|c| client_loop(workload.addr, c.out.join("ca.crt"), stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // A chain cross-signed by the old root reaches every client: published at once, no query.
    server.rotate_chain(&cross, &l2, &r12);
    wait_for(BOUND, "the cross-signed leaf published", || {
        server.live() == Some(l2.fingerprint_sha256())
    });
    assert_eq!(server.gate()["state"], "idle", "{}", server.gate());
    assert_eq!(
        server
            .d()
            .metric("certgate_gate_evaluations_total{result=\"hold\",set=\"web\"}"),
        Some(0.0)
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for (i, h) in loops.into_iter().enumerate() {
        let seen = h.join().unwrap();
        assert!(seen.failures.is_empty(), "c{}: {:?}", i + 1, seen.failures);
        assert_eq!(seen.leaves.len(), 2, "c{} saw both leaves: {seen:?}", i + 1);
    }

    // A selector that matches nothing is a typo, not consensus: it holds.
    typo.rotate(Some(&r2.leaf(&spec)), &r12);
    wait_for(BOUND, "the typo's hold explained", || {
        let g = typo.gate();
        g["state"] == "holding"
            && g["why"]
                .as_str()
                .is_some_and(|w| w.contains("min_verifiers"))
    });
    assert_eq!(typo.gate()["verifiers"]["seen"], 0);
    assert_eq!(typo.live(), Some(l0.fingerprint_sha256()));
}

#[test]
fn a_hold_ends_at_the_deadline_and_observe_mode_only_reports() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (r1, r2) = (
        Ca::root("deadline root 1", Alg::P256),
        Ca::root("deadline root 2", Alg::P256),
    );
    let now = time::OffsetDateTime::now_utc();
    // The live leaf expires in 80 s; with release_before_expiry = 1m the deadline is 20 s away.
    let short = r1.leaf(&LeafSpec::new("localhost").valid(
        now - time::Duration::hours(1),
        now + time::Duration::seconds(80),
    ));
    let spec = LeafSpec::new("localhost");
    let (new_leaf, observed_leaf) = (r2.leaf(&spec), r2.leaf(&spec));
    let r12 = format!("{}{}", r1.cert_pem, r2.cert_pem);
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/certgate/files/certgate-alerts.yaml");
    let prom = FleetPrometheus::start_with_rules(&[], SCRAPE, false, Some(&rules));
    let verifiers = "verifiers = ['{namespace=\"shop\", workload=\"client\"}']\n";
    let server = Pod::new(
        tmp.path(),
        "server",
        "s",
        &short,
        &r1.cert_pem,
        &prom.url(),
        &format!("[set.gate]\n{verifiers}release_before_expiry = \"1m\"\n"),
    );
    let observer = Pod::new(
        tmp.path(),
        "server",
        "o",
        &r1.leaf(&spec),
        &r1.cert_pem,
        &prom.url(),
        &format!("[set.gate]\nmode = \"observe\"\n{verifiers}"),
    );
    let client = Pod::new(
        tmp.path(),
        "client",
        "c1",
        &r1.leaf(&spec),
        &r1.cert_pem,
        &prom.url(),
        "",
    );
    prom.set_targets(&[server.target(), observer.target(), client.target()]);
    wait_for(BOUND, "every pod scraped", || {
        prom.query("certgate_trust_anchor_info").len() == 3
    });

    // Observe: computed and reported, published at once.
    observer.rotate(Some(&observed_leaf), &r12);
    wait_for(BOUND, "the observer publishes at once", || {
        observer.live() == Some(observed_leaf.fingerprint_sha256())
    });
    let g = observer.gate();
    assert_eq!(g["state"], "would_hold", "{g}");
    assert_eq!(g["mode"], "observe", "{g}");

    // Hold: c1 never moves, so only the deadline ends it, ~20 s from now.
    server.rotate(Some(&new_leaf), &r12);
    wait_for(BOUND, "the hold", || server.blocking() == ["shop/c1"]);
    assert!(server.gate()["deadline"].is_string());
    assert_eq!(
        server
            .d()
            .metric("certgate_gate_deadline_timestamp_seconds{kind=\"leaf\",set=\"web\"}")
            .map(|d| d as i64),
        Some((now + time::Duration::seconds(20)).unix_timestamp()),
        "deadline = notAfter - 1m"
    );
    // Holding with the deadline within the hour: that alert is pending (it fires after its
    // 5m `for`, longer than this test waits).
    wait_for(BOUND, "CertgateGateDeadlineNear pending", || {
        !prom
            .query("ALERTS{alertname=\"CertgateGateDeadlineNear\",pod=\"s\"}")
            .is_empty()
    });
    wait_for(Duration::from_secs(60), "the deadline release", || {
        server.live() == Some(new_leaf.fingerprint_sha256())
    });
    let released_at = time::OffsetDateTime::now_utc().unix_timestamp();
    let due = (now + time::Duration::seconds(20)).unix_timestamp();
    assert!(
        released_at >= due,
        "released at {released_at}, before the deadline {due}"
    );
    assert_eq!(server.gate()["last_release"], "deadline");
    let series = "certgate_gate_releases_total{kind=\"leaf\",reason=\"deadline\",set=\"web\"}";
    assert_eq!(server.d().metric(series), Some(1.0));
    assert!(server.d().log_text().contains("released at the deadline"));
    // And the alert fires, naming the reason.
    wait_for(BOUND, "CertgateGateForcedRelease firing", || {
        prom.query(
            "ALERTS{alertname=\"CertgateGateForcedRelease\",alertstate=\"firing\",pod=\"s\"}",
        )
        .iter()
        .any(|(labels, _)| labels.get("reason").and_then(|r| r.as_str()) == Some("deadline"))
    });
}
