#!/usr/bin/env bash
# Tests of the workflow step scripts' decisions, offline:
#   release.sh meta        which tags may be released, the image name, platforms
#   release.sh sign        keyless, as release.yml's job: the index signed and
#                          each SBOM and the VEX attested in both formats,
#                          every asset with a Sigstore bundle; the release
#                          key's legacy signature; the rehearsal's per-run key
#   release.sh verify-signed / verify-rehearsal
#                          what stops a release: another tag's identity,
#                          provenance not from build.yml, an asset signed by
#                          another workflow or key, unlisted or missing assets
#   deploy-step.sh         which releases may be deployed, and where to: only
#                          through the release's signed, summed manifests
#                          asset, with the exact identity of its tag
# With the real tools: cosign v3.1.3 signs and verifies, Fulcio issues the
# certificates, gh runs `attestation verify` and `release download`, images
# live in a loopback registry. What GitHub and sigstore.dev would provide is
# stood in for on 127.0.0.1 by keyless_stand_ins (scripts/lib/common.sh):
# the Actions runtime's ID token and GitHub's OIDC issuer (a JWT with the
# claims GitHub gives a job, so Fulcio certifies exactly
# https://github.com/OWNER/REPO/.github/workflows/FILE@refs/tags/TAG), the
# release and attestation API gh reads, a per-run CA for Fulcio, and a
# timestamp authority instead of Rekor; the tools reach them through their
# own environment variables and flags only. Build provenance, which
# actions/attest-build-provenance writes in build.yml, is made here with
# `cosign attest-blob` as build.yml's job. The one recorder left is
# deploy.sh in deploy-step.sh's scratch copy of the tree: applying needs a
# cluster, and make keyless-test, signing-test and mock-prod run it for
# real. Environment: TEST_STEPS_PORT (default 5060): the registry; the
# stand-ins take the next four ports.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

# expect NAME want_rc want_regex -- command...
expect() {
	local name="$1" want_rc="$2" want="$3"
	shift 4
	local out rc=0
	out="$("$@" 2>&1)" || rc=$?
	if [[ "$rc" == "$want_rc" && "$out" =~ $want ]]; then
		ok "$name"
	else
		fail "$name (exit $rc, wanted $want_rc and /$want/):"
		printf '     %s\n' "$out"
	fi
}

version="$(cargo_version)"
export GITHUB_OUTPUT=/dev/null

# --- release.sh meta ----------------------------------------------------------
expect "meta: tag = Cargo.toml version is released, image name lower-cased" 0 "image=ghcr\.io/org/repo" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: identity names release.yml at the tag" 0 "identity=https://github\.com/Org/Repo/\.github/workflows/release\.yml@refs/tags/v$version" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: provenance identity names build.yml (the reusable workflow) at the tag" 0 "provenance_identity=https://github\.com/Org/Repo/\.github/workflows/build\.yml@refs/tags/v$version" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: tag that differs from Cargo.toml is refused" 1 "does not match Cargo.toml" -- \
	env GITHUB_REF_NAME=v999.0.0 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: non-semver tag is refused" 1 "is not vMAJOR" -- \
	env GITHUB_REF_NAME=v1.2 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: shell metacharacters in a tag are refused" 1 "is not vMAJOR" -- \
	env GITHUB_REF_NAME='v1.0.0;id' GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: both platforms of the one image" 0 "platforms=linux/amd64,linux/arm64" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta (rehearsal): tag vX.Y.Z-rehearsal.<PR>, image in the job's registry" 0 "tag=v$version-rehearsal\.42.*image=localhost:5000/org/repo" -- \
	env -u GITHUB_REF_NAME REHEARSAL_REGISTRY=localhost:5000 REHEARSAL_PR=42 GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta (rehearsal): a remote registry is refused" 1 "is not localhost:PORT" -- \
	env REHEARSAL_REGISTRY=ghcr.io REHEARSAL_PR=42 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta (rehearsal): a PR number that is not a number is refused" 1 "is not a number" -- \
	env REHEARSAL_REGISTRY=localhost:5000 'REHEARSAL_PR=1;id' GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "rehearsal: an image outside a loopback registry is refused" 1 "not in a loopback registry" -- \
	env REF="ghcr.io/o/r@sha256:$(printf '%064d' 0)" scripts/workflows/rehearsal.sh
