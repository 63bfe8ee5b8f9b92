#!/usr/bin/env python3
"""Every metric the alert rules and the dashboard query exists in certgate's live /metrics.

  1. The names: every `certgate_*` and `process_*` name in the expressions of
     charts/certgate/files/certgate-alerts.yaml and in the queries of certgate-dashboard.json
     (panels and variables), and the labels the alerts' annotations print ($labels.X, other
     than the target labels the scrape adds).
  2. The dashboard's queries parse: `promtool check rules` on them as recording rules (Grafana's
     variables filled in).
  3. The live exposition of the binary (build it first: `cargo build --locked`):
     - `certgate run` configured exactly as the chart configures it: the sidecar's environment
       as the chart renders it (ci/all-on-values.yaml, the fleet gate holding included), with
       the source paths pointed at a test PKI made with openssl, the publish dir and admin port
       on this machine, the downward API's POD_NAMESPACE and POD_NAME filled in, the query
       API's token and CA files made here (the gate's release list left missing, as an
       optional ConfigMap that does not exist), and without the workload settings (verify address,
       reload), there being no workload here; it must turn ready (the gate never holds a first
       publish), and its /metrics is read;
     - `certgate demo` (the `demo` feature): the real daemon through a round of rotations, one
       rejected and one swapped back, so that the series that appear only after such events
       (last rotation per outcome, workload verification) are there; its /metrics is read;
     - `certgate run --config` with a gated set (`[set.gate]`, the fleet gate's series exist
       only for such a set) and `[fleet] prometheus_url` pointing at a stub query API here that
       answers every query with no rows: its source then moves to a leaf from a second root,
       which the gate holds (no verifier seen: `min_verifiers` is not met), so that the series
       that exist only while holding and after an answer (hold start, deadline, verifiers by
       status, last success) are there; its /metrics is read while it holds.
  Any name or label used but absent from all three is listed, with where it is used, and fails.

    python3 .ci/metrics-check.py [BINARY]      # default: target/debug/certgate
"""

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "certgate")
RULES = os.path.join(CHART, "files", "certgate-alerts.yaml")
DASHBOARD = os.path.join(CHART, "files", "certgate-dashboard.json")
NAME = re.compile(r"\b((?:certgate|process)_[A-Za-z0-9_]+)\b")
# Labels Prometheus or the PodMonitor add to every series of a target.
TARGET_LABELS = {"namespace", "pod", "workload", "job", "instance", "container", "endpoint",
                 "service"}
GRAFANA_VARS = {"$namespace": ".*", "$set": ".*", "$__rate_interval": "1m", "$__range": "5m"}
WAIT = 60  # seconds, for readiness and for the demo's round


def used_names():
    """{name: [where]}, {alert: (names in its expr, labels its annotations print)},
    [(where, query)] of the dashboard."""
    names, alerts, queries = {}, {}, []
    with open(RULES) as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            where = f"alert {rule['alert']}" if "alert" in rule else f"record {rule['record']}"
            found = set(NAME.findall(rule["expr"]))
            for n in found:
                names.setdefault(n, []).append(where)
            text = " ".join(str(v) for v in (rule.get("annotations") or {}).values())
            printed = set(re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text)) - TARGET_LABELS
            alerts[where] = (found, printed)
    with open(DASHBOARD) as f:
        dash = json.load(f)
    for panel in dash["panels"]:
        for t in panel.get("targets") or []:
            queries.append((f"panel {panel['title']!r}", t["expr"]))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(q, str) and var.get("type") == "query":
            m = re.match(r"label_values\((.*),\s*[A-Za-z_]+\)$", q.strip())
            queries.append((f"variable ${var['name']}", m.group(1) if m else q))
    for where, q in queries:
        for n in set(NAME.findall(q)):
            names.setdefault(n, []).append(f"dashboard {where}")
    return names, alerts, queries


