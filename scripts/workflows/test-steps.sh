#!/usr/bin/env bash
# Tests of the workflow step scripts' decisions, offline:
#   release.sh meta        which tags may be released, the image name
#   deploy-step.sh resolve which references may be deployed, and where to
# deploy-step.sh runs in a scratch copy of the tree whose cosign/verify is a
# stub that accepts or refuses on demand, so the script's own checks are what
# is tested (the real verifier has its own tests: make signing-test).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

passed=0 failed=0
ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf 'FAIL %s\n' "$1"; }
# expect NAME want_rc want_regex -- command...
expect() {
	local name="$1" want_rc="$2" want="$3"
	shift 4
	local out rc=0
	out="$("$@" 2>&1)" || rc=$?
	if [[ "$rc" == "$want_rc" && "$out" =~ $want ]]; then
		ok "$name"
	else
		bad "$name (exit $rc, wanted $want_rc and /$want/):"
		printf '     %s\n' "$out"
	fi
}

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
export GITHUB_OUTPUT=/dev/null

# --- release.sh meta ----------------------------------------------------------
expect "meta: tag = Cargo.toml version is released, image name lower-cased" 0 "image=ghcr\.io/org/repo" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: identity names release.yml at the tag" 0 "identity=https://github\.com/Org/Repo/\.github/workflows/release\.yml@refs/tags/v$version" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: tag that differs from Cargo.toml is refused" 1 "does not match Cargo.toml" -- \
	env GITHUB_REF_NAME=v999.0.0 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: non-semver tag is refused" 1 "is not vMAJOR" -- \
	env GITHUB_REF_NAME=v1.2 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: shell metacharacters in a tag are refused" 1 "is not vMAJOR" -- \
	env GITHUB_REF_NAME='v1.0.0;id' GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "assets: a tag instead of a digest is refused" 1 "digests only" -- \
	scripts/workflows/release.sh assets ghcr.io/o/r:v1.0.0 /nonexistent

# --- deploy-step.sh resolve ---------------------------------------------------
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/scripts/workflows" "$tmp/cosign"
cp scripts/workflows/deploy-step.sh "$tmp/scripts/workflows/"
cat >"$tmp/cosign/verify" <<'EOF'
#!/bin/sh
# stub: refuses when STUB_REFUSE is set, records what it was asked
echo "verify $*" >>"$STUB_LOG"
[ -z "${STUB_REFUSE:-}" ] || { echo "cosign/verify: REFUSED: stub" >&2; exit 1; }
EOF
chmod +x "$tmp/cosign/verify"
export STUB_LOG="$tmp/verify.log"
D="sha256:$(printf '%064d' 0 | tr 0 a)"
resolve() { (cd "$tmp" && env GITHUB_REPOSITORY=Org/Repo "$@" scripts/workflows/deploy-step.sh resolve); }

expect "resolve: digest -> default image repository, promoted" 0 "ref=ghcr\.io/org/repo@$D.*promote=true" -- resolve DIGEST="$D"
expect "resolve: full REPO@digest kept as is" 0 "ref=registry\.example:5000/x/y@$D" -- resolve DIGEST="registry.example:5000/x/y@$D"
expect "resolve: IMAGE_REPOSITORY overrides the repository" 0 "ref=europe-docker\.pkg\.dev/p/r/wordcount@$D" -- \
	resolve DIGEST="$D" IMAGE_REPOSITORY=europe-docker.pkg.dev/p/r/wordcount
expect "resolve: workflow_dispatch promote=false stops after dev" 0 "promote=false" -- resolve DIGEST="$D" INPUT_PROMOTE=false
expect "resolve: repository_dispatch promote=false stops after dev" 0 "promote=false" -- resolve DIGEST="$D" PAYLOAD_PROMOTE=false
expect "resolve: short digest refused" 1 "NOT DEPLOYED: digest" -- resolve DIGEST=sha256:abc
expect "resolve: upper-case digest refused" 1 "NOT DEPLOYED: digest" -- resolve DIGEST="sha256:$(printf '%064d' 0 | tr 0 A)"
expect "resolve: digest with shell metacharacters refused" 1 "NOT DEPLOYED: digest" -- resolve DIGEST="$D;id"
expect "resolve: tag and digest together refused" 1 "not both" -- resolve DIGEST="$D" TAG=v1.0.0
expect "resolve: branch name as tag refused" 1 "not a release tag" -- resolve TAG=main
expect "resolve: nothing to deploy refused" 1 "nothing to deploy" -- resolve
expect "resolve: verification failure stops the deploy" 1 "failed verification" -- resolve DIGEST="$D" STUB_REFUSE=1
: >"$STUB_LOG"
resolve DIGEST="$D" >/dev/null 2>&1
if [[ "$(cat "$STUB_LOG")" == "verify ghcr.io/org/repo@$D" ]]; then
	ok "resolve: verifies exactly the digest it outputs"
else
	bad "resolve: verifier was asked: $(cat "$STUB_LOG")"
fi
expect "apply: a tag instead of a digest is refused" 1 "is not REPO@sha256" -- \
	env REF=ghcr.io/o/r:v1.0.0 GITHUB_REPOSITORY=o/r scripts/workflows/deploy-step.sh apply dev
expect "apply: odd environment name refused" 1 "environment name" -- \
	env REF="ghcr.io/o/r@$D" GITHUB_REPOSITORY=o/r scripts/workflows/deploy-step.sh apply 'prod;id'

printf 'test-steps: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
