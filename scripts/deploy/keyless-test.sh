#!/usr/bin/env bash
# make keyless-test: the keyless identity, rehearsed with real cosign.
#
# A private CA made per run (scripts/deploy/keyless-ca.py) stands in for
# Fulcio and issues 10-minute certificates shaped like the ones GitHub
# Actions gets: SAN URI https://github.com/OWNER/REPO/.github/workflows/
# release.yml@refs/tags/vX.Y.Z (cosign/identity.env) and the OIDC issuer
# extensions. Real cosign signs images in a loopback registry with them, both
# signature formats plus the CycloneDX attestation, without a transparency
# log, and signs a manifests asset written by `release.sh manifests`. Then the
# project's own verifiers, called as shipped:
#   cosign/verify --tag vX.Y.Z          (and without --tag: any release)
#   scripts/deploy/deploy.sh --release-manifests ASSET --tag vX.Y.Z
#   the README's `cosign verify-blob` command, read from README.md
# must accept the release and refuse: another tag (an older release's
# signature presented for a newer tag), another workflow file, another
# repository, another issuer, and a certificate from another CA.
#
# The trust-root override lives only here, as cosign's own environment
# (every flag is also COSIGN_<FLAG>): COSIGN_TRUSTED_ROOT (the private CA as
# a trusted root written by `cosign trusted-root create`),
# COSIGN_INSECURE_IGNORE_TLOG and COSIGN_INSECURE_IGNORE_SCT (no Rekor, no
# CT log). Nothing shipped reads a test hook.
#
# Environment: KEYLESS_TEST_REGISTRY_PORT (default 5056), the loopback
# registry's port; its state is in this run's scratch directory.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
# shellcheck source=cosign/identity.env
source cosign/identity.env

registry_test_tools

test_registry "${KEYLESS_TEST_REGISTRY_PORT:-5056}"
repo="$registry/wordcount"

W="$SCRATCH/keyless"
mkdir -p "$W"
"$py" scripts/deploy/keyless-ca.py ca "$W/fulcio"
"$py" scripts/deploy/keyless-ca.py ca "$W/other-ca"
# The signing key of every certificate; cosign's own key format.
COSIGN_PASSWORD='' cosign generate-key-pair --output-key-prefix "$W/signer" >/dev/null 2>&1
export COSIGN_PASSWORD=''
cosign trusted-root create --fulcio "url=https://fulcio.test.invalid,certificate-chain=$W/fulcio.pem" \
	--out "$W/trusted_root.json" >/dev/null
export COSIGN_TRUSTED_ROOT="$W/trusted_root.json" COSIGN_INSECURE_IGNORE_TLOG=true COSIGN_INSECURE_IGNORE_SCT=true

good_tag=v1.0.0 newer_tag=v1.1.0
identity="$(wordcount_identity_for "$good_tag")"
other_workflow="https://github.com/$WORDCOUNT_GITHUB_REPOSITORY/.github/workflows/other.yml@refs/tags/$good_tag"
other_repo="https://github.com/${WORDCOUNT_GITHUB_REPOSITORY%/*}-fork/${WORDCOUNT_GITHUB_REPOSITORY#*/}/$WORDCOUNT_RELEASE_WORKFLOW@refs/tags/$good_tag"

# quiet CMD...: CMD's output only when it fails.
quiet() { "$@" >"$SCRATCH/quiet" 2>&1 || { cat "$SCRATCH/quiet" >&2; return 1; }; }

# release CASE CA IDENTITY ISSUER: a new image (one per case, so no other
# signature can satisfy a verifier), signed and attested in both formats with
# a certificate from CA, and its manifests asset with a Sigstore bundle;
# sets ref and asset.
release() {
	local case=$1 ca=$2 id=$3 issuer=$4 d="$W/$1" format
	mkdir -p "$d/assets"
	"$py" scripts/deploy/keyless-ca.py leaf "$W/$ca" "$W/signer.pub" "$d/cert.pem" --identity "$id" --issuer "$issuer"
	ref="$(test_image "$repo" "$case")"
	local with_cert=(--yes --key "$W/signer.key" --certificate "$d/cert.pem"
		--tlog-upload=false --use-signing-config=false)
	for format in false true; do
		quiet cosign sign "${with_cert[@]}" --new-bundle-format="$format" "$ref"
		quiet cosign attest "${with_cert[@]}" --new-bundle-format="$format" \
			--type cyclonedx --predicate sbom/wordcount.cdx.json "$ref"
	done
	quiet scripts/workflows/release.sh manifests "$ref" "$d/assets"
	asset="$(echo "$d"/assets/*-manifests.yaml)"
	quiet cosign sign-blob "${with_cert[@]}" --bundle "$asset.sigstore.json" "$asset"
}

