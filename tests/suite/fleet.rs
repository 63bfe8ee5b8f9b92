//! `certgate fleet` end to end: the real binary against a real Prometheus (Debian's) scraping
//! synthetic certgate pods found through `file_sd_configs` (namespace/pod/workload labels),
//! and against fake query APIs for what a healthy Prometheus never does (partial data, slow,
//! endless, TLS). The synthetic pods export the per-pod series contract of issue 12; once the
//! daemon exports them, the end-to-end part moves to real certgate processes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::fleet::{
    exposition, now_unix, prometheus_available, wait_for, Anchor, Exporter, FleetPrometheus,
    PodSet, SdTarget,
};
use crate::util::pki::{Alg, Ca, LeafSpec};
use crate::util::{command, texts};

/// Generous: Prometheus scrapes every second.
const BOUND: Duration = Duration::from_secs(45);
const SCRAPE: Duration = Duration::from_secs(1);
const OLD: &str = "0f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c4b5a6978";
const NEW: &str = "a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718";

/// One synthetic pod: an exporter serving what its certgate would.
struct Pod {
    workload: &'static str,
    name: &'static str,
    anchors: Vec<Anchor>,
    exporter: Exporter,
}

impl Pod {
    fn new(workload: &'static str, name: &'static str, t0: f64) -> Self {
        let anchors = vec![Anchor::new(
            OLD,
            "CN=old root,O=shop",
            t0 - 600.0,
            "startup",
        )];
        let exporter = Exporter::start(body(&anchors));
        Self {
            workload,
            name,
            anchors,
            exporter,
        }
    }

    /// A rotation brings the new root: first seen now.
    fn learn_new_root(&mut self) {
        self.anchors.push(Anchor::new(
            NEW,
            "CN=new root,O=shop",
            now_unix(),
            "rotation",
        ));
        self.exporter.set(body(&self.anchors));
    }

    fn target(&self) -> SdTarget {
        SdTarget::pod(self.exporter.addr, "e2e", self.workload, self.name)
    }
}

fn body(anchors: &[Anchor]) -> String {
    exposition(
        &[PodSet {
            set: "default".into(),
            anchors: anchors.to_vec(),
            leaf_fingerprint: "5e".repeat(32),
            leaf_issuer: "CN=shop intermediate,O=shop".into(),
            leaf_not_after: 1_900_000_000.0,
        }],
        "",
    )
}

fn targets(pods: &[Pod]) -> Vec<SdTarget> {
    pods.iter().map(Pod::target).collect()
}

/// `certgate fleet --prometheus URL ARGS…`.
fn fleet(url: &str, args: &[&str]) -> Output {
    command()
        .args(["fleet", "--prometheus", url])
        .args(args)
        .output()
        .expect("run certgate fleet")
}

/// `fleet … --json`: exit code and document.
fn fleet_json(url: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let o = fleet(url, &[args, &["--json"]].concat());
    let (out, err) = texts(&o);
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (o.status.code().unwrap_or(-1), doc)
}

/// The pods a stale/wait document lists under `key` ("lacking" or "unknown").
fn listed(doc: &serde_json::Value, key: &str) -> BTreeSet<String> {
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g[key].as_array().cloned().unwrap_or_default())
        .map(|p| p["pod"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "wider than 120: {line}");
    }
}

