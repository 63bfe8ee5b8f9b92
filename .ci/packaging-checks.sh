#!/usr/bin/env bash
# Packaging checks: the Helm chart (Helm's own lint, through libhelm_sdkpy when no helm binary
# exists), yamllint on the chart's plain YAML, the dashboard JSON, and the Containerfile's
# runtime contract. The alert rules' promtool tests run in .ci/run; the static binary in
# .ci/static-build.sh. Installs what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v yamllint >/dev/null 2>&1 || need+=(yamllint)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "--- helm lint (charts/certgate: default values, and every optional part enabled)"
python3 .ci/helm-lint.py

echo "--- yamllint"
yamllint -s .yamllint charts/certgate/Chart.yaml charts/certgate/values.yaml \
  charts/certgate/files/certgate-alerts.yaml charts/certgate/files/certgate-alerts.test.yaml

echo "--- dashboard JSON"
python3 - <<'PY'
import json, re
d = json.load(open("charts/certgate/files/certgate-dashboard.json"))
assert d["uid"] == "certgate" and d["panels"], "dashboard has no panels"
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
assert all(re.search(r"certgate_", e) for e in exprs), "a panel queries no certgate metric"
print(f"{len(d['panels'])} panels, {len(exprs)} queries")
PY

echo "--- Containerfile"
cf=Containerfile
grep -Eq '^USER 65532(:65532)?$' "$cf" || { echo "FAIL: $cf must run as USER 65532" >&2; exit 1; }
grep -Fq 'ENTRYPOINT ["/certgate"]' "$cf" || { echo "FAIL: $cf ENTRYPOINT" >&2; exit 1; }
grep -Fq 'CMD ["run"]' "$cf" || { echo "FAIL: $cf CMD" >&2; exit 1; }
grep -Eq '^FROM (scratch|gcr.io/distroless/static)' "$cf" || { echo "FAIL: $cf runtime base" >&2; exit 1; }
for label in source version licenses; do
  grep -q "org.opencontainers.image.$label" "$cf" || { echo "FAIL: $cf lacks OCI label $label" >&2; exit 1; }
done
echo "packaging checks OK"
