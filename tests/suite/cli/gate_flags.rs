//! The fleet gate's flags of `certgate run` (one set given by flags): listed in `--help`,
//! mistakes exit 2 naming the flag, and they make the `Config` the equivalent TOML makes.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use certgate::cli::{Cli, Command};
use certgate::config::Config;

use crate::util::pki::{Alg, Hierarchy};
use crate::util::{self, texts, write};

use super::{show, Files};

/// Every gate and query API flag of `run`, with its variable.
const GATE_FLAGS: &[(&str, &str)] = &[
    ("--gate", "CERTGATE_GATE"),
    ("--gate-verifiers", "CERTGATE_GATE_VERIFIERS"),
    ("--gate-presenters", "CERTGATE_GATE_PRESENTERS"),
    ("--gate-min-verifiers", "CERTGATE_GATE_MIN_VERIFIERS"),
    (
        "--gate-expected-verifiers",
        "CERTGATE_GATE_EXPECTED_VERIFIERS",
    ),
    (
        "--gate-unknown-verifiers",
        "CERTGATE_GATE_UNKNOWN_VERIFIERS",
    ),
    ("--gate-stable-for", "CERTGATE_GATE_STABLE_FOR"),
    (
        "--gate-release-before-expiry",
        "CERTGATE_GATE_RELEASE_BEFORE_EXPIRY",
    ),
    ("--gate-release-file", "CERTGATE_GATE_RELEASE_FILE"),
    ("--prometheus-url", "CERTGATE_PROMETHEUS_URL"),
    ("--prometheus-header", "CERTGATE_PROMETHEUS_HEADERS"),
    (
        "--prometheus-bearer-token-file",
        "CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE",
    ),
    ("--prometheus-ca-file", "CERTGATE_PROMETHEUS_CA_FILE"),
    ("--fleet-poll-interval", "CERTGATE_FLEET_POLL_INTERVAL"),
    ("--fleet-query-timeout", "CERTGATE_FLEET_QUERY_TIMEOUT"),
    ("--fleet-job", "CERTGATE_FLEET_JOB"),
    ("--admin-listen", "CERTGATE_ADMIN_LISTEN"),
];

