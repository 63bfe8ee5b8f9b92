//! The fleet's trust from real pods: `certgate run` processes as the pods of two workloads,
//! scraped by a real Prometheus (Debian's) found through `file_sd_configs` with namespace, pod
//! and workload labels. A new root reaches the pods a few seconds apart; Prometheus gives the
//! propagation time, `certgate fleet stale` names the lagging pods, and a restarted certgate
//! keeps its first-seen times.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::util::daemon::Running;
use crate::util::fleet::{prometheus_available, wait_for, FleetPrometheus, SdTarget};
use crate::util::pki::{Alg, Ca, Leaf, LeafSpec};
use crate::util::{command, texts};

const BOUND: Duration = Duration::from_secs(45);

/// One pod: its source and publish directories, and its certgate.
struct Pod {
    workload: &'static str,
    name: &'static str,
    src: PathBuf,
    out: PathBuf,
    d: Option<Running>,
}

impl Pod {
    fn new(dir: &Path, workload: &'static str, name: &'static str, leaf: &Leaf, ca: &str) -> Self {
        let src = dir.join(name).join("src");
        let out = dir.join(name).join("out");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("tls.key"), leaf.key.pkcs8_pem()).unwrap();
        fs::write(src.join("tls.crt"), &leaf.cert_pem).unwrap();
        fs::write(src.join("ca.crt"), ca).unwrap();
        let mut pod = Self {
            workload,
            name,
            src,
            out,
            d: None,
        };
        pod.start();
        pod
    }

    fn start(&mut self) {
        let arg = |p: PathBuf| p.display().to_string();
        let d = Running::start_args(&[
            "run",
            "--cert",
            &arg(self.src.join("tls.crt")),
            "--key",
            &arg(self.src.join("tls.key")),
            "--trust",
            &arg(self.src.join("ca.crt")),
            "--name",
            "localhost",
            "--publish-dir",
            &arg(self.out.clone()),
            "--settle",
            "50ms",
            "--no-handshake",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]);
        wait_for(BOUND, "pod live", || d.live_fingerprint(0).is_some());
        self.d = Some(d);
    }

    fn d(&self) -> &Running {
        self.d.as_ref().expect("running")
    }

    /// A bundle rotation: the source's trust file now holds `ca` (the leaf is unchanged).
    fn trust(&self, ca: &str) {
        let tmp = self.src.join("ca.crt.tmp");
        fs::write(&tmp, ca).unwrap();
        fs::rename(&tmp, self.src.join("ca.crt")).unwrap();
    }

    fn anchors(&self) -> usize {
        self.d().status()["sets"][0]["trust"]["anchors"]
            .as_array()
            .map_or(0, Vec::len)
    }

    fn target(&self) -> SdTarget {
        SdTarget::pod(self.d().addr, "shop", self.workload, self.name)
    }
}

fn fleet(url: &str, args: &[&str]) -> Output {
    command()
        .args(["fleet", "--prometheus", url])
        .args(args)
        .output()
        .expect("run certgate fleet")
}

#[test]
fn a_new_root_reaching_real_pods_is_seen_by_prometheus_and_certgate_fleet() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let old = Ca::root("fleet old root", Alg::P256);
    let new = Ca::root("fleet new root", Alg::P256);
    let leaf = old.leaf(&LeafSpec::new("localhost"));
    let mut pods: Vec<Pod> = [
        ("web", "web-1"),
        ("web", "web-2"),
        ("web", "web-3"),
        ("api", "api-1"),
    ]
    .into_iter()
    .map(|(w, n)| Pod::new(tmp.path(), w, n, &leaf, &old.cert_pem))
    .collect();
    let prom = FleetPrometheus::start(
        &pods.iter().map(Pod::target).collect::<Vec<_>>(),
        Duration::from_secs(1),
        false,
    );
    let url = prom.url();
    wait_for(BOUND, "every pod scraped", || {
        prom.query("certgate_trust_anchor_info").len() == pods.len()
    });
    let new_id = certgate::pipeline::inspect::anchor_id_of(&new.cert_der)
        .expect("a root")
        .to_string();

    // The new root reaches api-1 and web-1 at t0, web-2 at t0+3 s, web-3 at t0+6 s.
    let both = format!("{}{}", old.cert_pem, new.cert_pem);
    let t0 = Instant::now();
    for (i, after) in [(3, 0), (0, 0), (1, 3), (2, 6)] {
        while t0.elapsed() < Duration::from_secs(after) {
            std::thread::sleep(Duration::from_millis(20));
        }
        pods[i].trust(&both);
        wait_for(BOUND, "the new root live", || pods[i].anchors() == 2);
        if i == 1 {
            // Before web-2 and web-3 learn it: they are the stale ones.
            wait_for(BOUND, "web-1 scraped with the new root", || {
                prom.query(&format!(
                    "certgate_trust_anchor_info{{anchor_id=\"{new_id}\"}}"
                ))
                .len()
                    == 2
            });
            let o = fleet(&url, &["stale", "--anchor", &new_id, "--json"]);
            let (out, err) = texts(&o);
            assert_eq!(o.status.code(), Some(1), "not converged: {out}{err}");
            for lagging in ["web-2", "web-3"] {
                assert!(out.contains(lagging), "{lagging} is stale: {out}");
            }
            for current in ["web-1", "api-1"] {
                assert!(!out.contains(&format!("\"{current}\"")), "{current}: {out}");
            }
        }
    }
    // Every pod has it: the propagation expression (the recording rule's) gives 6 s ± 1 s.
    wait_for(BOUND, "every pod scraped with the new root", || {
        prom.query(&format!(
            "certgate_trust_anchor_first_seen_timestamp_seconds{{anchor_id=\"{new_id}\",via=\"rotation\"}}"
        ))
        .len()
            == pods.len()
    });
    let propagation = prom
        .value(&format!(
            "max by (set, anchor_id) (certgate_trust_anchor_first_seen_timestamp_seconds{{via=\"rotation\",anchor_id=\"{new_id}\"}}) \
             - min by (set, anchor_id) (certgate_trust_anchor_first_seen_timestamp_seconds{{via=\"rotation\",anchor_id=\"{new_id}\"}})"
        ))
        .expect("propagation");
    assert!(
        (5.0..=7.0).contains(&propagation),
        "propagation {propagation} s, expected 6 ± 1"
    );
    let o = fleet(&url, &["wait", "--anchor", &new_id, "--timeout", "30s"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));

    // A restarted certgate (same pod, same publish directory) keeps its first-seen times.
    let first_seen = |pod: &Pod| {
        pod.d().status()["sets"][0]["trust"]["anchors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["anchor_id"].to_string(),
                    a["first_seen"].as_i64(),
                    a["via"].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = first_seen(&pods[2]);
    drop(pods[2].d.take());
    std::thread::sleep(Duration::from_millis(1100));
    pods[2].start();
    let mut after = first_seen(&pods[2]);
    let mut sorted = before.clone();
    sorted.sort();
    after.sort();
    assert_eq!(after, sorted, "first-seen kept across the restart");
}
