//! Real workloads and real clients for end-to-end tests: Debian's nginx and HAProxy (and, where
//! Go is installed, a Go program), run as the test user from a temp dir and serving a certgate
//! publish dir, and OpenSSL-based clients (Python's `ssl`, curl) making fully verified HTTPS
//! requests at one TLS version each.
//!
//! Nothing here is a fake: the servers load `tls.crt`/`tls.key` through the publish dir's
//! `..data` links and reload on the signal certgate sends (nginx: SIGHUP to the master;
//! HAProxy in master-worker mode: SIGUSR2 to the master), and the clients verify the chain
//! against the test root and the name, as a browser or a service client would.
//!
//! The servers and clients are only started when their programs are installed. A test asks
//! [`available`] first: a missing program skips the test with a message, unless
//! `CERTGATE_REQUIRE_WORKLOADS` is set (CI), where it is a failure.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set (to anything non-empty) to make a missing nginx, HAProxy, python3, curl or openssl a
/// failure instead of a skip.
pub const REQUIRE_ENV: &str = "CERTGATE_REQUIRE_WORKLOADS";

/// Bound on a server coming up (port accepting) or going down.
const START_BOUND: Duration = Duration::from_secs(15);

/// Where a program is, searching `PATH` and then the sbin directories (nginx and HAProxy live
/// in `/usr/sbin`, which a non-login `PATH` may lack).
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether every program in `needed` is installed. When one is not: panics if
/// [`REQUIRE_ENV`] is set, else prints why `test` is skipped and returns `false`.
pub fn available(test: &str, needed: &[&str]) -> bool {
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|p| program(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| !v.is_empty());
    assert!(
        !required,
        "{test}: {missing:?} not installed and {REQUIRE_ENV} is set \
         (apt-get install nginx-light haproxy curl python3 openssl)"
    );
    eprintln!(
        "SKIPPED {test}: {missing:?} not installed (apt-get install nginx-light haproxy curl \
         python3 openssl; set {REQUIRE_ENV}=1 to make this a failure)"
    );
    false
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Sends `signal` to `pid`; false when there is no such process.
pub fn signal(pid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; pid and signal are plain ints.
    unsafe { libc::kill(pid as i32, signal) == 0 }
}

/// Unix time now, seconds (the clock Python's `time.time()` and certgate's logs use).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// === Kind ===

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// nginx (Debian's nginx-light), master + one worker, `daemon off`.
    Nginx,
    /// HAProxy (Debian's haproxy 2.6) in master-worker mode (`-W`).
    Haproxy,
}

impl Kind {
    /// Both, for tests that run against each.
    pub const ALL: [Kind; 2] = [Kind::Nginx, Kind::Haproxy];

    /// The program name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    /// The signal that makes the master load the published files again.
    pub fn reload_signal(self) -> &'static str {
        match self {
            Kind::Nginx => "SIGHUP",
            Kind::Haproxy => "SIGUSR2",
        }
    }

    /// The `[set.reload]` table that reloads this server run from `dir`: its signal to the
    /// master's pid, from the pid file [`RealWorkload::start`] writes once the server answers
    /// (so a reload is never sent to a master that is still starting).
    pub fn reload_toml(self, dir: &Path) -> String {
        format!(
            "\n[set.reload]\nsignal = \"{}\"\npid_file = \"{}\"\n",
            self.reload_signal(),
            dir.join(RELOAD_PID).display()
        )
    }
}

/// The pid file certgate signals: written by the harness once the server answers.
const RELOAD_PID: &str = "reload.pid";

// === Spec ===

/// How to configure the server.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Which server.
    pub kind: Kind,
    /// The TLS versions it accepts, as nginx spells them (`TLSv1.2`, `TLSv1.3`).
    pub protocols: Vec<&'static str>,
    /// nginx only: `ssl_conf_command SignatureAlgorithms …`, e.g. `ECDSA+SHA256` to make a
    /// server that cannot sign with an Ed25519 or RSA key (every such handshake fails).
    pub signature_algorithms: Option<&'static str>,
}

