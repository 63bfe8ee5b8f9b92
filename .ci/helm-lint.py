#!/usr/bin/env python3
"""Lints charts/certgate with Helm's own lint, without a helm binary.

Helm v4's Go SDK comes embedded in the PyPI wheel `helm-python-sdk` (module `helm_python`):
`helm_python.lint(path, values, strict=True, kube_version=...)` is `helm lint --strict`, and
returns every message with its severity (1 info, 2 warning, 3 error) and text.

The chart is linted with its default values and with each values file of charts/certgate/ci/
(every optional part enabled; the classic sidecar), at the oldest Kubernetes the chart supports
(its kubeVersion, 1.29) and at the newest kubernetes-validate knows. Strict, as `--strict`: a
warning fails as an error does; info messages (`icon is recommended`) are printed only.

    python3 .ci/helm-lint.py [CHART_DIR]
"""

import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "charts", "certgate")
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
# The chart's kubeVersion floor, and the newest release the CI's schemas know (printed below).
KUBE_VERSIONS = ["v1.29.0"]

try:
    import helm_python as helm
except ImportError:
    sys.exit("helm-lint: needs helm-python-sdk (python3 -m pip install -r .ci/requirements.txt)")


def newest_kube_version():
    try:
        import kubernetes_validate.utils as kv
    except ImportError:
        return None
    return "v" + kv.latest_version()


def main():
    chart = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else CHART
    print(f"helm-lint: Helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__})")
    cases = [("default values", {})]
    for path in sorted(glob.glob(os.path.join(chart, "ci", "*-values.yaml"))):
        with open(path) as f:
            cases.append((os.path.relpath(path, chart), helm.values_from_yaml(f.read())))
    versions = list(KUBE_VERSIONS)
    newest = newest_kube_version()
    if newest and newest not in versions:
        versions.append(newest)

    failed = False
    for label, values in cases:
        for kube in versions:
            report = helm.lint(chart, values, strict=True, kube_version=kube, namespace="certgate")
            msgs = report.get("messages") or []
            bad = [m for m in msgs if m.get("severity", 0) >= 2]
            status = "FAIL" if bad or report.get("errors") else "ok"
            print(f"== {status}: {label}, Kubernetes {kube}: {len(msgs)} message(s)")
            for m in msgs:
                sev = SEVERITY.get(m.get("severity"), m.get("severity"))
                print(f"  [{sev}] {m.get('path', '')}: {str(m.get('error', '')).strip()}")
            for err in report.get("errors") or []:
                if not any(str(err) == str(m.get("error")) for m in msgs):
                    print(f"  [ERROR] {str(err).strip()}")
            failed |= status == "FAIL"
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
