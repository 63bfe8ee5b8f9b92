#!/usr/bin/env python3
"""Renders charts/certgate with Helm's own engine and checks what comes out.

Helm v4 comes embedded in the PyPI wheel `helm-python-sdk` (module `helm_python`):
`Chart.load(dir).render(values, name=..., namespace=...)` is `helm template`, offline, with the
chart's values.schema.json enforced. Rendered:

  default values              the chart as shipped (no object: everything is opt-in)
  ci/all-on-values.yaml       every optional part: example workload with the pre-flight and the
                              native sidecar, PodMonitor, PrometheusRule (own runbook base),
                              dashboard, the fleet gate holding (https, token, CA)
  ci/classic-values.yaml      the classic sidecar with its pre-flight
  application chart           a chart built from charts/certgate/README.md as a reader would:
                              its Chart.yaml dependency, its `certgate:` values, its pod
                              template; with the pre-flight on, as the project README shows

and then:
  * every object is validated against the Kubernetes OpenAPI schemas of 1.29 to the newest
    release `kubernetes-validate` ships, strict (an unknown field fails); PodMonitor and
    PrometheusRule against the Prometheus Operator CRD schemas in .ci/crd-schemas/;
  * each pod: certgate a native sidecar (restartPolicy Always under initContainers) or, when
    asked, a classic container; probes on /healthz and /readyz with the README's timings; a
    restricted security context; the publish volume an in-memory emptyDir, read-only for the
    workload; the pre-flight `certgate check` before the sidecar; POD_NAMESPACE and POD_NAME
    from the downward API; the gate's and query API's CERTGATE_* variables when set (and none
    while the gate is off), the token Secret and CA ConfigMap mounted where they point;
  * the PrometheusRule is the promtool-tested rules file, each runbook_url absolute under the
    configured base; the dashboard ConfigMap holds the dashboard file;
  * the project README's plain-YAML pod and the application chart's pod agree: everything the
    README shows is what the chart renders, and every container and volume is shown;
  * each values file in ci/invalid/ fails the render with Helm's schema message at the path
    its `# expect:` line names (and lint reports it).

    python3 .ci/chart-render.py [-v]      # -v: print the rendered manifests
"""

import functools
import glob
import json
import os
import re
import shutil
import sys
import tempfile

import yaml

try:
    import helm_python as helm
    import kubernetes_validate.utils as kv
    from packaging.version import Version
    from referencing import Registry, Resource
    import jsonschema
except ImportError as e:
    sys.exit(f"chart-render: {e}: python3 -m pip install -r .ci/requirements.txt")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "certgate")
README = os.path.join(ROOT, "README.md")
CHART_README = os.path.join(CHART, "README.md")
CRD_DIR = os.path.join(ROOT, ".ci", "crd-schemas")
OLDEST_KUBE = "1.29"
RELEASE, NAMESPACE = "demo", "shop"

# Custom resources the chart renders and the vendored schema of each.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.monitoring.coreos.com-v1.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com-v1.yaml",
}
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Pod Security Standards, restricted: the volume types it allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
SOURCE_ENV = ["CERTGATE_SET_NAME", "CERTGATE_CERT", "CERTGATE_KEY", "CERTGATE_TRUST",
              "CERTGATE_NAMES", "CERTGATE_USAGE", "CERTGATE_MIN_REMAINING"]