def promtool_parses(queries):
    """The dashboard's queries parse as PromQL (promtool check rules)."""
    if not shutil.which("promtool"):
        print("FAIL: promtool not found (apt-get install prometheus)")
        return False
    rules = []
    for i, (where, q) in enumerate(queries):
        for var, value in GRAFANA_VARS.items():
            q = q.replace(var, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": q, "labels": {"from": where}})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    try:
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    ok = r.returncode == 0
    print(f"{'ok' if ok else 'FAIL'}: the dashboard's {len(queries)} queries parse (promtool check rules)")
    if not ok:
        print(r.stdout + r.stderr)
    return ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return None, ""


def exposition(text):
    """{sample or family name: [label-name sets]} of a Prometheus text exposition."""
    series = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            series.setdefault(line.split()[2], [])
        elif line and not line.startswith("#"):
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s", line)
            if m:
                labels = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(3) or ""))
                series.setdefault(m.group(1), []).append(labels)
    return series


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_pki(tmp, names):
    """A CA and a leaf covering `names`, both P-256, made with openssl."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=certgate CI CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tmp)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "tls.key", "-out", "leaf.csr", "-subj", f"/CN={names[0]}", cwd=tmp)
    with open(os.path.join(tmp, "leaf.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n"
                f"subjectAltName={','.join('DNS:' + n for n in names)}\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "tls.crt", "-days", "20", "-extfile", "leaf.ext", cwd=tmp)
    os.chmod(os.path.join(tmp, "tls.key"), 0o600)


def chart_sidecar_env():
    """The certgate container's environment as the chart renders it (ci/all-on-values.yaml)."""
    import helm_python as helm
    with open(os.path.join(CHART, "ci", "all-on-values.yaml")) as f:
        values = helm.values_from_yaml(f.read())
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name="demo", namespace="shop")
    for template, text in out.items():
        if not template.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "Deployment":
                pod = doc["spec"]["template"]["spec"]
                for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                    if c["name"] == "certgate":
                        return c.get("args") or [], {e["name"]: e["value"] if "value" in e
                                                     else downward_api(e) for e in c.get("env") or []}
    sys.exit("metrics-check: the chart rendered no certgate container")


