#!/usr/bin/env bash
# make policy-check: every object in cosign/policy/ against the upstream CRD
# schemas of its admission controller (../shared/crds: policy-controller
# v0.15.1, Kyverno v1.13.0 and v1.19.0), offline. The unit tests run first:
# they prove on the real policies and CRDs that a misspelled field, a field
# only a newer Kyverno knows and a value outside an enum each fail the gate.
#
# Python packages: requirements.txt beside this script, hash-checked, into a
# venv under ~/.cache keyed by that file's hash; a stamp written last means
# an interrupted install is redone, never trusted. PIP_NO_CACHE_DIR is
# honoured (CI sets it), so a fresh machine gets the same set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
req=scripts/policy/requirements.txt
venv="${XDG_CACHE_HOME:-$HOME/.cache}/wordcount/policy-$(sha256sum "$req" | cut -c1-12)"
crds="${WORDCOUNT_CRDS:-$ROOT/../shared/crds}"

if [[ ! -f "$venv/.installed" ]]; then
	printf 'policy-check: installing %s into %s\n' "$req" "$venv" >&2
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$req"
	"$venv/bin/pip" check --disable-pip-version-check >/dev/null
	touch "$venv/.installed"
fi
# The versions this gate was written against, asked of the venv itself.
"$venv/bin/python" - <<'PY'
import importlib.metadata as m, sys
want = {"jsonschema": "4.25.1", "PyYAML": "6.0.4"}
bad = {k: m.version(k) for k, v in want.items() if m.version(k) != v}
sys.exit(f"policy-check: wrong versions in the venv: {bad}" if bad else 0)
PY
[[ -d "$crds" ]] || { echo "policy-check: no CRD reference set at $crds (see ../shared/crds/README.md)" >&2; exit 2; }
export WORDCOUNT_CRDS="$crds"

"$venv/bin/python" -m unittest discover -s scripts/policy -p 'test_*.py'
"$venv/bin/python" scripts/policy/check-crds.py
