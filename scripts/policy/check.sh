#!/usr/bin/env bash
# make policy-check: every object in cosign/policy/ against the upstream CRD
# schemas of its admission controller (../shared/crds: policy-controller
# v0.15.1, Kyverno v1.13.0 and v1.19.0), offline. The unit tests run first:
# they prove on the real policies and CRDs that a misspelled field, a field
# only a newer Kyverno knows and a value outside an enum each fail the gate.
#
# CRDs: ../shared/crds, or (no ../shared, e.g. GitHub's runners) the same
# upstream files fetched at their pinned commits and sha256 sums.
# Python packages: the project's one hash-locked environment
# (scripts/lib/python.sh, scripts/pyproject.toml).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
py="$(python_bin)/python"
crds="${WORDCOUNT_CRDS:-$ROOT/../shared/crds}"

# The versions this gate was written against, asked of the venv itself.
"$py" - <<'PY'
import importlib.metadata as m, sys
want = {"jsonschema": "4.25.1", "PyYAML": "6.0.4"}
bad = {k: m.version(k) for k, v in want.items() if m.version(k) != v}
sys.exit(f"policy-check: wrong versions in the Python environment: {bad}" if bad else 0)
PY
# Without ../shared (GitHub's runners), the same upstream files at the same
# commits, each checked against its sha256 (the files in ../shared/crds
# have exactly these sums).
if [[ ! -d "$crds" ]]; then
	crds="$ROOT/target/crds"
	mkdir -p "$crds"
	while read -r sum name url; do
		[[ -f "$crds/$name" ]] || curl -fsSL --retry 3 -o "$crds/$name" "$url"
		echo "$sum  $crds/$name" | sha256sum --check --quiet ||
			{ rm -f "$crds/$name"; die "$name does not have the pinned sha256"; }
	done <<'EOF'
03935365f9d5671b97e61ea104bec64e78e8421d0ad96214b6b67333b8126a2e kyverno-v1.13.0-clusterpolicies.yaml https://raw.githubusercontent.com/kyverno/kyverno/978c2f3b56df37a8bea4ee649369efaea53a684b/config/crds/kyverno/kyverno.io_clusterpolicies.yaml
fb041ee35f8e89b5bca566bb6e00cd67fccc30be8859998757333f2a40d79655 kyverno-v1.19.0-clusterpolicies.yaml https://raw.githubusercontent.com/kyverno/kyverno/ee97ce09538b09b6f1b03853cc41a62654d6a58f/config/crds/kyverno/kyverno.io_clusterpolicies.yaml
e23467593124763d9937b1180d48cefe89dc72cf04e9bcf84cbf29822d51b20c policy-controller-v0.15.1-clusterimagepolicy.yaml https://raw.githubusercontent.com/sigstore/policy-controller/cc75baab1d34d3bae47bde7bd934bf79e5ca3afc/config/300-clusterimagepolicy.yaml
EOF
fi
export WORDCOUNT_CRDS="$crds"

"$py" -m unittest discover -s scripts/policy -p 'test_*.py'
"$py" scripts/policy/check-crds.py
