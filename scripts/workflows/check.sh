#!/usr/bin/env bash
# make workflows-check: everything that can be checked about .github/ without
# running it on GitHub. Each check runs even if an earlier one failed, so one
# run lists every problem; the exit code is 1 if any failed.
#
#   1 unit tests of the three checkers below (incl. the negative cases)
#   2 check-pins.py    every `uses:` pinned to a full SHA with `# vX.Y.Z`,
#                      one pin per action, each pin in docs/pipeline.md's table;
#                      the Dockerfile's apk packages pinned `=~MAJOR[.MINOR]`
#                      (no exact -rN revision)
#   2b check-egress.py every job with egress-policy: block allows each host its
#                      steps contact, derived by following what they run
#                      (actions, make targets, scripts, install groups, the
#                      Dockerfile) through one tool -> hosts table; an allowed
#                      host no step needs is a warning
#   3 check-policy.py  the house rules (permissions, timeouts, harden-runner,
#                      persist-credentials, no pull_request_target, concurrency,
#                      env-only interpolation, entry points only and existing,
#                      no release cache, cosign pinned as in tools.env, the release
#                      journey: both platforms built and checked, assets
#                      signed, verified with the exact tag before publishing,
#                      the follow-up pull request; SLSA Build L3: provenance
#                      attested only in the reusable build.yml it calls)
#   4 action-validator schema + job graph of each workflow (SchemaStore)
#   5 zizmor           security audit, pedantic persona, strict collection
#                      (schema errors fail too); offline by default. With
#                      WORKFLOWS_CHECK_ONLINE=1 and GH_TOKEN set (ci.yml does)
#                      it also runs the online audits: the pinned commits exist
#                      in the action's repository (impostor-commit), the comment
#                      names the tag the SHA is (ref-version-mismatch), known
#                      vulnerable action versions.
#   6 yamllint         .github/yamllint.yml
#   7 shellcheck       scripts/workflows/*.sh
#   8 test-steps.sh    the release/deploy step scripts refuse bad tags, digests,
#                      unverified images and assets, sign and verify what they
#                      should, and promote only what they should (the real
#                      cosign, Fulcio and gh against loopback stand-ins for
#                      GitHub and sigstore.dev)
# Checks 4 and 5 first prove they can fail: each must reject a known-bad file.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

scripts/install.sh workflows
VENV_BIN="$(python_bin)"
PY="$VENV_BIN/python"

tmp="$(mktemp -d -p "$SCRATCH")"

# A workflow both tools must refuse: an unknown job key (schema), a `needs`
# on a job that does not exist, pull_request_target checking out the PR's
# head, and a PR title pasted into a shell (template injection).
mkdir -p "$tmp/bad/.github/workflows"
cat >"$tmp/bad/.github/workflows/bad.yml" <<'EOF'
name: bad
on: pull_request_target
jobs:
  a:
    runs-on: ubuntu-24.04
    needs: missing
    stepz: []
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
EOF

workflows=(.github/workflows/*.yml)

unit_tests() { "$PY" -m unittest discover -s scripts/workflows -p 'test_*.py'; }

action_validator() {
	if action-validator "$tmp/bad/.github/workflows/bad.yml" >/dev/null 2>&1; then
		echo "action-validator accepted a workflow with an unknown key and a dangling needs: it is not validating" >&2
		return 1
	fi
	local f rc=0
	for f in "${workflows[@]}"; do
		if action-validator "$f"; then echo "action-validator: $f ok"; else rc=1; fi
	done
	return $rc
}

zizmor_audit() {
	local z=("$VENV_BIN/zizmor" --persona=pedantic --strict-collection
		--collect=workflows --collect=actions --collect=dependabot)
	if "${z[@]}" --offline --quiet "$tmp/bad/.github/" >/dev/null 2>&1; then
		echo "zizmor found nothing in a pull_request_target + template-injection workflow: it is not auditing" >&2
		return 1
	fi
	if [[ "${WORKFLOWS_CHECK_ONLINE:-0}" == 1 && -n "${GH_TOKEN:-}" ]]; then
		echo "zizmor: online audits enabled (GH_TOKEN)"
		"${z[@]}" .github/
	else
		"${z[@]}" --offline .github/
	fi
}

# dockerfile_pins FILE: every `ARG NAME=default` of FILE whose NAME is a
# scripts/tools.env pin has that pin as its default (docker build without
# --build-arg builds with the tested tools); the cargo-chef and
# cargo-auditable ARGs must be there.
dockerfile_pins() {
	local name value seen=0 bad=0
	while IFS='=' read -r name value; do
		grep -q "^$name=" scripts/tools.env || continue
		seen=$((seen + 1))
		[[ "$value" == "${!name}" ]] || { echo "$1: ARG $name=$value, scripts/tools.env has $name=${!name}"; bad=1; }
	done < <(sed -n 's/^ARG \([A-Z_]*\)=\(.*\)$/\1=\2/p' "$1")
	((seen >= 2)) || { echo "$1: no ARG CARGO_CHEF/CARGO_AUDITABLE"; bad=1; }
	((!bad))
}
# The same check must refuse a Dockerfile whose pin drifted.
dockerfile_pins_both() {
	dockerfile_pins Dockerfile || return 1
	sed 's/^ARG CARGO_CHEF=.*/ARG CARGO_CHEF=0.0.1/' Dockerfile >"$tmp/Dockerfile.drift"
	! dockerfile_pins "$tmp/Dockerfile.drift" >/dev/null
}

# The egress gate passes the real workflows and refuses a copy of build.yml
# (the release's image build) whose build job lost Docker Hub's CloudFront
# CDN, naming job and host.
egress_both() {
	"$PY" scripts/workflows/check-egress.py || return 1
	grep -v '^ *production\.cloudfront\.docker\.com:443$' .github/workflows/build.yml >"$tmp/build.yml"
	local out
	if out="$("$PY" scripts/workflows/check-egress.py "$tmp/build.yml" 2>&1)"; then
		echo "check-egress accepted a build.yml without production.cloudfront.docker.com" >&2
		return 1
	fi
	grep -q 'jobs\.build\.steps\[[0-9]*\] (docker/build-push-action): needs production\.cloudfront\.docker\.com:443' <<<"$out" ||
		{ echo "check-egress failed without naming the job, step and host: $out" >&2; return 1; }
}

gate "unit tests (check-pins, check-policy, check-egress)" unit_tests
gate "Dockerfile ARG pins = scripts/tools.env (+ a drifted copy refused)" dockerfile_pins_both
gate "SHA pins (check-pins.py)" "$PY" scripts/workflows/check-pins.py
gate "house rules (check-policy.py)" "$PY" scripts/workflows/check-policy.py
gate "egress allow-lists (check-egress.py, + a copy missing a host refused)" egress_both
gate "schema (action-validator)" action_validator
gate "security audit (zizmor)" zizmor_audit
gate "yamllint" "$VENV_BIN/yamllint" -c .github/yamllint.yml -f parsable --strict .github/
gate "shellcheck" shellcheck -x scripts/workflows/*.sh
gate "step scripts (test-steps.sh)" scripts/workflows/test-steps.sh

gates_report workflows-check
