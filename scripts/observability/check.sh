#!/usr/bin/env bash
# Everything `make observability-check` proves about deploy/observability/ and
# docs/observability.md; see the docstring of obscheck.py for each step.
#
#   check.sh           all checks, including the live one (builds the debug
#                      binary unless WORDCOUNT_BIN points at one)
#   check.sh --static  without starting the service
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

OBS_BIN="$(scripts/install.sh --print observability)"
# python3 is the project's Python environment's (PyYAML), here and in live-check.sh.
PATH="$(python_bin):$PATH"
export OBS_BIN PATH
obs=deploy/observability

printf -- '--- tools: %s; %s\n' "$("$OBS_BIN/promtool" --version 2>&1 | head -n1)" "$("$OBS_BIN/amtool" --version 2>&1 | head -n1)"
# The tools' own checks first: nothing below means anything if these fail.
"$OBS_BIN/promtool" check rules "$obs"/rules/*.rules.yml
"$OBS_BIN/promtool" test rules "$obs"/tests/*.test.yml
"$OBS_BIN/amtool" check-config "$obs/alertmanager/alertmanager.yml"

gate "render-rules: ClusterRules (GMP) and PrometheusRule (operator)" python3 scripts/observability/render-rules.py --check
for c in names docs dashboard scrape routes inhibit manifests selftest mutate; do
	gate "obscheck $c" python3 scripts/observability/obscheck.py "$c"
done
if [[ "${1:-}" != "--static" ]]; then
	gate "live: the running service's /metrics against metrics.txt" scripts/observability/live-check.sh "${WORDCOUNT_BIN:-}"
fi
gates_report observability-check
