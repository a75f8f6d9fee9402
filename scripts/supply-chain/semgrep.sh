#!/usr/bin/env bash
# Gate: the project's Semgrep rules (.semgrep/*.yaml).
#   semgrep.sh test  - each rule against its fixture (.semgrep/<rule>.rs):
#                      `// ruleid:` lines must fire, `// ok:` lines must not.
#   semgrep.sh scan  - every rule over src/; any finding fails.
#   semgrep.sh       - both.
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

case "${1:-all}" in
test) run_tests ;;
scan) run_scan ;;
all)
	run_tests
	run_scan
	;;
*)
	echo "usage: $0 [test|scan|all]" >&2
	exit 2
	;;
esac
