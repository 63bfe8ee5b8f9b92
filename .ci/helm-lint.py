#!/usr/bin/env python3
"""Lints charts/certgate with Helm's own code, without a helm binary.

`helm` is not installable here, so this loads Helm v4's Go library as shipped in the PyPI
wheel `helm-sdkpy` (helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so) and calls its C functions
through ctypes. The wheel asks for Python >= 3.12, so it is fetched with
`pip download --no-deps --python-version 3.12 --only-binary=:all:` and unzipped, not installed.
When `helm` is on PATH, `helm lint --strict` is used instead.

The chart is linted twice: as shipped (default values), and as a copy whose values.yaml turns
every optional part on (example workload, pre-flight, PodMonitor, PrometheusRule, dashboard),
since lint renders with the chart's own values and off-by-default templates would render to
nothing. Any message of severity error (3) fails; every message is printed.

    python3 .ci/helm-lint.py [CHART_DIR]
"""

import ctypes
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "certgate")
CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "certgate-ci", "helm-sdkpy"
)
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}

# Top-level values blocks whose `enabled: false` the second pass turns on.
ALL_ON = ("preflight", "example", "podMonitor", "prometheusRule", "dashboard")


def fetch_library():
    """Path of libhelm_sdkpy.so, downloading and unpacking the wheel once into the cache."""
    found = glob.glob(os.path.join(CACHE, "**", "libhelm_sdkpy.so"), recursive=True)
    if found:
        return found[0]
    os.makedirs(CACHE, exist_ok=True)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--python-version", "3.12", "--only-binary=:all:", "helm-sdkpy", "-d", CACHE,
        ],
        check=True,
    )
    wheels = glob.glob(os.path.join(CACHE, "helm_sdkpy-*.whl"))
    if not wheels:
        sys.exit("helm-lint: pip download produced no helm_sdkpy wheel")
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(os.path.join(CACHE, "wheel"))
    found = glob.glob(os.path.join(CACHE, "wheel", "**", "linux-amd64", "libhelm_sdkpy.so"), recursive=True)
    if not found:
        sys.exit("helm-lint: libhelm_sdkpy.so not found in the wheel")
    return found[0]


class Helm:
    """The few C functions of libhelm_sdkpy this needs."""

    def __init__(self, path):
        lib = ctypes.CDLL(path)
        lib.helm_sdkpy_config_create.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_ulonglong),
        ]
        lib.helm_sdkpy_config_create.restype = ctypes.c_int
        lib.helm_sdkpy_lint.argtypes = [
            ctypes.c_ulonglong, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
        ]
        lib.helm_sdkpy_lint.restype = ctypes.c_int
        lib.helm_sdkpy_last_error.argtypes = []
        lib.helm_sdkpy_last_error.restype = ctypes.c_char_p
        lib.helm_sdkpy_free.argtypes = [ctypes.c_void_p]
        lib.helm_sdkpy_free.restype = None
        lib.helm_sdkpy_version_string.restype = ctypes.c_void_p
        self.lib = lib
        handle = ctypes.c_ulonglong(0)
        # No cluster is contacted by lint; an empty kubeconfig path is fine.
        rc = lib.helm_sdkpy_config_create(b"default", b"", b"", b"{}", ctypes.byref(handle))
        if rc != 0:
            sys.exit(f"helm-lint: helm_sdkpy_config_create failed: {self.last_error()}")
        self.handle = handle.value

    def last_error(self):
        err = self.lib.helm_sdkpy_last_error()
        return err.decode() if err else "unknown error"

    def version(self):
        ptr = self.lib.helm_sdkpy_version_string()
        if not ptr:
            return "?"
        text = ctypes.string_at(ptr).decode()
        self.lib.helm_sdkpy_free(ptr)
        return text

    def lint(self, chart):
        out = ctypes.c_void_p()
        rc = self.lib.helm_sdkpy_lint(self.handle, chart.encode(), ctypes.byref(out))
        if rc != 0:
            sys.exit(f"helm-lint: lint call failed for {chart}: {self.last_error()}")
        text = ctypes.string_at(out.value).decode() if out.value else "{}"
        if out.value:
            self.lib.helm_sdkpy_free(out.value)
        return json.loads(text)


def messages(result):
    """(severity, path, text) for every lint message, whatever the JSON nests them under."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "severity" in node or "Severity" in node:
                sev = node.get("severity", node.get("Severity"))
                path = node.get("path", node.get("Path", ""))
                err = node.get("err", node.get("Err", node.get("message", node.get("Message", ""))))
                found.append((int(sev) if str(sev).isdigit() else sev, path, str(err)))
                return
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(result)
    return found


def all_on_copy(chart, tmp):
    """A copy of the chart whose values.yaml enables every optional part: the `enabled: false`
    directly under each top-level key of ALL_ON becomes `enabled: true`."""
    dst = os.path.join(tmp, os.path.basename(chart))
    shutil.copytree(chart, dst)
    values = os.path.join(dst, "values.yaml")
    with open(values) as f:
        lines = f.read().splitlines()
    top, switched = None, set()
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith("#"):
            top = line.split(":", 1)[0]
        elif top in ALL_ON and line.startswith("  enabled: false"):
            lines[i] = line.replace("enabled: false", "enabled: true", 1)
            switched.add(top)
    missing = set(ALL_ON) - switched
    if missing:
        sys.exit(f"helm-lint: values.yaml has no 'enabled: false' under {sorted(missing)}")
    with open(values, "w") as f:
        f.write("\n".join(lines) + "\n")
    return dst


def lint_with_helm_binary(charts):
    failed = False
    for chart in charts:
        print(f"== helm lint --strict {chart}")
        rc = subprocess.run(["helm", "lint", "--strict", chart]).returncode
        failed |= rc != 0
    return failed


def main():
    chart = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else CHART
    with tempfile.TemporaryDirectory() as tmp:
        charts = [chart, all_on_copy(chart, tmp)]
        if shutil.which("helm"):
            sys.exit(1 if lint_with_helm_binary(charts) else 0)
        helm = Helm(fetch_library())
        print(f"helm-lint: Helm {helm.version()} (libhelm_sdkpy from the helm-sdkpy wheel)")
        failed = False
        for c, label in zip(charts, ["default values", "every optional part enabled"]):
            result = helm.lint(c)
            msgs = messages(result)
            errors = [m for m in msgs if m[0] == 3]
            print(f"== {os.path.basename(c)} ({label}): {len(msgs)} message(s), {len(errors)} error(s)")
            for sev, path, text in msgs:
                print(f"  [{SEVERITY.get(sev, sev)}] {path}: {text}")
            if os.environ.get("HELM_LINT_DEBUG"):
                print(json.dumps(result, indent=2))
            failed |= bool(errors)
        if failed:
            print("helm-lint: libhelm_sdkpy serialises Go errors as {} (the text is lost); the path"
                  " says which file. `helm lint --strict charts/certgate` shows the text where a"
                  " helm binary exists.")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