impl Spec {
    /// TLS 1.2 and 1.3, everything else default.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            protocols: vec!["TLSv1.2", "TLSv1.3"],
            signature_algorithms: None,
        }
    }

    /// Restricts the signature algorithms the server signs with (nginx only).
    pub fn signature_algorithms(mut self, list: &'static str) -> Self {
        assert_eq!(self.kind, Kind::Nginx, "signature_algorithms: nginx only");
        self.signature_algorithms = Some(list);
        self
    }
}

// === RealWorkload ===

/// A running server (nginx, HAProxy, or a Go program) serving `publish/tls.crt` +
/// `publish/tls.key` on a loopback port; stopped (SIGTERM to the master, SIGKILL after a
/// bound) when dropped.
pub struct RealWorkload {
    /// Which server, for messages.
    pub name: &'static str,
    /// Where it serves HTTPS.
    pub addr: SocketAddr,
    /// Its files: config, pid files, logs, temp paths.
    pub dir: PathBuf,
    child: Child,
}

impl RealWorkload {
    /// Starts `spec`'s server from `dir` (created) on loopback `port` (see [`free_port`]: the
    /// certgate config names it first), serving `publish`'s `tls.crt` and `tls.key` (which
    /// must exist), and waits until the port accepts connections. Then writes the pid file
    /// [`Kind::reload_toml`] names.
    pub fn start(spec: &Spec, dir: &Path, publish: &Path, port: u16) -> Self {
        std::fs::create_dir_all(dir).expect("workload dir");
        let binary = program(spec.kind.as_str()).expect("server installed (see available())");
        let mut cmd = Command::new(&binary);
        match spec.kind {
            Kind::Nginx => {
                let conf = dir.join("nginx.conf");
                std::fs::write(&conf, nginx_conf(spec, dir, publish, port)).expect("nginx.conf");
                // -e: the error log before the config is read (else /var/log/nginx).
                cmd.arg("-e")
                    .arg(dir.join("error.log"))
                    .arg("-p")
                    .arg(dir)
                    .arg("-c")
                    .arg(&conf);
            }
            Kind::Haproxy => {
                let conf = dir.join("haproxy.cfg");
                std::fs::write(&conf, haproxy_conf(spec, publish, port)).expect("haproxy.cfg");
                // -W: master-worker; the master stays our child (no -D), re-executes itself on
                // SIGUSR2 and hands the listeners to the new worker.
                cmd.arg("-W")
                    .arg("-f")
                    .arg(&conf)
                    .arg("-p")
                    .arg(dir.join("haproxy.pid"));
            }
        }
        Self::spawn(spec.kind.as_str(), cmd, dir, port)
    }

    /// Builds the Go program `source` (package main) in `dir` (created) with the installed
    /// `go`; returns the binary. Build before starting certgate: a cold build takes seconds.
    pub fn build_go(source: &str, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("workload dir");
        std::fs::write(dir.join("main.go"), source).expect("main.go");
        let out = Command::new(program("go").expect("go installed"))
            .args(["build", "-o", "server", "main.go"])
            .current_dir(dir)
            .env("GOCACHE", dir.join("gocache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GO111MODULE", "off")
            .output()
            .expect("run go build");
        assert!(
            out.status.success(),
            "go build:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("server")
    }

    /// Starts a Go server [`RealWorkload::build_go`] built, with the listen address and the
    /// publish dir as its arguments, like [`RealWorkload::start`].
    pub fn start_go(binary: &Path, publish: &Path, port: u16) -> Self {
        let dir = binary.parent().expect("binary in a dir");
        let mut cmd = Command::new(binary);
        cmd.arg(format!("127.0.0.1:{port}")).arg(publish);
        Self::spawn("go server", cmd, dir, port)
    }

    /// Spawns `cmd` from `dir` with its output in `dir/server.out`, waits until `port`
    /// accepts connections, then writes the reload pid file.
    fn spawn(name: &'static str, mut cmd: Command, dir: &Path, port: u16) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let out = std::fs::File::create(dir.join("server.out")).expect("server.out");
        let err = out.try_clone().expect("server.out");
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().expect("spawn server");
        let mut w = Self {
            name,
            addr,
            dir: dir.to_path_buf(),
            child,
        };
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = w.child.try_wait() {
                panic!("{name} exited at start ({status}):\n{}", w.logs());
            }
            assert!(
                start.elapsed() < START_BOUND,
                "{name} did not listen on {addr}:\n{}",
                w.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The master has forked its worker, so its signal handlers are in place.
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(dir.join(RELOAD_PID), format!("{}\n", w.pid())).expect("reload pid file");
        w
    }

    /// The master's pid (the process certgate signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the master is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's output and error log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["server.out", "error.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(name)) {
                let _ = writeln!(text, "--- {name}\n{}", tail(&t, 40));
            }
        }
        text
    }
}