expect "assets: a tag instead of a digest is refused" 1 "digests only" -- \
	scripts/workflows/release.sh assets ghcr.io/o/r:v1.0.0 /nonexistent
expect "image-test: an unknown platform is refused" 1 "unknown platform" -- \
	scripts/workflows/release.sh image-test "ghcr.io/o/r@sha256:$(printf '%064d' 0)" linux/s390x
expect "verify-signed: a tag that is not a release tag is refused" 1 "is not vMAJOR" -- \
	scripts/workflows/release.sh verify-signed main "ghcr.io/o/r@sha256:$(printf '%064d' 0)" /nonexistent
expect "follow-up: a tag instead of a digest is refused" 1 "digests only" -- \
	scripts/workflows/release.sh follow-up v1.0.0 ghcr.io/o/r:v1.0.0

# --- the keyless journey, with the real cosign, Fulcio and gh ----------------
# A loopback registry, and what keyless_stand_ins (scripts/lib/common.sh)
# starts for the rest: the test's Fulcio, timestamp authority and GitHub.
registry_test_tools
test_registry "${TEST_STEPS_PORT:-5060}"
K="$SCRATCH/keyless"
keyless_stand_ins "$K" $((REGISTRY_PORT + 1))
export GITHUB_REPOSITORY=Org/Repo WORDCOUNT_GITHUB_REPOSITORY=Org/Repo COSIGN_PASSWORD=''
TAG=v1.2.3 OIDC=https://token.actions.githubusercontent.com
id="https://github.com/Org/Repo/.github/workflows/release.yml@refs/tags/$TAG"
build_id="https://github.com/Org/Repo/.github/workflows/build.yml@refs/tags/$TAG"

# as_job WORKFLOW TAG CMD...: CMD with the ID token of WORKFLOW's job at TAG.
as_job() { env ACTIONS_ID_TOKEN_REQUEST_URL="$(actions_token_url "$1" "refs/tags/$2")" "${@:3}"; }
# image NAME: a new image in the registry -> REPO@DIGEST.
image() { test_image "$registry/org/repo" "$1"; }
# sbom_assets DIR: the files `release.sh sign` attests (both image SBOMs, the VEX).
sbom_assets() {
	mkdir -p "$1"
	cp sbom/wordcount.cdx.json "$1/wordcount-$version-image-linux-amd64.cdx.json"
	cp sbom/wordcount.cdx.json "$1/wordcount-$version-image-linux-arm64.cdx.json"
	cp sbom/wordcount.openvex.json "$1/wordcount-$version.openvex.json"
}
# signed_image NAME TAG: a new image signed and attested by `release.sh sign`
# as release.yml's job at TAG -> REPO@DIGEST.
signed_image() {
	local ref
	ref="$(image "$1")"
	sbom_assets "$K/$1"
	as_job release.yml "$2" scripts/workflows/release.sh sign "$ref" "$K/$1" >"$K/$1.log" 2>&1 || cat "$K/$1.log" >&2
	printf '%s\n' "$ref"
}
# resign FILE WORKFLOW [TAG]: FILE's Sigstore bundle, made anew by WORKFLOW's job.
resign() { as_job "$2" "${3:-$TAG}" cosign sign-blob --yes --bundle "$1.sigstore.json" "$1" >/dev/null 2>&1; }

