#!/usr/bin/env bash
# The deploy workflow's steps (.github/workflows/deploy.yml), runnable by hand
# against any kube context:
#
#   deploy-step.sh resolve     which release? -> its manifests asset, verified;
#                              the image it names, verified -> REPO@sha256:<hex>
#   deploy-step.sh apply ENV   the same asset again, verified again, applied
#                              unchanged (scripts/deploy/deploy.sh
#                              --release-manifests), then wait for every
#                              Deployment
#
# Both read TAG, a release tag (vX.Y.Z[-pre]): the workflow_run's tag, or the
# dispatch input (a rollback is a dispatch of an older tag). A release is
# deployed only through its published manifests asset
# (wordcount-X.Y.Z-manifests.yaml: raw-yaml/ pinned to the release digest),
# which must match the release's SHA256SUMS and whose Sigstore bundle must
# verify for exactly that tag's release.yml; the image it names must pass
# cosign/verify --tag for that tag (both signature formats, SBOM
# attestations). So an older release's signed digest can never pass for a
# newer tag, and what runs is exactly what the release published.
#
# resolve also reads INPUT_PROMOTE / PAYLOAD_PROMOTE ("false" stops after
# dev) and prints tag=, ref= and promote= (appended to $GITHUB_OUTPUT). A
# pre-release tag is never promoted to prod automatically.
# apply reads TAG and REF (resolve's outputs): the asset must still name REF.
# GITHUB_REPOSITORY (owner/name) names the repository whose release.yml
# signed; GH_TOKEN lets gh download the release assets.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

DIE_PREFIX="NOT DEPLOYED: "


# fetch_release TAG DIR: the verified manifests asset of TAG -> prints its path.
fetch_release() {
	local tag=$1 dir=$2
	local repo_slug="${GITHUB_REPOSITORY:?GITHUB_REPOSITORY (owner/name) is not set}"
	local asset="wordcount-${tag#v}-manifests.yaml"
	rm -rf "$dir" && mkdir -p "$dir"
	gh release download "$tag" --repo "$repo_slug" --dir "$dir" \
		--pattern "$asset" --pattern "$asset.sigstore.json" --pattern SHA256SUMS >&2 ||
		die "cannot download $asset of release $tag"
	[[ -f "$dir/$asset" && -f "$dir/$asset.sigstore.json" && -f "$dir/SHA256SUMS" ]] ||
		die "release $tag has no $asset with its Sigstore bundle and SHA256SUMS"
	grep -q "  $asset\$" "$dir/SHA256SUMS" || die "$asset is not listed in the release's SHA256SUMS"
	(cd "$dir" && sha256sum --check --strict --ignore-missing SHA256SUMS >&2) ||
		die "$asset does not match the release's SHA256SUMS"
	export WORDCOUNT_GITHUB_REPOSITORY="$repo_slug"
	# shellcheck source=cosign/identity.env
	source cosign/identity.env
	cosign verify-blob --bundle "$dir/$asset.sigstore.json" \
		--certificate-identity "$(wordcount_identity_for "$tag")" \
		--certificate-oidc-issuer "$WORDCOUNT_OIDC_ISSUER" "$dir/$asset" >&2 ||
		die "$asset is not signed by $(wordcount_identity_for "$tag")"
	printf '%s\n' "$dir/$asset"
}

# The one image a manifests asset names.
image_of() {
	local refs
	refs="$(sed -n 's/^[[:space:]-]*image:[[:space:]]*["'"'"']\{0,1\}\([^"'"'"'[:space:]#]*\).*/\1/p' "$1" | sort -u)"
	[[ "$refs" =~ $DIGEST_REF_RE ]] || die "$(basename "$1") must name exactly one REPO@sha256:<hex> image, names: $(tr '\n' ' ' <<<"$refs")"
	printf '%s\n' "$refs"
}

need_tag() {
	local tag="${TAG:-}"
	[[ -n "$tag" ]] || die "nothing to deploy: set TAG (a release tag, vX.Y.Z)"
	[[ "$tag" =~ $TAG_RE ]] || die "'$tag' is not a release tag (vX.Y.Z)"
}

cmd_resolve() {
	need_tag
	local tag="$TAG" file ref
	file="$(fetch_release "$tag" .tmp/deploy/release)"
	ref="$(image_of "$file")"
	log "release $tag deploys $ref"
	# Fail here, before any environment asks for approval, when the image is
	# not this release's. The deploy jobs verify again right before they apply.
	WORDCOUNT_GITHUB_REPOSITORY="$GITHUB_REPOSITORY" cosign/verify --tag "$tag" "$ref" ||
		die "$ref failed verification for $tag; nothing will be deployed"
	local promote=true
	if [[ "${INPUT_PROMOTE:-}" == false || "${PAYLOAD_PROMOTE:-}" == false ]]; then
		promote=false
	elif [[ "$tag" == *-* ]]; then
		log "$tag is a pre-release: deploying to dev only"
		promote=false
	fi
	printf 'tag=%s\nref=%s\npromote=%s\n' "$tag" "$ref" "$promote" | tee -a "${GITHUB_OUTPUT:-/dev/null}"
	if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
		# shellcheck disable=SC2016 # the backticks are Markdown, not a command
		printf '### Deploying %s\n\n`%s` (verified: signed by %s release.yml at %s)\n' "$tag" "$ref" "$GITHUB_REPOSITORY" "$tag" >>"$GITHUB_STEP_SUMMARY"
	fi
}

cmd_apply() {
	local env_name="${1:?usage: deploy-step.sh apply ENV}"
	local ref="${REF:?REF (REPO@sha256:...) is not set}"
	[[ "$env_name" =~ ^[a-z0-9-]+$ ]] || die "environment name '$env_name' is not [a-z0-9-]+"
	[[ "$ref" =~ $DIGEST_REF_RE ]] || die "$ref is not REPO@sha256:<64 hex>"
	need_tag
	local file out=".tmp/deploy/rendered-$env_name"
	file="$(fetch_release "$TAG" ".tmp/deploy/release-$env_name")"
	[[ "$(image_of "$file")" == "$ref" ]] ||
		die "the manifests asset of $TAG now names $(image_of "$file"), not $ref as when it was resolved"
	WORDCOUNT_GITHUB_REPOSITORY="${GITHUB_REPOSITORY:?}" \
		scripts/deploy/deploy.sh --release-manifests "$file" --tag "$TAG" --target kubectl --out "$out"

	# kubectl apply returns once the API server accepted the objects; the
	# deploy is done when the new pods are ready. A failed rollout fails the
	# job (and so never promotes to the next environment).
	local deployments
	deployments="$(kubectl get -f "$out" -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}')"
	[[ -n "$deployments" ]] || die "no Deployment in $out"
	local ns name
	while read -r ns name; do
		[[ -n "$name" ]] || continue
		kubectl --namespace "$ns" rollout status "deployment/$name" --timeout="${ROLLOUT_TIMEOUT:-300s}" ||
			die "deployment/$name in $ns did not become ready; roll back by deploying the previous release tag (docs/pipeline.md)"
	done <<<"$deployments"
	log "$env_name now runs $TAG ($ref)"
	if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
		# shellcheck disable=SC2016 # the backticks are Markdown, not a command
		printf '### %s\n\n%s `%s` rolled out to %s Deployment(s)\n' "$env_name" "$TAG" "$ref" "$(grep -c . <<<"$deployments")" >>"$GITHUB_STEP_SUMMARY"
	fi
}

sub="${1:-}"
shift || true
case "$sub" in
resolve) cmd_resolve "$@" ;;
apply) cmd_apply "$@" ;;
*) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