impl Drop for RealWorkload {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its workers; HAProxy's master stops its workers.
        signal(self.pid(), libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// nginx as a container image runs it, but everything in `dir`: `daemon off` (the master is
/// our child), pid, error log and temp paths in `dir`, `user root` (the test user: workers
/// keep it), one worker, the published files by their `..data` links.
fn nginx_conf(spec: &Spec, dir: &Path, publish: &Path, port: u16) -> String {
    let d = dir.display();
    let sigalgs = spec
        .signature_algorithms
        .map(|s| format!("    ssl_conf_command SignatureAlgorithms {s};\n"))
        .unwrap_or_default();
    format!(
        "daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {p}/tls.crt;
    ssl_certificate_key {p}/tls.key;
    ssl_protocols {protocols};
{sigalgs}    location / {{ return 200 \"ok\\n\"; }}
  }}
}}
",
        p = publish.display(),
        protocols = spec.protocols.join(" "),
    )
}

/// HAProxy 2.6 in HTTP mode answering every request itself. `crt tls.crt` with
/// `ssl-load-extra-del-ext` + `ssl-load-extra-files key` loads the key from `tls.key` beside
/// it (HAProxy's default would be `tls.crt.key`), so certgate's two published files serve as
/// they are.
fn haproxy_conf(spec: &Spec, publish: &Path, port: u16) -> String {
    let min = spec.protocols.first().copied().unwrap_or("TLSv1.2");
    let max = spec.protocols.last().copied().unwrap_or("TLSv1.3");
    format!(
        "global
  ssl-load-extra-del-ext
  ssl-load-extra-files key
  nbthread 1
  hard-stop-after 10s
defaults
  mode http
  timeout connect 5s
  timeout client 5s
  timeout server 5s
frontend web
  bind 127.0.0.1:{port} ssl crt {p}/tls.crt ssl-min-ver {min} ssl-max-ver {max}
  http-request return status 200 content-type text/plain string ok
",
        p = publish.display(),
    )
}

// === Clients ===

/// A TLS version a client is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// TLS 1.2 only.
    V12,
    /// TLS 1.3 only.
    V13,
}

impl Tls {
    /// Both, for tests that run a client per version.
    pub const ALL: [Tls; 2] = [Tls::V12, Tls::V13];

    /// `1.2` or `1.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::V12 => "1.2",
            Tls::V13 => "1.3",
        }
    }

    /// How OpenSSL names the negotiated version (`TLSv1.2`).
    pub fn openssl_name(self) -> &'static str {
        match self {
            Tls::V12 => "TLSv1.2",
            Tls::V13 => "TLSv1.3",
        }
    }
}

/// One request a client made.
#[derive(Debug, Clone)]
pub struct Response {
    /// Whether the handshake verified and the server answered 200.
    pub ok: bool,
    /// When the request started and ended, Unix seconds.
    pub start: f64,
    /// When the response was complete (or the failure seen), Unix seconds.
    pub end: f64,
    /// The negotiated TLS version (`TLSv1.3`), when ok.
    pub version: String,
    /// SHA-256 of the served leaf's DER, lowercase hex, when ok; the error otherwise.
    pub detail: String,
}