def downward_api(var):
    """What the kubelet would give a variable from the downward API in the chart's pod."""
    field = ((var.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    pod = {"metadata.namespace": "shop", "metadata.name": "demo-certgate-example-0"}
    if field not in pod:
        sys.exit(f"metrics-check: {var['name']} comes from {var.get('valueFrom')!r}, not known here")
    return pod[field]


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scrape_run(binary, tmp):
    """`certgate run` with the chart's environment; its /metrics once ready."""
    args, env = chart_sidecar_env()
    names = [n for n in env.get("CERTGATE_NAMES", "certgate.test").split(",") if n]
    pki = os.path.join(tmp, "source")
    os.makedirs(pki)
    test_pki(pki, names)
    port = free_port()
    dropped = [k for k in env if k.startswith(("CERTGATE_VERIFY_", "CERTGATE_RELOAD_"))]
    for k in dropped:
        del env[k]
    # The files the pod mounts for the fleet gate's query API (a token Secret, a CA ConfigMap)
    # are made here: the gate reads them at start, and asks nothing while nothing is held.
    if "CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE" in env:
        token = os.path.join(tmp, "prometheus-token")
        with open(token, "w") as f:
            f.write("certgate-ci-token\n")
        env["CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE"] = token
    if "CERTGATE_PROMETHEUS_CA_FILE" in env:
        env["CERTGATE_PROMETHEUS_CA_FILE"] = os.path.join(pki, "ca.crt")
    if "CERTGATE_GATE_RELEASE_FILE" in env:
        # An optional ConfigMap that does not exist: the file is missing and releases nothing.
        env["CERTGATE_GATE_RELEASE_FILE"] = os.path.join(tmp, "gate-release", "released")
    env.update({
        "CERTGATE_CERT": os.path.join(pki, "tls.crt"),
        "CERTGATE_KEY": os.path.join(pki, "tls.key"),
        "CERTGATE_TRUST": os.path.join(pki, "ca.crt"),
        "CERTGATE_PUBLISH_DIR": os.path.join(tmp, "publish"),
        "CERTGATE_LISTEN": f"127.0.0.1:{port}",
    })
    print(f"certgate {' '.join(args)} with the chart's environment (without {', '.join(dropped) or 'nothing'}):")
    for k in sorted(env):
        print(f"  {k}={env[k]}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CERTGATE_")}
    log = open(os.path.join(tmp, "run.log"), "w+")
    proc = subprocess.Popen([binary, *args], env={**base, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            status, _ = get(f"http://127.0.0.1:{port}/readyz")
            if status == 200:
                break
            time.sleep(0.2)
        healthz, _ = get(f"http://127.0.0.1:{port}/healthz")
        _, metrics = get(f"http://127.0.0.1:{port}/metrics")
        # Then a source it must refuse (a key that is not the leaf's): the refusal's series,
        # with its reason, exist only while it lasts.
        if status == 200:
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", "other.key", cwd=pki)
            os.replace(os.path.join(pki, "other.key"), os.path.join(pki, "tls.key"))
            refused = ""
            while time.monotonic() < deadline and proc.poll() is None:
                _, text = get(f"http://127.0.0.1:{port}/metrics")
                if re.search(r'^certgate_source_rejected\{[^}]*reason="[^"]+"[^}]*\} 1', text, re.M):
                    refused = text
                    break
                time.sleep(0.2)
            if not refused:
                print("FAIL: certgate run did not report the refused source (certgate_source_rejected)")
                status = None
            metrics += refused
    finally:
        stop(proc)
    log.seek(0)
    ok = status == 200 and healthz == 200 and bool(metrics)
    print(f"{'ok' if ok else 'FAIL'}: certgate run with the chart's environment: /readyz {status}, "
          f"/healthz {healthz}, /metrics {len(metrics)} bytes")
    if env.get("CERTGATE_GATE") in ("hold", "observe"):
        # The chart turned the gate on: the set is gated, and ready without a query (the gate
        # never holds a first publish; the query API's address does not resolve here).
        gated = re.search(r'^certgate_gate_holding\{kind="leaf",set="%s"\} 0' %
                          re.escape(env.get("CERTGATE_SET_NAME", "")), metrics, re.M)
        print(f"{'ok' if gated else 'FAIL'}: the chart's gate (CERTGATE_GATE={env['CERTGATE_GATE']}) "
              f"gates the set, which turned ready without holding")
        ok = ok and bool(gated)
    if not ok:
        print("  its log:\n" + "".join("    " + line for line in log.read().splitlines(True)[-30:]))
    return ok, exposition(metrics)


def scrape_demo(binary, tmp):
    """`certgate demo` after a round with a rejection and a swap-back; its /metrics."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CERTGATE_")}
    log = open(os.path.join(tmp, "demo.log"), "w+")
    proc = subprocess.Popen([binary, "demo", "--listen", f"127.0.0.1:{port}", "--every", "1s"],
                            env={**base, "TMPDIR": tmp}, stdout=log, stderr=subprocess.STDOUT)
    metrics = ""
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and proc.poll() is None:
            _, text = get(f"http://127.0.0.1:{port}/metrics")
            if re.search(r'^certgate_rotations_total\{[^}]*outcome="rolled_back"[^}]*\} [1-9]', text, re.M) \
                    and re.search(r'^certgate_rotations_total\{[^}]*outcome="rejected"[^}]*\} [1-9]', text, re.M):
                metrics = text
                break
            time.sleep(0.5)
    finally:
        stop(proc)
    log.seek(0)
    if not metrics:
        out = log.read()
        if "unrecognized subcommand" in out or "demo" in out and "feature" in out:
            print("note: this binary has no `demo` (built --no-default-features); event-only series unchecked")
        else:
            print("FAIL: certgate demo did not complete a round with a rejection and a swap-back:\n" + out[-3000:])
        return False, {}
    print(f"ok: certgate demo: a round with a rejection and a swap-back, /metrics {len(metrics)} bytes")
    return True, exposition(metrics)


class EmptyQueryApi(http.server.BaseHTTPRequestHandler):
    """A query API that knows no series: every instant query answers an empty vector."""

    queries = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/api/v1/query":
            self.send_error(404)
            return
        type(self).queries += 1
        body = json.dumps({"status": "success",
                           "data": {"resultType": "vector", "result": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def scrape_gate(binary, tmp):
    """`certgate run --config` with a gated set, holding a leaf from a new root; its /metrics."""
    gate = os.path.join(tmp, "gate")
    src, old, new = (os.path.join(gate, d) for d in ("source", "old", "new"))
    for d in (src, old, new):
        os.makedirs(d)
    names = ["gated.certgate.test"]
    test_pki(old, names)
    test_pki(new, names)
    for f in ("tls.crt", "tls.key", "ca.crt"):
        shutil.copy2(os.path.join(old, f), os.path.join(src, f))
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EmptyQueryApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    port = free_port()
    config = os.path.join(gate, "certgate.toml")
    with open(config, "w") as f:
        f.write(f"""[daemon]
settle = "100ms"

[fleet]
prometheus_url = "http://127.0.0.1:{api.server_address[1]}"
poll_interval = "500ms"

[[set]]
name = "gated"
cert = "{os.path.join(src, 'tls.crt')}"
key = "{os.path.join(src, 'tls.key')}"
trust = "{os.path.join(src, 'ca.crt')}"
names = {json.dumps(names)}
publish_dir = "{os.path.join(gate, 'publish')}"

[set.gate]
mode = "hold"
verifiers = ['{{namespace="certgate-ci"}}']
""")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CERTGATE_")}
    log = open(os.path.join(tmp, "gate.log"), "w+")
    proc = subprocess.Popen([binary, "run", "--config", config, "--listen", f"127.0.0.1:{port}"],
                            env=base, stdout=log, stderr=subprocess.STDOUT)
    metrics, declared = "", False
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and proc.poll() is None:
            status, text = get(f"http://127.0.0.1:{port}/metrics")
            if status == 200 and re.search(r'^certgate_gate_holding\{kind="leaf",set="gated"\} 0', text, re.M):
                declared = True
                break
            time.sleep(0.2)
        if declared:
            # The CA rotates: the new root joins the bundle, the leaf comes from it. The bundle
            # goes out with the live leaf; the leaf is held, and no verifier is ever seen.
            with open(os.path.join(gate, "both.crt"), "w") as f:
                for d in (old, new):
                    with open(os.path.join(d, "ca.crt")) as ca:
                        f.write(ca.read())
            os.replace(os.path.join(gate, "both.crt"), os.path.join(src, "ca.crt"))
            for f in ("tls.key", "tls.crt"):
                shutil.copy2(os.path.join(new, f), os.path.join(gate, f))
                os.replace(os.path.join(gate, f), os.path.join(src, f))
        while declared and time.monotonic() < deadline and proc.poll() is None:
            _, text = get(f"http://127.0.0.1:{port}/metrics")
            if re.search(r'^certgate_gate_holding\{kind="leaf",set="gated"\} 1', text, re.M) \
                    and re.search(r'^certgate_gate_last_success_timestamp_seconds\{', text, re.M) \
                    and re.search(r'^certgate_gate_verifiers\{', text, re.M):
                metrics = text
                break
            time.sleep(0.2)
    finally:
        stop(proc)
        api.shutdown()
        api.server_close()
    log.seek(0)
    ok = bool(metrics)
    print(f"{'ok' if ok else 'FAIL'}: certgate run --config with a gated set: series declared at "
          f"start {'yes' if declared else 'NO'}, a hold with answers "
          f"({EmptyQueryApi.queries} queries) {'seen' if ok else 'NOT SEEN'}, /metrics {len(metrics)} bytes")
    if not ok:
        print("  its log:\n" + "".join("    " + line for line in log.read().splitlines(True)[-30:]))
    return ok, exposition(metrics)


def main():
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "certgate")
    if not os.access(binary, os.X_OK):
        sys.exit(f"metrics-check: no binary at {binary} (cargo build --locked)")
    names, alerts, queries = used_names()
    print(f"metrics-check: {len(names)} metric names used by the alert rules and the dashboard")
    failed = not promtool_parses(queries)

    with tempfile.TemporaryDirectory(prefix="certgate-metrics-") as tmp:
        run_ok, run_series = scrape_run(binary, tmp)
        demo_ok, demo_series = scrape_demo(binary, tmp)
        gate_ok, gate_series = scrape_gate(binary, tmp)
    failed |= not run_ok or not demo_ok or not gate_ok
    live = {}
    for series in (run_series, demo_series, gate_series):
        for name, sets in series.items():
            live.setdefault(name, []).extend(sets)

    missing = sorted(n for n in names if n not in live)
    for n in sorted(names):
        src = ("run" if n in run_series else "demo only" if n in demo_series
               else "gated run only" if n in gate_series else "MISSING")
        print(f"  {'ok' if n in live else 'MISSING'}: {n} ({src}; used by {', '.join(sorted(set(names[n])))})")
    label_gaps = []
    for where, (found, printed) in sorted(alerts.items()):
        present = [n for n in found if n in live]
        for label in sorted(printed):
            if present and not any(label in s for n in present for s in live[n]):
                label_gaps.append((where, label, sorted(found)))
    for where, label, found in label_gaps:
        print(f"  MISSING label: {where} prints $labels.{label}, which no live series of {', '.join(found)} has")
    if missing or label_gaps:
        print("\nmetrics-check: used by the alerts or the dashboard, absent from the live /metrics:")
        for n in missing:
            print(f"  {n}")
        for where, label, found in label_gaps:
            print(f"  label {label!r} ({where}: {', '.join(found)})")
        failed = True
    checked = len(names) + sum(len(p) for _, p in alerts.values())
    print(f"metrics-check: {checked - len(missing) - len(label_gaps)} passed, "
          f"{len(missing) + len(label_gaps)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