# --- release.sh manifests, sign ----------------------------------------------
rel="$(mktemp -d -p "$SCRATCH")"
IREF="$(image release)"
sbom_assets "$rel/dist"
for f in x86_64 aarch64; do echo "$f" >"$rel/dist/wordcount-$version-$f-unknown-linux-musl"; done
expect "manifests: the asset is raw-yaml/ pinned to the digest, listed in SHA256SUMS" 0 "" -- \
	scripts/workflows/release.sh manifests "$IREF" "$rel/dist"
if grep -q "  wordcount-$version-manifests.yaml\$" "$rel/dist/SHA256SUMS" &&
	[[ "$(sed -n 's/^ *image: //p' "$rel/dist/wordcount-$version-manifests.yaml" | sort -u)" == "$IREF" ]] &&
	(cd "$rel/dist" && sha256sum --check --strict --quiet SHA256SUMS); then
	ok "manifests: asset names only $IREF; SHA256SUMS covers all $(wc -l <"$rel/dist/SHA256SUMS") assets"
else
	fail "manifests: $(cat "$rel/dist/SHA256SUMS")"
fi
sign() { as_job release.yml "$TAG" env "$@" scripts/workflows/release.sh sign "$IREF" "$rel/dist"; }
expect "sign: keyless, both formats" 0 "" -- sign
check "sign: cosign/verify --tag $TAG accepts the index (both formats, SBOM attestations): Fulcio certified release.yml@refs/tags/$TAG" \
	cosign/verify --tag "$TAG" "$IREF"
# n_att FORMAT TYPE: how many TYPE attestations of IREF in FORMAT (new bundle
# format true|false) verify for release.yml at TAG.
n_att() {
	cosign verify-attestation --new-bundle-format="$1" --type "$2" --certificate-identity "$id" \
		--certificate-oidc-issuer "$OIDC" "$IREF" 2>/dev/null | grep -c . || true
}
if [[ "$(n_att false cyclonedx) $(n_att true cyclonedx) $(n_att false openvex) $(n_att true openvex)" == "2 2 1 1" ]]; then
	ok "sign: each platform's SBOM and the VEX attested on the index, legacy and bundle"
else
	fail "sign: cyclonedx legacy/bundle, openvex legacy/bundle: $(n_att false cyclonedx) $(n_att true cyclonedx) $(n_att false openvex) $(n_att true openvex)"
