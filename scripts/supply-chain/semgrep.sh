#!/usr/bin/env bash
# Gate: the project's Semgrep rules (.semgrep/*.yaml).
#   semgrep.sh test  - each rule against its fixture (.semgrep/<rule>.rs):
#                      `// ruleid:` lines must fire, `// ok:` lines must not.
#   semgrep.sh scan  - every rule over src/; any finding fails.
#   semgrep.sh       - both.
#   semgrep.sh sarif OUT.sarif - the scan as SARIF for GitHub code scanning
#                      (ci.yml). It reports, it does not gate: findings
#                      already fail `make semgrep`; this puts them on the
#                      PR's lines.
# Only local rules run (no registry packs, no metrics, no version check:
# those need the network and cost ~100 s of DNS time-outs offline).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

SEMGREP="$(python_bin)/semgrep"
[[ -x "$SEMGREP" ]] || die "semgrep not installed; run scripts/install.sh supply-chain"
flags=(--metrics=off --disable-version-check --quiet)
export SEMGREP_ENABLE_VERSION_CHECK=0 SEMGREP_SEND_METRICS=off

run_tests() {
	local rule fixture failed=0 n=0
	for rule in .semgrep/*.yaml; do
		fixture="${rule%.yaml}.rs"
		n=$((n + 1))
		if [[ ! -f "$fixture" ]]; then
			log "$rule has no fixture $fixture"
			failed=1
			continue
		fi
		# semgrep --test does not descend into dot-directories, so each rule
		# is tested explicitly against its fixture.
		if ! out="$("$SEMGREP" --test "${flags[@]}" --config "$rule" "$fixture" 2>&1)" ||
			! grep -q 'All tests passed' <<<"$out"; then
			printf '%s\n' "$out" >&2
			log "fixture failed for $rule"
			failed=1
		fi
	done
	((n > 0)) || die "no rules in .semgrep/"
	((failed == 0)) || die "a rule does not behave as its fixture says (missed = should fire but did not, incorrect = fired on an ok line)"
	log "$n rules pass their fixtures"
}

run_scan() {
	# --no-git-ignore: scan every file under src/, tracked or not, so a new
	# file is checked before it is committed (by default Semgrep only sees
	# files git tracks).
	"$SEMGREP" scan "${flags[@]}" --no-git-ignore --config .semgrep/ --error src/ ||
		die "Semgrep findings in src/ (rule id, file and line above; each rule's message says what to do instead)"
	log "src/ is clean"
}

# run_sarif OUT: no --error, exit 0 with findings; fails only when the rules
# were not loaded.
run_sarif() {
	"$SEMGREP" scan "${flags[@]}" --config .semgrep/ --sarif --output "$1" src/
	python3 - "$1" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
rules = sum(len(r["tool"]["driver"].get("rules", [])) for r in runs)
results = sum(len(r.get("results", [])) for r in runs)
if rules == 0:
    sys.exit(f"semgrep: {sys.argv[1]} has no rules; .semgrep/ was not loaded")
print(f"semgrep: {sys.argv[1]}: {rules} rules, {results} findings")
PY
}

case "${1:-all}" in
test) run_tests ;;
sarif) run_sarif "${2:?usage: semgrep.sh sarif OUT.sarif}" ;;
scan) run_scan ;;
all)
	run_tests
	run_scan
	;;
*)
	echo "usage: $0 [test|scan|all|sarif OUT]" >&2
	exit 2
	;;
esac