/// The client loop: a new connection per request (a new handshake each time, as clients
/// meeting a freshly reloaded server do), full verification against the CA and the name, one
/// line per request on stdout.
const CLIENT_PY: &str = r#"import hashlib, socket, ssl, sys, time
port, ca, name, version, pause = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
ctx.minimum_version = v
ctx.maximum_version = v
req = ("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name).encode()
while True:
    start = time.time()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                fp = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
                got = tls.version()
                tls.sendall(req)
                data = b""
                while True:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("unexpected response %r" % data[:40])
        print("ok %.6f %.6f %s %s" % (start, time.time(), got, fp), flush=True)
    except Exception as e:
        msg = ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")
        print("fail %.6f %.6f - %s" % (start, time.time(), msg), flush=True)
    if pause > 0:
        time.sleep(pause)
"#;

/// A Python `ssl` client looping HTTPS GETs against a server; killed when dropped.
pub struct Client {
    /// The version it is pinned to.
    pub tls: Tls,
    child: Child,
    responses: Arc<Mutex<Vec<Response>>>,
}

impl Client {
    /// Starts a client for `https://name:port/` (connecting to `addr`) verifying against
    /// `ca`, pinned to `tls`, pausing `pause` between requests. Its script is written to
    /// `dir`.
    pub fn start(
        dir: &Path,
        addr: SocketAddr,
        ca: &Path,
        name: &str,
        tls: Tls,
        pause: Duration,
    ) -> Self {
        let script = dir.join("client.py");
        if !script.exists() {
            std::fs::write(&script, CLIENT_PY).expect("client.py");
        }
        let mut child = Command::new(program("python3").expect("python3 installed"))
            .arg(&script)
            .arg(addr.port().to_string())
            .arg(ca)
            .arg(name)
            .arg(tls.as_str())
            .arg(pause.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 client");
        let responses = Arc::new(Mutex::new(Vec::new()));
        let sink = responses.clone();
        let stdout = child.stdout.take().expect("client stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(r) = parse_line(&line) {
                    sink.lock().unwrap().push(r);
                }
            }
        });
        Self {
            tls,
            child,
            responses,
        }
    }

    /// Every response so far.
    pub fn responses(&self) -> Vec<Response> {
        self.responses.lock().unwrap().clone()
    }

    /// The failed requests so far.
    pub fn failures(&self) -> Vec<Response> {
        self.responses().into_iter().filter(|r| !r.ok).collect()
    }

    /// The leaf the latest successful request was served, if any.
    pub fn latest_leaf(&self) -> Option<String> {
        self.responses
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.ok)
            .map(|r| r.detail.clone())
    }

    /// The first successful response served `fingerprint`, if any.
    pub fn first_serving(&self, fingerprint: &str) -> Option<Response> {
        self.responses
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.ok && r.detail == fingerprint)
            .cloned()
    }

    /// Waits (up to `bound`) until the latest successful request was served `fingerprint`.
    pub fn wait_serving(&self, bound: Duration, fingerprint: &str) {
        let start = Instant::now();
        while self.latest_leaf().as_deref() != Some(fingerprint) {
            assert!(
                start.elapsed() < bound,
                "TLS {} client not served {} within {bound:?}; last responses: {:?}",
                self.tls.as_str(),
                &fingerprint[..12],
                self.last(5)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last `n` responses, for failure messages.
    pub fn last(&self, n: usize) -> Vec<Response> {
        let all = self.responses();
        all[all.len().saturating_sub(n)..].to_vec()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_line(line: &str) -> Option<Response> {
    let mut parts = line.splitn(5, ' ');
    let ok = match parts.next()? {
        "ok" => true,
        "fail" => false,
        _ => return None,
    };
    let start = parts.next()?.parse().ok()?;
    let end = parts.next()?.parse().ok()?;
    let version = parts.next()?.to_string();
    let detail = parts.next()?.to_string();
    Some(Response {
        ok,
        start,
        end,
        version,
        detail,
    })
}

/// One verified request with curl pinned to `tls`; the body on success, curl's error
/// otherwise.
pub fn curl(addr: SocketAddr, ca: &Path, name: &str, tls: Tls) -> Result<String, String> {
    let pin: &[&str] = match tls {
        Tls::V12 => &["--tlsv1.2", "--tls-max", "1.2"],
        Tls::V13 => &["--tlsv1.3", "--tls-max", "1.3"],
    };
    let out = Command::new(program("curl").expect("curl installed"))
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{}:127.0.0.1", addr.port()))
        .args(pin)
        .arg(format!("https://{name}:{}/", addr.port()))
        .output()
        .expect("run curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