fi
unsigned=()
for f in "$rel/dist"/*; do
	[[ "$f" == *.sigstore.json ]] || cosign verify-blob --bundle "$f.sigstore.json" --certificate-identity "$id" \
		--certificate-oidc-issuer "$OIDC" "$f" >/dev/null 2>&1 || unsigned+=("$(basename "$f")")
done
if ((${#unsigned[@]} == 0)); then
	ok "sign: every asset (binaries, SBOMs, VEX, manifests, SHA256SUMS) has a Sigstore bundle from release.yml@refs/tags/$TAG"
else
	fail "sign: no bundle for $id: ${unsigned[*]}"
fi
cosign generate-key-pair --output-key-prefix "$K/release" >/dev/null 2>&1
IREF_RELEASE=$IREF IREF="$(image with-key)"
expect "sign: with the release key configured" 0 "" -- sign COSIGN_PRIVATE_KEY="$(cat "$K/release.key")"
if cosign/verify --key "$K/release.pub" "$IREF" >"$K/out" 2>&1 &&
	! cosign/verify --key "$K/release.pub" --format bundle "$IREF" >>"$K/out" 2>&1; then
	ok "sign: with the release key configured, a key-based signature and SBOM attestation in the legacy format only"
else
	fail "sign: key path: $(cat "$K/out")"
fi
IREF=$IREF_RELEASE
# Rehearsal mode: the same sign step with the per-run key, never keyless.
expect "sign (rehearsal): an image outside the rehearsal's registry is refused" 1 "signs only images in localhost:5000" -- \
	sign REHEARSAL_REGISTRY=localhost:5000 COSIGN_PRIVATE_KEY=x
cosign generate-key-pair --output-key-prefix "$K/rehearsal" >/dev/null 2>&1
LREF="$(image rehearsal)" rdist="$rel/rehearsal"
sbom_assets "$rdist"
scripts/workflows/release.sh manifests "$LREF" "$rdist" >/dev/null 2>&1
rehearse() { env REHEARSAL_REGISTRY="$registry" COSIGN_PRIVATE_KEY="$(cat "$K/rehearsal.key")" "$@"; }
expect "sign (rehearsal): the per-run key signs" 0 "" -- rehearse scripts/workflows/release.sh sign "$LREF" "$rdist"
# keyless_any: any keyless signature on LREF or its assets verifies.
keyless_any() {
	local any=(--certificate-identity-regexp . --certificate-oidc-issuer-regexp .) f
	cosign verify --new-bundle-format=true "${any[@]}" "$LREF" || cosign verify --new-bundle-format=false "${any[@]}" "$LREF" && return 0
	for f in "$rdist"/*.sigstore.json; do cosign verify-blob --bundle "$f" "${any[@]}" "${f%.sigstore.json}" && return 0; done
	return 1
}
if ! keyless_any >/dev/null 2>&1; then
	ok "sign (rehearsal): nothing keyless (no Fulcio certificate on the image or any asset)"
else
	fail "sign (rehearsal): a keyless signature was made"
fi
# verify-rehearsal: cosign/verify --key for each format, assets against the key.
vr() { rehearse scripts/workflows/release.sh verify-rehearsal "$LREF" "$rdist" "$1"; }
expect "verify-rehearsal: image (each format, SBOM attestations) and every asset against the per-run key" 0 "rehearsal of $LREF verified" -- vr "$K/rehearsal.pub"
expect "verify-rehearsal: another key's public key is refused" 1 "REFUSED" -- vr "$K/release.pub"
cosign sign-blob --yes --key "$K/release.key" --use-signing-config=false --bundle "$rdist/SHA256SUMS.sigstore.json" "$rdist/SHA256SUMS" >/dev/null 2>&1
expect "verify-rehearsal: an asset its key did not sign stops the rehearsal" 1 "does not verify for the key $K/rehearsal.pub" -- vr "$K/rehearsal.pub"
expect "verify-rehearsal: outside rehearsal mode it refuses to run" 1 "rehearsal mode only" -- \
	scripts/workflows/release.sh verify-rehearsal "$LREF" "$rdist" "$K/rehearsal.pub"

# --- release.sh verify-signed --------------------------------------------------
# provenance DIGEST WORKFLOW: build provenance of DIGEST (hex), signed as
# WORKFLOW's job at TAG, in the stand-in's attestation API, where
# actions/attest-build-provenance in build.yml stores it for `gh attestation`.
printf '{"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"}, "runDetails": {"builder": {"id": "%s"}}}\n' \
	"$build_id" >"$K/provenance.json"
provenance() {
	mkdir -p "$K/attestations/sha256:$1"
	as_job "$2" "$TAG" cosign attest-blob --yes --hash "$1" --type slsaprovenance1 --predicate "$K/provenance.json" \
		--bundle "$K/attestations/sha256:$1/provenance.json" "$1" >/dev/null 2>&1
}
bins=("$rel/dist/wordcount-$version-x86_64-unknown-linux-musl" "$rel/dist/wordcount-$version-aarch64-unknown-linux-musl")
for d in "${IREF#*@sha256:}" $(sha256sum "${bins[@]}" | cut -d' ' -f1); do provenance "$d" build.yml; done
vs() { scripts/workflows/release.sh verify-signed "${1:-$TAG}" "$IREF" "$rel/dist"; }
expect "verify-signed: image, provenance of the image and both binaries (gh attestation verify), and every asset pass" 0 "assets match SHA256SUMS" -- vs
expect "verify-signed: the same release checked for another tag is refused (exactly release.yml@refs/tags/$TAG)" 1 \
	"REFUSED: .* not one made by Org/Repo's .github/workflows/release.yml at tag v1.2.4" -- vs v1.2.4
# Provenance signed by release.yml, not build.yml, would be L2: refused.
provenance "${IREF#*@sha256:}" release.yml
expect "verify-signed: provenance signed by release.yml, not build.yml at the tag, stops the release" 1 "no build provenance signed by $build_id" -- vs
provenance "${IREF#*@sha256:}" build.yml
rm -r "$K/attestations/sha256:$(sha256sum "${bins[1]}" | cut -d' ' -f1)"
expect "verify-signed: a binary without provenance stops the release" 1 "aarch64-unknown-linux-musl: no build provenance signed by $build_id" -- vs
resign "$rel/dist/wordcount-$version.openvex.json" other.yml
expect "verify-signed: an asset signed for another identity stops the release" 1 "does not verify for $id" -- vs
resign "$rel/dist/wordcount-$version.openvex.json" release.yml
echo extra >"$rel/dist/unlisted.txt" && touch "$rel/dist/unlisted.txt.sigstore.json"
expect "verify-signed: an asset missing from SHA256SUMS stops the release" 1 "not listed in SHA256SUMS" -- vs
rm "$rel/dist/unlisted.txt"* "${bins[1]}"*
(cd "$rel/dist" && rm SHA256SUMS* && for f in *; do [[ "$f" == *.sigstore.json ]] || sha256sum -- "$f"; done >../SUMS)
mv "$rel/SUMS" "$rel/dist/SHA256SUMS"
resign "$rel/dist/SHA256SUMS" release.yml
expect "verify-signed: a release without the arm64 binary stops" 1 "no wordcount-$version-aarch64-unknown-linux-musl" -- vs

# --- deploy-step.sh resolve / apply -------------------------------------------
# deploy-step.sh runs in a scratch copy of the tree with the real cosign/verify;
# gh downloads the release from the stand-in ($K/releases/TAG).
tmp="$(mktemp -d -p "$SCRATCH")"
mkdir -p "$tmp/scripts/workflows" "$tmp/scripts/lib" "$tmp/scripts/deploy" "$tmp/cosign"
cp scripts/workflows/deploy-step.sh "$tmp/scripts/workflows/"
cp scripts/lib/common.sh "$tmp/scripts/lib/"
cp scripts/tools.env "$tmp/scripts/"
cp cosign/identity.env cosign/verify "$tmp/cosign/"
# deploy.sh records how it is called: applying needs a cluster (make
# signing-test, keyless-test and mock-prod run the real one).
cat >"$tmp/scripts/deploy/deploy.sh" <<'EOF'
#!/bin/sh
echo "deploy.sh $*" >>"$STUB_LOG"
EOF
chmod +x "$tmp/scripts/deploy/deploy.sh"
export STUB_LOG="$tmp/deploy.log"
REF=$IREF
OREF="$(signed_image other-tag v1.2.0)" RCREF="$(signed_image rc v1.2.3-rc.1)"
# release_with TAG IMAGE_LINES...: the release TAG's manifests asset, its
# bundle (as release.yml's job at SIGNED_AS, default TAG), SHA256SUMS.
release_with() {
	local tag=$1 d="$K/releases/$1" line
	local f="$d/wordcount-${tag#v}-manifests.yaml"
	shift
	rm -rf "$d" && mkdir -p "$d"
	for line in "$@"; do printf -- '---\nkind: Deployment\n        image: %s\n' "$line" >>"$f"; done
	resign "$f" release.yml "${SIGNED_AS:-$tag}"
	(cd "$d" && sha256sum -- * >SHA256SUMS)
}
step() { (cd "$tmp" && env "$@"); }
resolve() { step "$@" scripts/workflows/deploy-step.sh resolve; }

release_with v1.2.3 "$REF" "$REF"
expect "resolve: the release's asset and the image it names verify for exactly this tag, promoted" 0 "tag=v1\.2\.3.ref=$REF.promote=true" -- resolve TAG=v1.2.3
release_with v1.2.3-rc.1 "$RCREF"
expect "resolve: pre-release stops after dev" 0 "promote=false" -- resolve TAG=v1.2.3-rc.1
release_with v1.2.3 "$REF"
expect "resolve: workflow_dispatch promote=false stops after dev" 0 "promote=false" -- resolve TAG=v1.2.3 INPUT_PROMOTE=false
expect "resolve: repository_dispatch promote=false stops after dev" 0 "promote=false" -- resolve TAG=v1.2.3 PAYLOAD_PROMOTE=false
expect "resolve: nothing to deploy refused" 1 "nothing to deploy" -- resolve
expect "resolve: branch name as tag refused" 1 "not a release tag" -- resolve TAG=main
expect "resolve: shell metacharacters in a tag refused" 1 "not a release tag" -- resolve 'TAG=v1.2.3;id'
SIGNED_AS=v1.2.0 release_with v1.2.3 "$REF"
expect "resolve: an asset signed for another tag (v1.2.0) is refused" 1 "is not signed by .*refs/tags/v1\.2\.3" -- resolve TAG=v1.2.3
release_with v1.2.3 "$OREF"
expect "resolve: an image signed for another tag (v1.2.0) stops the deploy" 1 "failed verification for v1\.2\.3" -- resolve TAG=v1.2.3
release_with v1.2.3 "$(image unsigned)"
expect "resolve: an unsigned image stops the deploy" 1 "failed verification for v1\.2\.3" -- resolve TAG=v1.2.3
release_with v1.2.3 "$REF"
echo tampered >>"$K/releases/v1.2.3/wordcount-1.2.3-manifests.yaml"
expect "resolve: asset that does not match SHA256SUMS refused" 1 "does not match the release's SHA256SUMS" -- resolve TAG=v1.2.3
release_with v1.2.3 "$REF" "ghcr.io/org/repo@sha256:$(printf '%064d' 0)"
expect "resolve: asset naming two images refused" 1 "exactly one" -- resolve TAG=v1.2.3
release_with v1.2.3 "ghcr.io/org/repo:v1.2.3"
expect "resolve: asset naming a tag, not a digest, refused" 1 "exactly one REPO@sha256" -- resolve TAG=v1.2.3
rm -f "$K/releases/v1.2.3"/*
expect "resolve: release without a manifests asset refused" 1 "cannot download wordcount-1\.2\.3-manifests\.yaml" -- resolve TAG=v1.2.3

release_with v1.2.3 "$REF"
: >"$STUB_LOG"
expect "apply: the asset as published goes to deploy.sh with the tag" 0 "" -- step TAG=v1.2.3 REF="$REF" bash -c 'scripts/workflows/deploy-step.sh apply dev || true'
if grep -q "deploy.sh --release-manifests .tmp/deploy/release-dev/wordcount-1.2.3-manifests.yaml --tag v1.2.3 --target kubectl" "$STUB_LOG"; then
	ok "apply: deploy.sh applies the verified asset, verifying the tag's identity"
else
	fail "apply: deploy.sh was called as: $(cat "$STUB_LOG")"
fi
expect "apply: asset naming another digest than resolved refused" 1 "not ghcr\.io/org/repo@sha256:0" -- \
	step TAG=v1.2.3 REF="ghcr.io/org/repo@sha256:$(printf '%064d' 0)" scripts/workflows/deploy-step.sh apply dev
expect "apply: a tag instead of a digest is refused" 1 "is not REPO@sha256" -- \
	step TAG=v1.2.3 REF=ghcr.io/o/r:v1.0.0 scripts/workflows/deploy-step.sh apply dev
expect "apply: odd environment name refused" 1 "environment name" -- \
	step TAG=v1.2.3 REF="$REF" scripts/workflows/deploy-step.sh apply 'prod;id'

printf 'test-steps: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