#[test]
fn fleet_reads_the_fleets_trust_back_from_a_real_prometheus() {
    if !prometheus_available() {
        eprintln!("skipped: prometheus not installed (CERTGATE_REQUIRE_PROMETHEUS=1 makes this a failure)");
        return;
    }
    let t0 = now_unix();
    let mut pods: Vec<Pod> = [
        ("web", "web-a"),
        ("web", "web-b"),
        ("web", "web-c"),
        ("api", "api-a"),
        ("api", "api-b"),
    ]
    .into_iter()
    .map(|(w, p)| Pod::new(w, p, t0))
    .collect();
    let mut prom = FleetPrometheus::start(&targets(&pods), SCRAPE, false);
    let url = prom.url();
    wait_for(BOUND, "every pod scraped", || {
        prom.value("count(certgate_trust_anchor_info)") == Some(5.0)
    });

    // The overview: every pod, its leaf and anchors, per workload.
    let o = fleet(&url, &[]);
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_fits(&out);
    for p in &pods {
        assert!(
            out.contains(&format!("e2e/{}", p.name)),
            "{}: {out}",
            p.name
        );
    }
    assert!(
        out.contains("namespace=e2e workload=web set=default: 3 pod(s)"),
        "{out}"
    );
    assert!(out.contains(&OLD[..12]), "{out}");

    // A new root reaches web-a and api-a.
    pods[0].learn_new_root();
    pods[3].learn_new_root();
    let q_new = format!("count(certgate_trust_anchor_info{{anchor_id=\"{NEW}\"}})");
    wait_for(BOUND, "the new root on two pods", || {
        prom.value(&q_new) == Some(2.0)
    });

    // `stale` names exactly the lagging pods, by full id, by prefix (flags after the
    // subcommand) and as each group's newest anchor.
    let (code, doc) = fleet_json(&url, &["stale", "--anchor", NEW]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(listed(&doc, "lacking"), set(&["web-b", "web-c", "api-b"]));
    assert!(listed(&doc, "unknown").is_empty(), "{doc}");
    let o = command()
        .args([
            "fleet",
            "stale",
            "--anchor",
            &NEW[..12],
            "--prometheus",
            &url,
            "--json",
        ])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed(&doc, "lacking"), set(&["web-b", "web-c", "api-b"]));
    let (code, doc) = fleet_json(&url, &["stale", "--newest"]);
    assert_eq!(code, 1);
    assert_eq!(listed(&doc, "lacking"), set(&["web-b", "web-c", "api-b"]));
    let o = fleet(&url, &["stale", "--newest"]);
    let (out, _) = texts(&o);
    assert_fits(&out);
    assert!(out.contains("3 pod(s) lack the anchor, 0 unknown"), "{out}");

    // `anchors`: coverage per workload, first-seen times.
    let (code, doc) = fleet_json(&url, &["anchors"]);
    assert_eq!(code, 0);
    let web = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["labels"]["workload"] == "web")
        .expect("web group");
    let new = web["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["anchor_id"] == NEW)
        .expect("new anchor");
    assert_eq!(
        (new["trusting"].as_u64(), new["pods"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(new["complete"], false);
    assert_eq!(new["propagation_seconds"], 0.0);
    let o = fleet(&url, &["anchors"]);
    assert_fits(&texts(&o).0);

    // web-c's certgate dies: unknown, not omitted.
    pods[2].exporter.stop();
    wait_for(BOUND, "web-c's scrape failing", || {
        prom.value("up{pod=\"web-c\"}") == Some(0.0)
    });
    let (code, doc) = fleet_json(&url, &["stale", "--anchor", NEW]);
    assert_eq!(code, 1);
    assert_eq!(listed(&doc, "lacking"), set(&["web-b", "api-b"]));
    assert_eq!(listed(&doc, "unknown"), set(&["web-c"]));
    let (out, _) = texts(&fleet(&url, &[]));
    let line = out
        .lines()
        .find(|l| l.contains("e2e/web-c"))
        .expect("web-c shown");
    assert!(line.contains("unknown: scrape failing"), "{line}");

    // The pod is deleted (gone from service discovery): it leaves the fleet.
    let live: Vec<SdTarget> = pods
        .iter()
        .filter(|p| p.name != "web-c")
        .map(Pod::target)
        .collect();
    prom.set_targets(&live);
    wait_for(BOUND, "web-c gone from the targets", || {
        prom.query("up{pod=\"web-c\"}").is_empty()
    });
    let (out, _) = texts(&fleet(&url, &[]));
    assert!(!out.contains("web-c"), "{out}");

    // The selector narrows the fleet; a matcher on `set` applies to the certgate series.
    let (_, doc) = fleet_json(
        &url,
        &[
            "--selector",
            r#"{workload="api", set="default"}"#,
            "stale",
            "--anchor",
            NEW,
        ],
    );
    assert_eq!(listed(&doc, "lacking"), set(&["api-b"]));
    // A regex Prometheus refuses is the selector's fault: 2, one line.
    let o = fleet(&url, &["--selector", r#"{workload=~"("}"#]);
    let (_, err) = texts(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--selector"), "{err}");
    // An anchor no pod trusts: a clear error.
    let unknown = "9".repeat(64);
    let o = fleet(&url, &["stale", "--anchor", &unknown]);
    let (_, err) = texts(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown anchor id"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // `wait` exits 0 within two scrape intervals of the last pod getting the new root, and
    // not before; it shows progress meanwhile.
    let mut child = command()
        .args([
            "fleet",
            "wait",
            "--anchor",
            NEW,
            "--interval",
            "200ms",
            "--timeout",
            "60s",
            "--prometheus",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fleet wait");
    let progress = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = progress.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    std::thread::sleep(SCRAPE * 2);
    assert!(child.try_wait().unwrap().is_none(), "converged too early");
    pods[1].learn_new_root();
    std::thread::sleep(SCRAPE * 2);
    assert!(
        child.try_wait().unwrap().is_none(),
        "converged with api-b lacking"
    );
    pods[4].learn_new_root();
    let last = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(last.elapsed() < BOUND, "fleet wait never converged");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = last.elapsed();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let progress = progress.lock().unwrap().join("\n");
    assert_eq!(status.code(), Some(0), "{out}\n{progress}");
    assert!(
        took <= SCRAPE * 2,
        "converged {took:?} after the last pod got the root"
    );
    assert!(out.starts_with("converged"), "{out}");
    assert!(
        progress.contains("1/2 pods trust") || progress.contains("pods trust"),
        "{progress}"
    );
    assert!(
        progress.lines().count() >= 2,
        "progress while waiting: {progress}"
    );

    // Prometheus stops: exit 3 with a one-line reason, for the report and for `wait`.
    prom.stop();
    let o = fleet(&url, &[]);
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    let o = fleet(&url, &["wait", "--newest", "--interval", "100ms"]);
    assert_eq!(o.status.code(), Some(3), "{:?}", texts(&o));
}

#[test]
fn bad_input_is_a_one_line_usage_error() {
    let cases: &[&[&str]] = &[
        &["fleet", "--prometheus", "ftp://prom:9090"],
        &["fleet", "--prometheus", "prom:9090"],
        &["fleet"],
        &[
            "fleet",
            "--prometheus",
            "http://127.0.0.1:1",
            "--selector",
            "up",
        ],
        &[
            "fleet",
            "--prometheus",
            "http://127.0.0.1:1",
            "--selector",
            r#"{a="b"} or vector(1)"#,
        ],
        &[
            "fleet",
            "--prometheus",
            "http://127.0.0.1:1",
            "--selector",
            "{a=b}",
        ],
        &["fleet", "--prometheus", "http://127.0.0.1:1", "--by", "a-b"],
        &[
            "fleet",
            "--prometheus",
            "http://127.0.0.1:1",
            "--header",
            "nocolon",
        ],
        &[
            "fleet",
            "stale",
            "--anchor",
            "xyz",
            "--prometheus",
            "http://127.0.0.1:1",
        ],
        &[
            "fleet",
            "wait",
            "--newest",
            "--coverage",
            "0%",
            "--prometheus",
            "http://127.0.0.1:1",
        ],
    ];
    for args in cases {
        let o = command().args(*args).output().unwrap();
        let (out, err) = texts(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("certgate fleet: "), "{args:?}: {err}");
    }
    // clap's own usage errors (a missing --anchor/--newest) are 2 as well.
    let o = command()
        .args(["fleet", "stale", "--prometheus", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

// === fake query APIs ===

/// What a fake API answers: status, body.
type Respond = dyn Fn(&str) -> (u16, Vec<u8>) + Send + Sync;

/// A fake query API on loopback (each connection on its own thread), over TLS when given a
/// server config; records every request (head and body).
struct FakeApi {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeApi {
    fn start(tls: Option<Arc<rustls::ServerConfig>>, respond: Arc<Respond>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, halt) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (reqs, respond, tls) = (reqs.clone(), respond.clone(), tls.clone());
                std::thread::spawn(move || {
                    tcp.set_nonblocking(false).unwrap();
                    match tls {
                        None => answer(tcp, &reqs, &*respond),
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            answer(rustls::StreamOwned::new(conn, tcp), &reqs, &*respond)
                        }
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            stop,
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/prom", self.addr)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer<S: Read + Write>(mut s: S, reqs: &Mutex<Vec<String>>, respond: &Respond) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while raw.len() < head_end + len {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let req = String::from_utf8_lossy(&raw).to_string();
    reqs.lock().unwrap().push(req.clone());
    let (status, body) = respond(&req);
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(&body);
    let _ = s.flush();
}

const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

fn fixed(status: u16, body: &str) -> Arc<Respond> {
    let body = body.as_bytes().to_vec();
    Arc::new(move |_| (status, body.clone()))
}

#[test]
fn a_failing_partial_or_slow_api_is_exit_3_in_one_line() {
    let partial = r#"{"status":"success","warnings":["partial response: store eu-1 unreachable"],"data":{"resultType":"vector","result":[]}}"#;
    let cases: Vec<(Arc<Respond>, &str)> = vec![
        (
            fixed(200, partial),
            "partial data: partial response: store eu-1 unreachable",
        ),
        (
            fixed(
                422,
                r#"{"status":"error","errorType":"execution","error":"too many samples"}"#,
            ),
            "query failed (execution): too many samples",
        ),
        (
            fixed(503, "<html>\nupstream down\n</html>"),
            "HTTP 503: <html> upstream down </html>",
        ),
        (fixed(200, "not json"), "not a Prometheus query API answer"),
        (
            Arc::new(|_| (200, vec![b' '; 65 << 20])),
            "response larger than 64 MiB",
        ),
    ];
    for (respond, expect) in cases {
        let api = FakeApi::start(None, respond);
        let o = fleet(&api.url("http"), &["anchors"]);
        let (out, err) = texts(&o);
        assert_eq!(o.status.code(), Some(3), "{expect}: {out}{err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{expect}: {err}");
    }
    // An API slower than --timeout: 3 at the timeout, not later.
    let api = FakeApi::start(
        None,
        Arc::new(|_| {
            std::thread::sleep(Duration::from_secs(10));
            (200, EMPTY.as_bytes().to_vec())
        }),
    );
    let start = Instant::now();
    let o = fleet(&api.url("http"), &["--timeout", "1s"]);
    let (_, err) = texts(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(err.contains("no answer within the --timeout"), "{err}");
}

#[test]
fn queries_are_posted_with_the_headers_and_token_given_over_http_and_https() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let api = FakeApi::start(None, fixed(200, EMPTY));
    let o = fleet(
        &api.url("http"),
        &[
            "anchors",
            "--header",
            "X-Scope-OrgID: tenant-1",
            "--bearer-token-file",
            &token.display().to_string(),
            "--selector",
            r#"{namespace="shop"}"#,
        ],
    );
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.starts_with("no certgate pods"), "{out}");
    let reqs = api.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 3, "anchors sends 3 queries: {reqs:?}");
    for r in &reqs {
        assert!(r.starts_with("POST /prom/api/v1/query HTTP/1.1"), "{r}");
        assert!(r.contains("x-scope-orgid: tenant-1"), "{r}");
        assert!(r.contains("authorization: Bearer s3cret-token\r\n"), "{r}");
        assert!(r.contains("namespace%3D%22shop%22%7D"), "{r}");
    }

    // https: trusted through --ca-file; another CA (SSL_CERT_FILE) is refused with 3.
    let ca = Ca::root("fleet api CA", Alg::P256);
    let leaf = ca.leaf(&LeafSpec::new("localhost").ip("127.0.0.1".parse().unwrap()));
    let key: rustls::pki_types::PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(leaf.key.pkcs8_pem().as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.cert_der.clone().into()], key)
    .unwrap();
    let api = FakeApi::start(Some(Arc::new(config)), fixed(200, EMPTY));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let o = fleet(
        &api.url("https"),
        &["--ca-file", &ca_file.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(
        api.requests.lock().unwrap().len(),
        5,
        "the overview sends 5 queries"
    );
    let other = dir.path().join("other.pem");
    std::fs::write(&other, Ca::root("another CA", Alg::P256).cert_pem).unwrap();
    let o = command()
        .args(["fleet", "--prometheus", &api.url("https")])
        .env("SSL_CERT_FILE", &other)
        .output()
        .unwrap();
    let (_, err) = texts(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The gate's round through the real client: every error answer fails the round (the gate
/// then holds), and a big answer is read whole.
#[test]
fn a_gate_round_fails_on_error_answers_and_reads_ten_thousand_rows() {
    use certgate::fleet::query::{Endpoint, EndpointOptions, QueryError};
    use certgate::gate::query::{ask, RoundQueries, PART_LABEL};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let round = RoundQueries::new(
        &[certgate::fleet::selector::Selector::parse("{namespace=\"shop\"}").unwrap()],
        ".*certgate.*",
        "certgate_trust_anchor_info",
        &[],
        None,
    );
    let run = |api: &FakeApi, timeout: Duration| {
        let endpoint = Endpoint::new(&EndpointOptions {
            url: api.url("http"),
            ..EndpointOptions::default()
        })
        .unwrap();
        rt.block_on(ask(
            &endpoint,
            &round,
            tokio::time::Instant::now() + timeout,
        ))
    };
    let cases: Vec<(Arc<Respond>, &str)> = vec![
        (fixed(503, "upstream down"), "http_status"),
        (
            fixed(
                422,
                r#"{"status":"error","errorType":"execution","error":"too many samples"}"#,
            ),
            "api_error",
        ),
        (
            fixed(
                200,
                r#"{"status":"success","warnings":["store eu-1 unreachable"],"data":{"resultType":"vector","result":[]}}"#,
            ),
            "partial_data",
        ),
        (
            Arc::new(|_| {
                std::thread::sleep(Duration::from_secs(5));
                (200, EMPTY.as_bytes().to_vec())
            }),
            "timeout",
        ),
    ];
    for (respond, want) in cases {
        let api = FakeApi::start(None, respond);
        let err: QueryError = run(&api, Duration::from_secs(1)).expect_err(want);
        assert_eq!(err.reason(), want, "{err}");
    }
    // 10,000 verifiers: three parts per pod, one query.
    let mut rows = String::new();
    for i in 0..10_000 {
        for part in ["up", "exporting", "anchor"] {
            if !rows.is_empty() {
                rows.push(',');
            }
            rows.push_str(&format!(
                r#"{{"metric":{{"namespace":"shop","pod":"p{i}","anchor_id":"{OLD}","{PART_LABEL}":"{part}"}},"value":[1,"1"]}}"#
            ));
        }
    }
    let body =
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{rows}]}}}}"#);
    let api = FakeApi::start(None, fixed(200, &body));
    let answers = run(&api, Duration::from_secs(20)).expect("a big answer");
    assert_eq!(
        (
            answers.up.len(),
            answers.exporting.len(),
            answers.relevant.len()
        ),
        (10_000, 10_000, 10_000)
    );
    assert_eq!(api.requests.lock().unwrap().len(), 1, "one query per round");
}
