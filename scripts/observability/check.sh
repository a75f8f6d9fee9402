#!/usr/bin/env bash
# Everything `make observability-check` proves about deploy/observability/ and
# docs/observability.md; see the docstring of obscheck.py for each step.
#
#   check.sh           all checks, including the live one (builds the debug
#                      binary unless WORDCOUNT_BIN points at one)
#   check.sh --static  without starting the service
set -euo pipefail
cd "$(dirname "$0")/../.."

OBS_BIN="$(scripts/observability/install.sh --print-bin)"
# python3 is the project's Python environment's (PyYAML), here and in live-check.sh.
PATH="$(scripts/lib/python.sh):$PATH"
export OBS_BIN PATH
obs=deploy/observability
step() { printf -- '--- %s\n' "$*"; }

step "tools: $("$OBS_BIN/promtool" --version 2>&1 | head -n1); $("$OBS_BIN/amtool" --version 2>&1 | head -n1)"

step "promtool check rules"
"$OBS_BIN/promtool" check rules "$obs"/rules/*.rules.yml

step "promtool test rules"
"$OBS_BIN/promtool" test rules "$obs"/tests/*.test.yml

step "amtool check-config"
"$OBS_BIN/amtool" check-config "$obs/alertmanager/alertmanager.yml"

failed=()
step "render-rules: ClusterRules (GMP) and PrometheusRule (operator)"
python3 scripts/observability/render-rules.py --check || failed+=(render-rules)

for c in names docs dashboard scrape routes inhibit manifests selftest mutate; do
	step "obscheck $c"
	python3 scripts/observability/obscheck.py "$c" || failed+=("$c")
done

if [[ "${1:-}" != "--static" ]]; then
	step "live: the running service's /metrics against metrics.txt"
	scripts/observability/live-check.sh "${WORDCOUNT_BIN:-}" || failed+=(live)
fi

if ((${#failed[@]})); then
	echo "observability-check FAILED: ${failed[*]}" >&2
	exit 1
fi
echo "observability-check: all passed"
