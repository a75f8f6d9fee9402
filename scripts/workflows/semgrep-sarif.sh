#!/usr/bin/env bash
# Runs the project's own Semgrep rules (.semgrep/) over src/ and writes SARIF
# for GitHub code scanning. It reports, it does not gate: findings already
# fail `make supply-chain` (make semgrep); this puts them on the PR's lines.
#
#   scripts/workflows/semgrep-sarif.sh OUT.sarif
#
# Same semgrep pin and venv as the gate (scripts/install.sh supply-chain).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
out="${1:?usage: semgrep-sarif.sh OUT.sarif}"

scripts/install.sh supply-chain
semgrep="$(python_bin)/semgrep"
# --metrics=off / --disable-version-check: no phoning home, and no ~100 s
# DNS time-outs where the network is closed. No --error: exit 0 with findings.
SEMGREP_ENABLE_VERSION_CHECK=0 SEMGREP_SEND_METRICS=off \
	"$semgrep" scan --metrics=off --disable-version-check --quiet \
	--config .semgrep/ --sarif --output "$out" src/
python3 - "$out" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
rules = sum(len(r["tool"]["driver"].get("rules", [])) for r in runs)
results = sum(len(r.get("results", [])) for r in runs)
if rules == 0:
    sys.exit(f"semgrep-sarif: {sys.argv[1]} has no rules; .semgrep/ was not loaded")
print(f"semgrep-sarif: {sys.argv[1]}: {rules} rules, {results} findings")
PY
