# shellcheck shell=bash
# Sourced by the test scripts that record many checks and report them all:
# ok/fail count into $passed/$failed; check DESCRIPTION CMD... runs CMD,
# records the outcome and never aborts, showing the tail of CMD's output on
# failure. The caller sets WORK (a scratch directory) before calling check.
passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   - %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL - %s\n' "$*"; }
check() {
	local what=$1
	shift
	if "$@" >"$WORK/check.out" 2>&1; then ok "$what"; else
		fail "$what"
		sed 's/^/       /' "$WORK/check.out" | tail -20
	fi
}