/// Runs the binary with `env` added; kills it after `bound` (a `run` that started instead of
/// refusing).
fn run_within(args: &[&str], env: &[(&str, &str)], bound: Duration) -> Output {
    let mut child = util::command()
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn certgate");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() && start.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn run_help_lists_the_gate_flags_with_their_variables() {
    let out = util::certgate(&["run", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let help = texts(&out).0;
    for (flag, var) in GATE_FLAGS {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{flag} "))),
            "run --help lists {flag}\n{help}"
        );
        assert!(help.contains(&format!("[env: {var}=")), "{var}\n{help}");
    }
}

#[test]
fn gate_flag_mistakes_exit_2_naming_the_flag() {
    let h = Hierarchy::shared(Alg::P256);
    let files = Files::of(h, &h.leaf);
    let dir = files.dir.path();
    let publish = dir.join("out").display().to_string();
    let config = write(
        dir,
        "good.toml",
        format!("[[set]]\nname = \"web\"\ncert = \"{}\"\n", files.cert),
    );
    let set = [
        "run",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        &files.cert,
        "--key",
        &files.key,
        "--trust",
        &files.trust,
    ];
    let url = "http://127.0.0.1:9";
    let ok = r#"{namespace="shop"}"#;
    let gated = |extra: &[&'static str]| {
        let mut args: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        args.extend(["--publish-dir", &publish].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let hold = |extra: &[&'static str]| {
        let mut a = vec!["--gate", "hold", "--prometheus-url", url];
        a.extend_from_slice(extra);
        gated(&a)
    };
    let owned = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    type Case = (Vec<String>, Vec<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            hold(&["--gate-verifiers", "shop"]),
            vec![],
            "--gate-verifiers: \"shop\": must start with '{'",
        ),
        (
            {
                let mut a = owned(&set);
                a.extend(owned(&["--gate", "hold", "--gate-verifiers", ok]));
                a.extend(owned(&["--prometheus-url", url]));
                a
            },
            vec![],
            "--gate hold needs --publish-dir",
        ),
        (
            gated(&["--gate", "hold", "--gate-verifiers", ok]),
            vec![],
            "--gate: needs --prometheus-url",
        ),
        (
            gated(&["--gate-verifiers", ok, "--prometheus-url", url]),
            vec![],
            "--gate-verifiers (or its CERTGATE_* variable) needs --gate hold or --gate observe",
        ),
        (hold(&[]), vec![], "--gate-verifiers: name the pods"),
        (
            hold(&[]),
            vec![("CERTGATE_GATE_VERIFIERS", "{namespace=\"shop\"}\nshop")],
            "--gate-verifiers: \"shop\": must start with '{'",
        ),
        (
            gated(&["--gate", "maybe"]),
            vec![],
            "invalid value 'maybe' for '--gate <MODE>'",
        ),
        (
            hold(&["--gate-verifiers", ok, "--gate-unknown-verifiers", "count"]),
            vec![],
            "--gate-unknown-verifiers",
        ),
        (
            hold(&["--gate-verifiers", ok, "--gate-stable-for", "2d"]),
            vec![],
            "--gate-stable-for: must be at most 24h",
        ),
        (
            hold(&["--gate-verifiers", ok, "--gate-stable-for", "soon"]),
            vec![],
            "--gate-stable-for",
        ),
        (
            hold(&[
                "--gate-verifiers",
                ok,
                "--gate-release-before-expiry",
                "100%",
            ]),
            vec![],
            "--gate-release-before-expiry: ",
        ),
        (
            hold(&["--gate-verifiers", r#"{namespace="$CERTGATE_TEST_UNSET"}"#]),
            vec![],
            "--gate-verifiers: ",
        ),
        (
            gated(&["--gate", "hold", "--gate-verifiers", ok])
                .into_iter()
                .chain(owned(&["--prometheus-url", "ftp://prometheus"]))
                .collect(),
            vec![],
            "--prometheus-url \"ftp://prometheus\": must start with http:// or https://",
        ),
        (
            hold(&["--gate-verifiers", ok, "--prometheus-header", "X-Org"]),
            vec![],
            "--prometheus-header: expected 'Name: value'",
        ),
        (
            hold(&["--gate-verifiers", ok, "--prometheus-ca-file", "/ca.crt"]),
            vec![],
            "--prometheus-ca-file is for https:// URLs",
        ),
        (
            hold(&[
                "--gate-verifiers",
                ok,
                "--prometheus-bearer-token-file",
                "/nonexistent/token",
            ]),
            vec![],
            "--prometheus-bearer-token-file /nonexistent/token: ",
        ),
        (
            hold(&["--gate-verifiers", ok, "--fleet-poll-interval", "1ms"]),
            vec![],
            "--fleet-poll-interval: must be between 100ms and 1h",
        ),
        (
            hold(&["--gate-verifiers", ok, "--fleet-query-timeout", "0s"]),
            vec![],
            "--fleet-query-timeout: must be more than 0",
        ),
        (
            hold(&["--gate-verifiers", ok, "--admin-listen", "0.0.0.0:9465"]),
            vec![],
            "--admin-listen: \"0.0.0.0:9465\" is not a loopback address",
        ),
        // With --config the file holds the gate and the query API; --admin-listen overrides
        // [daemon] admin_listen as --listen overrides listen.
        (
            owned(&["run", "--config", &config, "--gate", "observe"]),
            vec![],
            "--gate (or its CERTGATE_* variable) cannot be combined with --config",
        ),
        (
            owned(&["run", "--config", &config]),
            vec![("CERTGATE_GATE_VERIFIERS", ok)],
            "--gate-verifiers (or its CERTGATE_* variable) cannot be combined with --config",
        ),
        (
            owned(&["run", "--config", &config, "--prometheus-url", url]),
            vec![],
            "--prometheus-url (or its CERTGATE_* variable) cannot be combined with --config: \
             the query API settings come from the config file's [fleet] table",
        ),
        (
            owned(&["run", "--config", &config]),
            vec![("CERTGATE_FLEET_JOB", "certgate")],
            "--fleet-job (or its CERTGATE_* variable) cannot be combined with --config",
        ),
        (
            owned(&[
                "run",
                "--config",
                &config,
                "--admin-listen",
                "10.0.0.1:9465",
            ]),
            vec![],
            "--admin-listen: \"10.0.0.1:9465\" is not a loopback address",
        ),
    ];
    for (args, env, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_within(&args, &env, Duration::from_secs(10));
        let (stdout, stderr) = texts(&out);
        let what = format!("{args:?} {env:?}");
        assert_eq!(out.status.code(), Some(2), "{what}\n{}", show(&out));
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(needle), "{what}: names {needle:?}\n{stderr}");
        // clap's own usage errors add a hint line ("For more information, try '--help'.").
        if !first.starts_with("error: invalid value") {
            assert_eq!(stderr.lines().count(), 1, "{what}: one line\n{stderr}");
        }
        assert!(stdout.is_empty(), "{what}: no report\n{stdout}");
    }
}

/// The config `certgate run ARGS` builds, parsed in this process.
fn config_of(args: &[&str]) -> Config {
    let cli = Cli::try_parse_from(std::iter::once("certgate").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Run(run) => run.to_config().unwrap_or_else(|e| panic!("{args:?}: {e}")),
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn gate_flags_make_the_config_the_toml_makes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let (cert, key, trust, publish) = (
        p("src/tls.crt"),
        p("src/tls.key"),
        p("src/ca.crt"),
        p("out"),
    );
    let (released, ca) = (p("released"), p("prometheus-ca.crt"));
    std::fs::write(&ca, Hierarchy::shared(Alg::P256).root.cert_pem.as_bytes()).unwrap();

    let flags = config_of(&[
        "run",
        "--cert",
        &cert,
        "--key",
        &key,
        "--trust",
        &trust,
        "--set-name",
        "web",
        "--publish-dir",
        &publish,
        "--gate",
        "hold",
        "--gate-verifiers",
        r#"{namespace="shop", workload=~"cart|checkout"}"#,
        "--gate-verifiers",
        r#"{namespace="edge", workload="gateway"}"#,
        "--gate-presenters",
        r#"{namespace="shop"}"#,
        "--gate-min-verifiers",
        "2",
        "--gate-expected-verifiers",
        r#"count(kube_pod_info{namespace="shop"})"#,
        "--gate-unknown-verifiers",
        "ignore",
        "--gate-stable-for",
        "2m",
        "--gate-release-before-expiry",
        "20%",
        "--gate-release-file",
        &released,
        "--prometheus-url",
        "https://mimir.monitoring.svc/prometheus",
        "--prometheus-header",
        "X-Scope-OrgID: shop",
        "--prometheus-header",
        "X-Team: web, api",
        "--prometheus-ca-file",
        &ca,
        "--fleet-poll-interval",
        "15s",
        "--fleet-query-timeout",
        "5s",
        "--fleet-job",
        "shop/.*certgate",
        "--admin-listen",
        "127.0.0.1:19465",
    ]);
    let toml = format!(
        r#"[daemon]
admin_listen = "127.0.0.1:19465"

[fleet]
prometheus_url = "https://mimir.monitoring.svc/prometheus"
headers = ["X-Scope-OrgID: shop", "X-Team: web, api"]
ca_file = "{ca}"
poll_interval = "15s"
query_timeout = "5s"
job = "shop/.*certgate"

[[set]]
name = "web"
cert = "{cert}"
key = "{key}"
trust = "{trust}"
publish_dir = "{publish}"
handshake = true

[set.gate]
mode = "hold"
verifiers = ['{{namespace="shop", workload=~"cart|checkout"}}', '{{namespace="edge", workload="gateway"}}']
presenters = ['{{namespace="shop"}}']
min_verifiers = 2
expected_verifiers = 'count(kube_pod_info{{namespace="shop"}})'
unknown_verifiers = "ignore"
stable_for = "2m"
release_before_expiry = "20%"
release_file = "{released}"
"#
    );
    let from_toml = Config::from_toml(&toml).expect("the equivalent TOML");
    assert_eq!(flags, from_toml);
    assert!(flags.sets[0].gate.is_some() && flags.fleet.is_some());

    // The defaults: `--gate observe` in monitor mode, one selector, a URL.
    let flags = config_of(&[
        "run",
        "--cert",
        &cert,
        "--gate",
        "observe",
        "--gate-verifiers",
        r#"{namespace="shop"}"#,
        "--prometheus-url",
        "http://prometheus:9090",
    ]);
    let toml = format!(
        "[fleet]\nprometheus_url = \"http://prometheus:9090\"\n[[set]]\nname = \"default\"\n\
         cert = \"{cert}\"\nhandshake = true\n[set.gate]\nmode = \"observe\"\n\
         verifiers = ['{{namespace=\"shop\"}}']\n"
    );
    assert_eq!(flags, Config::from_toml(&toml).unwrap());

    // `--gate off` is no gate, as `mode = "off"` is; the query API alone is a [fleet] table.
    let off = config_of(&[
        "run",
        "--cert",
        &cert,
        "--gate",
        "off",
        "--prometheus-url",
        "http://prometheus:9090",
    ]);
    let toml = format!(
        "[fleet]\nprometheus_url = \"http://prometheus:9090\"\n[[set]]\nname = \"default\"\n\
         cert = \"{cert}\"\nhandshake = true\n[set.gate]\nmode = \"off\"\n"
    );
    assert_eq!(off, Config::from_toml(&toml).unwrap());
    assert!(off.sets[0].gate.is_none());

    // --admin-listen overrides [daemon] admin_listen of a config file, as --listen does listen.
    let file = dir.path().join("certgate.toml");
    std::fs::write(
        &file,
        toml.replace(
            "[fleet]",
            "[daemon]\nadmin_listen = \"127.0.0.1:1\"\n[fleet]",
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let over = config_of(&["run", "--config", &file, "--admin-listen", "127.0.0.1:2"]);
    assert_eq!(over.daemon.admin_listen.port(), 2);
    assert_eq!(
        config_of(&["run", "--config", &file])
            .daemon
            .admin_listen
            .port(),
        1
    );
}
