# Sourced by the supply-chain gate scripts (not executable on its own).
# shellcheck shell=bash

# Repository root: the gates always run from there.
SC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SC_DIR="$SC_ROOT/scripts/supply-chain"
# The RustSec snapshot this environment provides beside the checkout. When it
# is absent (GitHub runners, laptops) the tools fetch the live database.
SC_SHARED_DB="${WORDCOUNT_ADVISORY_SNAPSHOT:-$(dirname "$SC_ROOT")/shared/advisory-db}"
# cargo-deny looks for <db-path>/<name derived from the default DB URL>.
readonly SC_DENY_DB_NAME=advisory-db-3157b0e258782691

sc_log() { printf '[%s] %s\n' "${SC_GATE:-supply-chain}" "$*" >&2; }
sc_fail() {
	printf '\n[%s] FAILED: %s\n' "${SC_GATE:-supply-chain}" "$*" >&2
	exit 1
}

# sc_tmpdir: one scratch directory per script run, removed on exit.
sc_tmpdir() {
	if [[ -z "${SC_TMP:-}" ]]; then
		SC_TMP="$(mktemp -d "${TMPDIR:-/tmp}/wordcount-supply-chain.XXXXXX")"
		# shellcheck disable=SC2064 # expand now: the path is fixed
		trap "rm -rf '$SC_TMP'" EXIT
	fi
}

# sc_offline_db: true when the shared snapshot exists and should be used.
sc_offline_db() { [[ -d "$SC_SHARED_DB/crates" ]]; }

# sc_prepare_db: copies the snapshot into the scratch directory (the tools
# write into their database; ../shared is read-only material) and makes it
# the git repository cargo-deny expects. Sets SC_DB_ROOT (cargo-deny's
# db-path) and SC_DB (the database itself, what cargo-audit --db wants).
sc_prepare_db() {
	sc_tmpdir
	SC_DB_ROOT="$SC_TMP/advisory-dbs"
	SC_DB="$SC_DB_ROOT/$SC_DENY_DB_NAME"
	mkdir -p "$SC_DB_ROOT"
	cp -r "$SC_SHARED_DB" "$SC_DB"
	git -C "$SC_DB" init -q
	git -C "$SC_DB" -c user.name=snapshot -c user.email=snapshot@localhost \
		-c commit.gpgsign=false add -A
	git -C "$SC_DB" -c user.name=snapshot -c user.email=snapshot@localhost \
		-c commit.gpgsign=false commit -qm snapshot
}

# sc_semgrep: path of the pinned semgrep (installed by install.sh).
sc_semgrep() { "$SC_DIR/install.sh" --print-semgrep; }
