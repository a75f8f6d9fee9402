#!/usr/bin/env bash
# make manifests-test: every gate on raw-yaml/ (and compose.yaml), in order of
# cost. Exits non-zero if any gate fails; runs them all first, so one run
# shows every problem.
#
#   1 kubernetes-validate --strict  schemas of the Kubernetes version pinned in
#                                   deploy/instances.toml (unknown fields fail);
#                                   gates 1 and 2 also run on a variant with
#                                   every instance's key from a Secret
#   2 validate.py                   apiVersion/kind allow-list for that version;
#                                   restricted profile + project rules per pod
#   3 yamllint, shellcheck          .yamllint; this folder's scripts
#   4 unit tests                    generator, policy checks (negative cases),
#                                   mock-production transformation
#   5 checkov                       its Kubernetes checks; any skip must be a
#                                   `checkov:skip=CKV_K8S_n: reason` annotation
#                                   on the object, generated with its reason
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
here=scripts/manifests
scripts/install.sh manifests
venv="$(dirname "$(python_bin)")"
k8s="$("$venv/bin/python" "$here/generate.py" --kubernetes-version)"
manifests=(raw-yaml/*.yaml)
# The same checks on the option raw-yaml/ does not use by default: every
# instance with a service-account key from a Secret (deploy/instances.toml,
# gcp_key_secret), generated into a scratch folder.
variant="$(mktemp -d -p "$SCRATCH")"
sed 's/^gcp_key_secret = ""$/gcp_key_secret = "wordcount-gcp-key"/' deploy/instances.toml >"$variant/instances.toml"
grep -q '^gcp_key_secret = "wordcount-gcp-key"$' "$variant/instances.toml" ||
	die "deploy/instances.toml has no gcp_key_secret line to vary"
"$venv/bin/python" "$here/generate.py" --config "$variant/instances.toml" --out "$variant/raw-yaml"
manifests+=("$variant"/raw-yaml/*.yaml)

gate "kubernetes-validate $k8s --strict" \
	"$venv/bin/kubernetes-validate" -k "$k8s" --strict --quiet "${manifests[@]}"
gate "allow-list and pod security ($k8s)" \
	"$venv/bin/python" "$here/validate.py" --k8s-version "$k8s" "${manifests[@]}"
gate "yamllint" "$venv/bin/yamllint" --strict -f parsable -c .yamllint raw-yaml/ compose.yaml .yamllint
gate "shellcheck" shellcheck -x scripts/manifests/*.sh scripts/cluster/*.sh .devcontainer/post-create.sh
gate "unit tests" "$venv/bin/python" -m unittest discover -s "$here" -p 'test_*.py'
# The two variables keep checkov offline (TOOLS.md); without them it tries
# the network for its mapping and version check.
gate "checkov (kubernetes)" env BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true \
	"$venv/bin/checkov" --directory raw-yaml --framework kubernetes \
	--compact --quiet --skip-download
# checkov must also refuse: the same Deployment made privileged and root.
checkov_refuses() {
	local tmp rc=0
	tmp="$(mktemp -d -p "$SCRATCH")"
	sed -e 's/privileged: false/privileged: true/' -e 's/runAsNonRoot: true/runAsNonRoot: false/' \
		raw-yaml/10-instance-the.yaml >"$tmp/bad.yaml"
	BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true "$venv/bin/checkov" \
		--file "$tmp/bad.yaml" --framework kubernetes --compact --quiet --skip-download \
		--check CKV_K8S_16,CKV_K8S_23 >"$tmp/out" 2>&1 || rc=$?
	grep -q 'Failed checks: [1-9]' "$tmp/out" || rc=0
	((rc != 0))
}
gate "checkov refuses a privileged, root Deployment (negative)" checkov_refuses

gates_report manifests-test
