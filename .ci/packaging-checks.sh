#!/usr/bin/env bash
# Packaging checks: the Helm chart linted and rendered by Helm v4 (the helm-python-sdk wheel)
# and its output validated against the Kubernetes 1.29+ and Prometheus Operator schemas
# (.ci/helm-lint.py, .ci/chart-render.py); yamllint on the chart's plain YAML; the alert rules
# (promtool check rules / test rules); the dashboard JSON; every metric the alerts and the
# dashboard use present in the binary's live /metrics (.ci/metrics-check.py, after
# `cargo build`); the Containerfile's runtime contract.
#
# Installs what it needs: Debian packages when missing, the pinned Python packages of
# .ci/requirements.txt in a virtualenv (CERTGATE_CI_VENV, default ~/.cache/certgate-ci/venv).
# Every step runs even when an earlier one failed; the summary names the failed ones.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v yamllint >/dev/null 2>&1 || need+=(yamllint)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

venv="${CERTGATE_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/certgate-ci/venv}"
stamp="$venv/.requirements"
if ! cmp -s .ci/requirements.txt "$stamp" 2>/dev/null; then
  echo "--- python packages (.ci/requirements.txt) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r .ci/requirements.txt
  cp .ci/requirements.txt "$stamp"
fi
py="$venv/bin/python"

failed=()
step() {
  local name="$1"
  shift
  echo
  echo "--- $name"
  if "$@"; then
    echo "--- $name: ok"
  else
    echo "--- $name: FAILED"
    failed+=("$name")
  fi
}

yaml_lint() {
  yamllint -s .yamllint charts/certgate/Chart.yaml charts/certgate/values.yaml \
    charts/certgate/files/certgate-alerts.yaml charts/certgate/files/certgate-alerts.test.yaml \
    charts/certgate/ci/ .ci/crd-schemas/
}

alert_rules() {
  promtool check rules charts/certgate/files/certgate-alerts.yaml &&
    (cd charts/certgate/files && promtool test rules certgate-alerts.test.yaml)
}

dashboard_json() {
  "$py" - <<'PY'
import json, re
d = json.load(open("charts/certgate/files/certgate-dashboard.json"))
assert d["uid"] == "certgate" and d["panels"], "dashboard has no panels"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
assert all(re.search(r"certgate[_:]|process_", e) for e in exprs), "a panel queries no certgate metric"
rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
print(f"{len(d['panels'])} panels ({len(rows)} row(s): {rows}), {len(exprs)} queries")
PY
}

live_metrics() {
  cargo build --locked --quiet && "$py" .ci/metrics-check.py target/debug/certgate
}

containerfile() {
  local cf=Containerfile
  grep -Eq '^USER 65532(:65532)?$' "$cf" || { echo "FAIL: $cf must run as USER 65532" >&2; return 1; }
  grep -Fq 'ENTRYPOINT ["/certgate"]' "$cf" || { echo "FAIL: $cf ENTRYPOINT" >&2; return 1; }
  grep -Fq 'CMD ["run"]' "$cf" || { echo "FAIL: $cf CMD" >&2; return 1; }
  grep -Eq '^FROM (scratch|gcr.io/distroless/static)' "$cf" || { echo "FAIL: $cf runtime base" >&2; return 1; }
  for label in source version licenses; do
    grep -q "org.opencontainers.image.$label" "$cf" || { echo "FAIL: $cf lacks OCI label $label" >&2; return 1; }
  done
  echo "$cf: user, entrypoint, command, base and labels as the chart expects"
}

step "helm lint (Helm v4: default values, ci/*-values.yaml; Kubernetes 1.29 and the newest)" "$py" .ci/helm-lint.py
step "chart render and validation (.ci/chart-render.py)" "$py" .ci/chart-render.py
step "yamllint" yaml_lint
step "alert rules (promtool check rules, promtool test rules)" alert_rules
step "dashboard JSON" dashboard_json
step "metrics used by the alerts and the dashboard, in the live /metrics (.ci/metrics-check.py)" live_metrics
step "Containerfile" containerfile

echo
if [ ${#failed[@]} -gt 0 ]; then
  printf 'packaging checks FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "packaging checks OK"