# The README's verify-blob command (continuation lines joined), run with TAG
# and F as its block sets them.
readme_verify_blob="$(awk '/^cosign verify-blob /, !/\\$/' README.md | sed -e ':a' -e '/\\$/N; s/\\\n[[:space:]]*/ /; ta')"
# shellcheck disable=SC2016 # the README's variables, matched literally
[[ "$readme_verify_blob" == "cosign verify-blob "*'$TAG'*'"$F"'* ]] || die "README.md has no cosign verify-blob command for \$TAG and \$F"
readme() { # readme TAG ASSET
	(cd "$(dirname "$2")" && TAG=$1 F=$(basename "$2") bash -c "$readme_verify_blob")
}
deploy() { # deploy TAG REF ASSET
	scripts/deploy/deploy.sh --release-manifests "$3" --tag "$1" --target render \
		--allow-http-registry --out "$SCRATCH/rendered"
}
# refused REASON DESCRIPTION CMD...: CMD must exit 1 (refused), not 0, nor 2
# (a usage or tooling problem that would prove nothing), and its output must
# carry cosign's own REASON, so a refusal for another cause (an unreachable
# registry, a missing file) fails the check.
refused() {
	local reason=$1 what=$2 rc=0
	shift 2
	"$@" >"$SCRATCH/out" 2>&1 || rc=$?
	if ((rc == 1)) && grep -qF -- "$reason" "$SCRATCH/out"; then
		ok "$what"
	else
		fail "$what (exit $rc, want 1 with \"$reason\")"
		tail -20 "$SCRATCH/out" | sed 's/^/       /'
	fi
}

release good fulcio "$identity" "$WORDCOUNT_OIDC_ISSUER"
good_ref=$ref good_asset=$asset
check "the release: cosign/verify --tag $good_tag accepts it (both formats, SBOM attestations)" \
	cosign/verify --allow-http-registry --tag "$good_tag" "$good_ref"
check "the release: cosign/verify (any release tag) accepts it" cosign/verify --allow-http-registry "$good_ref"
check "the release: deploy.sh --release-manifests --tag $good_tag verifies and renders it" deploy "$good_tag" "$good_ref" "$good_asset"
check "the release: the README's verify-blob accepts its manifests asset" readme "$good_tag" "$good_asset"

san='expected SAN value'
refused "$san" "another tag: cosign/verify --tag $newer_tag refuses $good_tag's image" \
	cosign/verify --allow-http-registry --tag "$newer_tag" "$good_ref"
refused "$san" "another tag: deploy.sh --tag $newer_tag refuses $good_tag's asset" deploy "$newer_tag" "$good_ref" "$good_asset"
refused "$san" "another tag: the README's verify-blob for $newer_tag refuses $good_tag's asset" readme "$newer_tag" "$good_asset"

# Each case with the reason cosign must give: the identity (SAN), the issuer,
# or the certificate chain.
for c in "other-workflow fulcio $other_workflow $WORDCOUNT_OIDC_ISSUER expected_SAN_value" \
	"other-repository fulcio $other_repo $WORDCOUNT_OIDC_ISSUER expected_SAN_value" \
	"other-issuer fulcio $identity https://accounts.google.com expected_issuer_value" \
	"other-ca other-ca $identity $WORDCOUNT_OIDC_ISSUER leaf_certificate_verification_failed"; do
	read -r name ca id issuer reason <<<"$c"
	reason=${reason//_/ }
	release "$name" "$ca" "$id" "$issuer"
	refused "$reason" "$name: cosign/verify --tag $good_tag refuses it" cosign/verify --allow-http-registry --tag "$good_tag" "$ref"
	refused "$reason" "$name: cosign/verify (any release tag) refuses it" cosign/verify --allow-http-registry "$ref"
	refused "$reason" "$name: deploy.sh --tag $good_tag refuses it" deploy "$good_tag" "$ref" "$asset"
	refused "$reason" "$name: the README's verify-blob refuses its asset" readme "$good_tag" "$asset"
done

printf '\nkeyless-test: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