class Checks:
    """Counts checks; keeps the failures to print them again at the end."""

    def __init__(self):
        self.passed = 0
        self.failures = []

    def ok(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failures.append(f"{what}{': ' + detail if detail else ''}")
            print(f"  FAIL {what}{': ' + detail if detail else ''}")
        return cond


CHECK = Checks()


# --- schemas -------------------------------------------------------------------------------

# kubernetes-validate reads its schema files again for every object; the same few files serve
# every object here, so keep them parsed (the validation itself is the library's).
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def kube_versions():
    """The Kubernetes releases to validate against: OLDEST_KUBE to the newest shipped."""
    return sorted({v for v in kv.all_versions() if Version(v) >= Version(OLDEST_KUBE)}, key=Version)


def strict_schema(node):
    """A CRD's structural openAPIV3Schema as a JSON Schema that refuses unknown fields, the way
    `kubectl apply --validate=strict` does: an object with `properties` gets
    additionalProperties: false unless it has x-kubernetes-preserve-unknown-fields."""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("default", "format", "description"):
            continue
        if key == "properties":
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key == "pattern":
            # Go's RE2 takes flags anywhere (`^(?i)...`); Python's re only at the start.
            out[key] = re.sub(r"^\^\(\?([a-z]+)\)", r"(?\1)^", value)
        else:
            out[key] = strict_schema(value)
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def crd_validator(api_version, kind, kube):
    with open(os.path.join(CRD_DIR, CRD_SCHEMAS[(api_version, kind)])) as f:
        schema = strict_schema(yaml.safe_load(f))
    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    defs = kv.schema_contents(f"kubernetes-json-schema/v{kube}-local-strict/_definitions.json", kube)
    registry = Resource.from_contents(defs) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_object(label, obj):
    """Every Kubernetes release from OLDEST_KUBE on, strict."""
    api, kind = obj.get("apiVersion"), obj.get("kind")
    name = f"{kind}/{obj.get('metadata', {}).get('name')}"
    versions = kube_versions()
    errors = {}  # message -> the releases that gave it
    for kube in versions:
        if (api, kind) in CRD_SCHEMAS:
            for err in crd_validator(api, kind, kube).iter_errors(obj):
                errors.setdefault(f"{'.'.join(map(str, err.absolute_path))}: {err.message}", []).append(kube)
            continue
        try:
            kv.validate(obj, kube, strict=True)
        except kv.ValidationError as err:
            errors.setdefault(f"{'.'.join(map(str, err.path))}: {err.message}", []).append(kube)
        except kv.SchemaNotFoundError as err:
            errors.setdefault(err.message, []).append(kube)
    against = "Prometheus Operator CRD schema" if (api, kind) in CRD_SCHEMAS else "OpenAPI schema"
    CHECK.ok(not errors, f"{label}: {name} valid against the Kubernetes {versions[0]} to "
             f"{versions[-1]} {against} (strict)",
             "; ".join(f"[{k[0]}{' to ' + k[-1] if len(k) > 1 else ''}] {m}" for m, k in errors.items()))


# --- rendering -----------------------------------------------------------------------------

def render(chart_dir, values, release=RELEASE):
    with helm.Chart.load(chart_dir) as chart:
        out = chart.render(values, name=release, namespace=NAMESPACE)
    objects = []
    for template, text in sorted(out.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append((template, doc))
    return objects, out


def values_file(path):
    with open(path) as f:
        return helm.values_from_yaml(f.read())


def chart_defaults():
    with open(os.path.join(CHART, "values.yaml")) as f:
        return yaml.safe_load(f)


def dig(values, *keys, default=None):
    for key in keys:
        if not isinstance(values, dict) or key not in values:
            return default
        values = values[key]
    return values


# --- the READMEs ---------------------------------------------------------------------------

def yaml_blocks(path):
    with open(path) as f:
        return re.findall(r"```yaml\n(.*?)```", f.read(), re.S)


def readme_pod():
    """The project README's plain-YAML pod spec (the block after '**In plain YAML**')."""
    with open(README) as f:
        text = f.read()
    at = text.find("**In plain YAML**")
    block = re.search(r"```yaml\n(.*?)```", text[at:], re.S) if at >= 0 else None
    if not block:
        sys.exit("chart-render: README.md has no '**In plain YAML**' example")
    return yaml.safe_load(block.group(1))["spec"]


def readme_helm_snippet():
    """The project README's Helm snippet (the block with `include "certgate.initContainers"`)."""
    for block in yaml_blocks(README):
        if 'include "certgate.initContainers"' in block:
            return block
    sys.exit("chart-render: README.md shows no certgate.initContainers include")


def application_chart(tmp):
    """The application chart charts/certgate/README.md tells a reader to write: its Chart.yaml
    dependency, its values.yaml (`certgate:`), its pod template, with certgate in charts/."""
    blocks = yaml_blocks(CHART_README)
    dep = next((b for b in blocks if b.lstrip().startswith("dependencies:")), None)
    values = next((b for b in blocks if b.lstrip().startswith("certgate:")), None)
    pod = next((b for b in blocks if 'include "certgate.initContainers"' in b), None)
    if not (dep and values and pod):
        sys.exit("chart-render: charts/certgate/README.md lacks the dependency, values or pod example")
    app = os.path.join(tmp, "web")
    os.makedirs(os.path.join(app, "templates"))
    meta = {"apiVersion": "v2", "name": "web", "version": "1.0.0", **yaml.safe_load(dep)}
    with open(os.path.join(app, "Chart.yaml"), "w") as f:
        yaml.safe_dump(meta, f)
    with open(os.path.join(app, "values.yaml"), "w") as f:
        f.write(values)
    with open(os.path.join(app, "templates", "deployment.yaml"), "w") as f:
        f.write("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
                "  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n"
                "      labels:\n        app: web\n" + pod)
    shutil.copytree(CHART, os.path.join(app, "charts", "certgate"))
    return app, meta


def subset(shown, real, path, errors):
    """Everything `shown` (the README) says is in `real` (the chart's output). Lists of named
    items (containers, env, volumes, mounts, ports) match by name, in the same order."""
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            errors.append(f"{path}: the README shows a mapping, the chart renders {real!r}")
            return
        for key, value in shown.items():
            if key not in real:
                errors.append(f"{path}.{key}: shown in the README, not rendered by the chart")
            else:
                subset(value, real[key], f"{path}.{key}", errors)
    elif isinstance(shown, list) and all(isinstance(x, dict) and "name" in x for x in shown):
        real = real if isinstance(real, list) else []
        names = [x.get("name") for x in real if isinstance(x, dict)]
        at = []
        for item in shown:
            if item["name"] not in names:
                errors.append(f"{path}: {item['name']} shown in the README, not rendered by the chart")
                continue
            at.append(names.index(item["name"]))
            subset(item, real[names.index(item["name"])], f"{path}[{item['name']}]", errors)
        if at != sorted(at):
            errors.append(f"{path}: the README's order {[x['name'] for x in shown]} is not the chart's {names}")
    elif shown != real:
        errors.append(f"{path}: the README shows {shown!r}, the chart renders {real!r}")


# --- pod checks ----------------------------------------------------------------------------

def by_name(items):
    return {c["name"]: c for c in items or []}


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def restricted(label, c, pod):
    """Pod Security Standards, restricted (container level, pod level as fallback), plus a
    read-only root filesystem."""
    sc, psc = c.get("securityContext") or {}, pod.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    problems = []
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        problems.append("privileged")
    if "ALL" not in (caps.get("drop") or []):
        problems.append("capabilities.drop lacks ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append(f"capabilities.add {caps.get('add')}")
    if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not true")
    if sc.get("runAsUser", psc.get("runAsUser")) == 0:
        problems.append("runAsUser 0")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"seccompProfile {seccomp}")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    CHECK.ok(not problems, f"{label}: container {c['name']} has a restricted security context",
             ", ".join(problems))


def check_pod(label, pod, values, readme, whole_pod):
    """`values`: the certgate values the pod was rendered with (merged over the defaults)."""
    mode, preflight = values["sidecar"]["mode"], values["preflight"]["enabled"]
    publish, source = values["publish"]["mountPath"], values["source"]["mountPath"]
    init, main = by_name(pod.get("initContainers")), by_name(pod.get("containers"))
    init_order = [c["name"] for c in pod.get("initContainers") or []]

    if mode == "native":
        c = init.get("certgate")
        CHECK.ok(c is not None and c.get("restartPolicy") == "Always" and "certgate" not in main,
                 f"{label}: certgate is a native sidecar (initContainers, restartPolicy: Always)")
    else:
        c = main.get("certgate")
        CHECK.ok(c is not None and "restartPolicy" not in c and "certgate" not in init,
                 f"{label}: certgate is a classic sidecar (containers, no restartPolicy)")
    if c is None:
        return
    CHECK.ok((c.get("args") or [None])[0] == "run" and "command" not in c,
             f"{label}: the sidecar runs `certgate run` (image entrypoint)", repr(c.get("args")))

    # Probes: the paths, and the README's exact timings.
    ports = {p.get("name") for p in c.get("ports") or []}
    paths = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    shown = by_name(readme.get("initContainers")).get("certgate", {})
    for probe, path in paths.items():
        p = c.get(probe) or {}
        get = p.get("httpGet") or {}
        CHECK.ok(get.get("path") == path and get.get("port") in ports,
                 f"{label}: {probe} is an HTTP GET of {path} on the admin port", repr(p))
        CHECK.ok(p == shown.get(probe), f"{label}: {probe} has the README's timings",
                 f"chart {p!r}, README {shown.get(probe)!r}")
    restricted(label, c, pod)

    # Volumes: the in-memory publish dir, the read-only source.
    volumes = by_name(pod.get("volumes"))
    pub = volumes.get("certgate-publish", {})
    CHECK.ok((pub.get("emptyDir") or {}).get("medium") == "Memory"
             and (pub.get("emptyDir") or {}).get("sizeLimit") == values["publish"]["sizeLimit"],
             f"{label}: the publish volume is an emptyDir with medium: Memory and the sizeLimit",
             repr(pub))
    CHECK.ok("certgate-source" in volumes, f"{label}: the source volume exists")
    mounts = by_name(c.get("volumeMounts"))
    CHECK.ok(mounts.get("certgate-publish", {}).get("mountPath") == publish
             and not mounts.get("certgate-publish", {}).get("readOnly"),
             f"{label}: certgate writes the publish dir at {publish}")
    CHECK.ok(mounts.get("certgate-source", {}).get("mountPath") == source
             and mounts.get("certgate-source", {}).get("readOnly") is True,
             f"{label}: certgate reads the source read-only at {source}")
    readers = [w for w in pod.get("containers") or [] if w["name"] != "certgate"]
    for w in readers:
        m = by_name(w.get("volumeMounts")).get("certgate-publish")
        CHECK.ok(m is not None and m.get("readOnly") is True and m.get("mountPath") == publish,
                 f"{label}: workload {w['name']} reads the publish dir read-only")
    env = env_of(c)
    CHECK.ok(env.get("CERTGATE_PUBLISH_DIR") == publish,
             f"{label}: the sidecar publishes where the volume is mounted", repr(env.get("CERTGATE_PUBLISH_DIR")))

    check_gate(label, c, pod, values)

    # The pre-flight: `certgate check` on the same material, before the sidecar.
    pre = init.get("certgate-preflight")
    if not preflight:
        CHECK.ok(pre is None, f"{label}: no pre-flight when preflight.enabled is false")
    elif CHECK.ok(pre is not None, f"{label}: the pre-flight init container is rendered"):
        CHECK.ok(pre.get("args") == ["check"] and "command" not in pre,
                 f"{label}: the pre-flight runs `certgate check` (image entrypoint, args [check])",
                 f"command {pre.get('command')!r}, args {pre.get('args')!r}")
        CHECK.ok("restartPolicy" not in pre, f"{label}: the pre-flight runs to completion (no restartPolicy)")
        if mode == "native":
            CHECK.ok(init_order.index("certgate-preflight") < init_order.index("certgate"),
                     f"{label}: the pre-flight runs before the native sidecar", repr(init_order))
        CHECK.ok(pre.get("image") == c.get("image"), f"{label}: the pre-flight uses certgate's image")
        penv = env_of(pre)
        same = {k: env.get(k) for k in SOURCE_ENV if k in env or k in penv}
        CHECK.ok(same == {k: penv.get(k) for k in same},
                 f"{label}: the pre-flight checks the material the sidecar gates (same CERTGATE_* source settings)",
                 f"pre-flight {penv!r}, sidecar {same!r}")
        CHECK.ok(pre.get("terminationMessagePolicy") == "FallbackToLogsOnError",
                 f"{label}: the pre-flight's failure shows as the termination message")
        pm = by_name(pre.get("volumeMounts"))
        CHECK.ok(set(pm) == {"certgate-source"} and pm["certgate-source"].get("readOnly") is True,
                 f"{label}: the pre-flight mounts only the source, read-only", repr(pm))
        restricted(label, pre, pod)

    # Pod level, restricted: no host namespaces, no host paths or ports.
    host = [k for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    kinds = {k for v in pod.get("volumes") or [] for k in v if k != "name"}
    hostports = [p for x in (pod.get("containers") or []) + (pod.get("initContainers") or [])
                 for p in x.get("ports") or [] if p.get("hostPort")]
    CHECK.ok(not host and kinds <= RESTRICTED_VOLUMES and not hostports,
             f"{label}: the pod uses no host namespace, host path or host port",
             f"{host} {kinds - RESTRICTED_VOLUMES} {hostports}")
    if whole_pod:
        for x in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            if x["name"] not in ("certgate", "certgate-preflight"):
                restricted(label, x, pod)


def check_gate(label, c, pod, values):
    """The fleet gate's settings reach the sidecar as the variables `certgate run` reads, only
    when set; the pod's namespace and name always do (selectors expand $POD_NAMESPACE)."""
    env = {e["name"]: e for e in c.get("env") or []}
    for var, field in (("POD_NAMESPACE", "metadata.namespace"), ("POD_NAME", "metadata.name")):
        got = (((env.get(var) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        CHECK.ok(got == field, f"{label}: the sidecar has {var} from the downward API ({field})",
                 repr(env.get(var)))
    value = {k: e.get("value") for k, e in env.items()}
    gate, fleet = values["gate"], values["fleet"]
    on = str(gate["mode"]) in ("hold", "observe")
    gate_vars = sorted(k for k in value if k.startswith(("CERTGATE_GATE", "CERTGATE_PROMETHEUS_",
                                                          "CERTGATE_FLEET_")))
    if not on and not fleet["prometheusUrl"]:
        CHECK.ok(not gate_vars, f"{label}: no gate or query API variable while the gate is off",
                 repr(gate_vars))
        return
    if on:
        CHECK.ok(value.get("CERTGATE_GATE") == gate["mode"],
                 f"{label}: CERTGATE_GATE is gate.mode", repr(value.get("CERTGATE_GATE")))
        CHECK.ok(value.get("CERTGATE_GATE_VERIFIERS") == "\n".join(gate["verifiers"])
                 and len(gate["verifiers"]) >= 1,
                 f"{label}: CERTGATE_GATE_VERIFIERS holds gate.verifiers, one per line",
                 repr(value.get("CERTGATE_GATE_VERIFIERS")))
        for key, var in (("presenters", "CERTGATE_GATE_PRESENTERS"),):
            want = "\n".join(gate[key]) or None
            CHECK.ok(value.get(var) == want, f"{label}: {var} is gate.{key}", repr(value.get(var)))
        for key, var in (("expectedVerifiers", "CERTGATE_GATE_EXPECTED_VERIFIERS"),
                         ("unknownVerifiers", "CERTGATE_GATE_UNKNOWN_VERIFIERS"),
                         ("stableFor", "CERTGATE_GATE_STABLE_FOR"),
                         ("releaseBeforeExpiry", "CERTGATE_GATE_RELEASE_BEFORE_EXPIRY")):
            CHECK.ok(value.get(var) == (gate[key] or None), f"{label}: {var} is gate.{key}",
                     repr(value.get(var)))
        want = None if gate["minVerifiers"] is None else str(gate["minVerifiers"])
        CHECK.ok(value.get("CERTGATE_GATE_MIN_VERIFIERS") == want,
                 f"{label}: CERTGATE_GATE_MIN_VERIFIERS is gate.minVerifiers",
                 repr(value.get("CERTGATE_GATE_MIN_VERIFIERS")))
    else:
        CHECK.ok(not [k for k in gate_vars if k.startswith("CERTGATE_GATE")],
                 f"{label}: no gate variable while the gate is off", repr(gate_vars))
    CHECK.ok(value.get("CERTGATE_PROMETHEUS_URL") == fleet["prometheusUrl"],
             f"{label}: CERTGATE_PROMETHEUS_URL is fleet.prometheusUrl",
             repr(value.get("CERTGATE_PROMETHEUS_URL")))
    CHECK.ok(value.get("CERTGATE_PROMETHEUS_HEADERS") == ("\n".join(fleet["headers"]) or None),
             f"{label}: CERTGATE_PROMETHEUS_HEADERS holds fleet.headers, one per line",
             repr(value.get("CERTGATE_PROMETHEUS_HEADERS")))
    # A Secret or ConfigMap named in the values is mounted read-only where the variable points;
    # the release list is optional (a missing one releases nothing).
    mounts = by_name(c.get("volumeMounts"))
    volumes = by_name(pod.get("volumes"))
    release = gate["releaseConfigMap"] if on else {"name": ""}
    for key, var, volume, kind, field in (
            ("bearerTokenSecret", "CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE", "certgate-fleet-token",
             "secret", "secretName"),
            ("caConfigMap", "CERTGATE_PROMETHEUS_CA_FILE", "certgate-fleet-ca", "configMap", "name"),
            ("releaseConfigMap", "CERTGATE_GATE_RELEASE_FILE", "certgate-gate-release", "configMap",
             "name")):
        ref = release if key == "releaseConfigMap" else fleet[key]
        if not ref["name"]:
            CHECK.ok(volume not in mounts and volume not in volumes,
                     f"{label}: no {volume} volume without {key}.name (or with the gate off)")
            continue
        m = mounts.get(volume) or {}
        src = (volumes.get(volume) or {}).get(kind) or {}
        CHECK.ok(m.get("readOnly") is True and src.get(field) == ref["name"]
                 and value.get(var) == f"{m.get('mountPath')}/{ref['key']}",
                 f"{label}: {key} is mounted read-only and {var} names its {ref['key']}",
                 f"mount {m!r}, volume {src!r}, {var}={value.get(var)!r}")
        if key == "releaseConfigMap":
            CHECK.ok(src.get("optional") is True,
                     f"{label}: the release ConfigMap is optional (the pod starts without it)")


def check_monitoring(label, objects, values):
    """The PrometheusRule embeds the rules file (runbook base replaced); the dashboard ConfigMap
    holds the dashboard file."""
    with open(os.path.join(CHART, "files", "certgate-alerts.yaml")) as f:
        shipped = yaml.safe_load(f)
    base = values["prometheusRule"]["runbookBaseUrl"]
    for _, obj in objects:
        if obj.get("kind") == "PrometheusRule":
            rules = [r for g in obj["spec"]["groups"] for r in g["rules"] if "alert" in r]
            bad = [(r["alert"], r.get("annotations", {}).get("runbook_url")) for r in rules
                   if r.get("annotations", {}).get("runbook_url") != f"{base}#{r['alert'].lower()}"
                   or not re.match(r"^https?://[^/\s]+", r["annotations"]["runbook_url"])]
            CHECK.ok(rules and not bad,
                     f"{label}: every alert's runbook_url is absolute: {base}#<alert>", repr(bad))
            def drop_url(groups):
                return json.loads(re.sub(r'"runbook_url": "[^"]*"', '"runbook_url": ""', json.dumps(groups)))
            CHECK.ok(drop_url(obj["spec"]["groups"]) == drop_url(shipped["groups"]),
                     f"{label}: the PrometheusRule is files/certgate-alerts.yaml (the promtool-tested rules)")
        if obj.get("kind") == "ConfigMap" and "certgate.json" in (obj.get("data") or {}):
            with open(os.path.join(CHART, "files", "certgate-dashboard.json")) as f:
                dash = json.load(f)
            CHECK.ok(json.loads(obj["data"]["certgate.json"]) == dash,
                     f"{label}: the dashboard ConfigMap holds files/certgate-dashboard.json")


# --- scenarios -----------------------------------------------------------------------------

def deep_merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def scenario(label, chart_dir, values, certgate_values, expect_kinds, readme, whole_pod, verbose):
    print(f"== {label}")
    before = CHECK.passed, len(CHECK.failures)
    try:
        objects, out = render(chart_dir, values)
    except helm.HelmError as e:
        CHECK.ok(False, f"{label}: renders", str(e).strip())
        return []
    if verbose:
        for template, text in sorted(out.items()):
            print(f"# --- {template}\n{text}")
    kinds = sorted(o["kind"] for _, o in objects)
    shown = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for _, o in objects)
    print(f"  rendered: {shown or 'no object'}")
    CHECK.ok(kinds == sorted(expect_kinds), f"{label}: renders {sorted(expect_kinds) or 'no object'}", repr(kinds))
    for _, obj in objects:
        validate_object(label, obj)
        CHECK.ok("namespace" not in obj.get("metadata", {}),
                 f"{label}: {obj['kind']} leaves its namespace to the release")
        if obj["kind"] in POD_KINDS:
            check_pod(f"{label}: {obj['kind']}/{obj['metadata']['name']}",
                      obj["spec"]["template"]["spec"], certgate_values, readme, whole_pod)
    check_monitoring(label, objects, certgate_values)
    print(f"  {CHECK.passed - before[0]} checks passed, {len(CHECK.failures) - before[1]} failed")
    return objects


def bad_values():
    print("== values that violate values.schema.json")
    for path in sorted(glob.glob(os.path.join(CHART, "ci", "invalid", "*.yaml"))):
        name = os.path.relpath(path, CHART)
        with open(path) as f:
            text = f.read()
        expect = re.search(r"^# expect: (.+)$", text, re.M)
        expect = expect.group(1).strip() if expect else "values don't meet the specifications"
        try:
            render(CHART, helm.values_from_yaml(text))
            CHECK.ok(False, f"{name}: the render fails", "it rendered")
            continue
        except helm.HelmValuesError as e:
            message = str(e).strip()
            print(f"  {name}: Helm says: {' / '.join(message.splitlines())}")
            CHECK.ok("values don't meet the specifications of the schema" in message and expect in message,
                     f"{name}: the render fails with Helm's schema message at {expect}", message)
        except helm.HelmError as e:
            CHECK.ok(False, f"{name}: the render fails on the values, not elsewhere", f"{type(e).__name__}: {e}")
            continue
        report = helm.lint(CHART, helm.values_from_yaml(text), strict=True)
        errors = [m["error"] for m in report.get("messages") or [] if m.get("severity") == 3]
        CHECK.ok(any(expect in e for e in errors), f"{name}: helm lint reports it as an error", repr(errors))


def main():
    verbose = "-v" in sys.argv[1:]
    print(f"chart-render: Helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"Kubernetes schemas {', '.join(kube_versions())} (kubernetes-validate "
          f"{kv.__version__})")
    defaults = chart_defaults()
    readme = readme_pod()

    scenario("default values", CHART, {}, defaults, [], readme, True, verbose)

    all_on = values_file(os.path.join(CHART, "ci", "all-on-values.yaml"))
    scenario("every optional part enabled (ci/all-on-values.yaml)", CHART, all_on,
             deep_merge(defaults, all_on),
             ["Secret", "ConfigMap", "Service", "Deployment", "PodMonitor", "PrometheusRule", "ConfigMap"],
             readme, True, verbose)

    classic = values_file(os.path.join(CHART, "ci", "classic-values.yaml"))
    scenario("classic sidecar (ci/classic-values.yaml)", CHART, classic,
             deep_merge(defaults, classic), ["Secret", "ConfigMap", "Service", "Deployment"],
             readme, True, verbose)

    with tempfile.TemporaryDirectory(prefix="certgate-chart-") as tmp:
        app, meta = application_chart(tmp)
        with open(os.path.join(CHART, "Chart.yaml")) as f:
            chart_version = yaml.safe_load(f)["version"]
        dep = (meta.get("dependencies") or [{}])[0]
        CHECK.ok(dep.get("name") == "certgate" and str(dep.get("version")) == chart_version,
                 "charts/certgate/README.md: the dependency names this chart's version",
                 f"{dep.get('version')} vs {chart_version}")
        # The project README's plain-YAML pod shows the pre-flight: turn it on.
        over = {"certgate": {"preflight": {"enabled": True}}}
        with open(os.path.join(app, "values.yaml")) as f:
            app_values = yaml.safe_load(f)
        cg = deep_merge(defaults, deep_merge(app_values, over)["certgate"])
        objects = scenario("application chart from charts/certgate/README.md, pre-flight on",
                           app, over, cg, ["Deployment", "PodMonitor", "PrometheusRule"],
                           readme, False, verbose)
        pod = next((o["spec"]["template"]["spec"] for _, o in objects if o["kind"] == "Deployment"), None)
        if pod is not None:
            errors = []
            subset(readme, pod, "spec", errors)
            CHECK.ok(not errors, "README.md's plain-YAML pod is what the chart renders", "; ".join(errors))
            for key in ("initContainers", "containers", "volumes"):
                shown = sorted(x["name"] for x in readme.get(key) or [])
                real = sorted(x["name"] for x in pod.get(key) or [])
                CHECK.ok(shown == real, f"README.md's plain-YAML pod shows every one of the chart's {key}",
                         f"README {shown}, chart {real}")
        with open(os.path.join(CHART, "README.md")) as f:
            chart_readme = f.read()
        missing = [line.strip() for line in readme_helm_snippet().splitlines()
                   if line.strip() and line.strip() not in chart_readme]
        CHECK.ok(not missing, "README.md's Helm snippet is the chart README's pod template", repr(missing))

    bad_values()

    print()
    for failure in CHECK.failures:
        print(f"FAILED: {failure}")
    print(f"chart-render: {CHECK.passed} passed, {len(CHECK.failures)} failed")
    sys.exit(1 if CHECK.failures else 0)


if __name__ == "__main__":
    main()
