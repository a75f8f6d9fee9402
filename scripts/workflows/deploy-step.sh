#!/usr/bin/env bash
# The deploy workflow's steps (.github/workflows/deploy.yml), runnable by hand
# against any kube context:
#
#   deploy-step.sh resolve     which image? -> REPO@sha256:<hex>, then verify it
#   deploy-step.sh apply ENV   scripts/deploy/deploy.sh (verify again, render,
#                              kubectl apply) and wait for every Deployment
#
# resolve reads (all optional but one of TAG / DIGEST):
#   TAG      a release tag (vX.Y.Z): resolved to its digest ONCE, here; dev and
#            prod then deploy that digest even if the tag moves in between
#   DIGEST   sha256:<64 hex>, or a full REPO@sha256:<64 hex>
#   IMAGE_REPOSITORY  default ghcr.io/<github.repository, lower-cased>
#   GITHUB_REPOSITORY owner/name whose release.yml must have signed the image
#   INPUT_PROMOTE / PAYLOAD_PROMOTE  "false" stops after dev (workflow_dispatch
#            input / repository_dispatch client_payload.promote)
# It prints ref=REPO@sha256:... and promote=true|false (and appends both to
# $GITHUB_OUTPUT). A pre-release tag (vX.Y.Z-rc.1) is never promoted to prod
# automatically; dispatch its digest by hand to do that deliberately.
#
# apply reads REF (the output of resolve) and ENV, the environment's name,
# used only for messages and the rendered folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

say() { printf 'deploy-step: %s\n' "$*" >&2; }
die() { printf 'deploy-step: NOT DEPLOYED: %s\n' "$*" >&2; exit 1; }

readonly TAG_RE='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'
readonly DIGEST_RE='^sha256:[0-9a-f]{64}$'
readonly REF_RE='^[a-z0-9.:/_-]+@sha256:[0-9a-f]{64}$'

cmd_resolve() {
	local repo_slug="${GITHUB_REPOSITORY:?GITHUB_REPOSITORY (owner/name) is not set}"
	local image_repo="${IMAGE_REPOSITORY:-ghcr.io/${repo_slug,,}}"
	local tag="${TAG:-}" digest="${DIGEST:-}" ref
	if [[ -n "$tag" && -n "$digest" ]]; then
		die "give a tag or a digest, not both"
	elif [[ -n "$digest" ]]; then
		if [[ "$digest" =~ $REF_RE ]]; then
			ref="$digest"
		elif [[ "$digest" =~ $DIGEST_RE ]]; then
			ref="$image_repo@$digest"
		else
			die "digest '$digest' is not sha256:<64 lowercase hex> or REPO@sha256:<64 hex>"
		fi
	elif [[ -n "$tag" ]]; then
		[[ "$tag" =~ $TAG_RE ]] || die "'$tag' is not a release tag (vX.Y.Z)"
		local sum tls=()
		# Plain HTTP only for a registry on this machine (local rehearsals).
		[[ "${image_repo%%/*}" =~ ^(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] && tls=(--tls-verify=false)
		# The digest of the manifest's raw bytes: what was signed and what the
		# cluster will pull (same computation as scripts/deploy/deploy.sh).
		# Piped straight into sha256sum: $(...) would drop a trailing newline
		# and give the digest of different bytes.
		sum="$(set -o pipefail; skopeo inspect "${tls[@]}" --raw "docker://$image_repo:$tag" | sha256sum)" ||
			die "cannot read $image_repo:$tag from the registry"
		ref="$image_repo@sha256:${sum%% *}"
		say "resolved $image_repo:$tag -> $ref"
	else
		die "nothing to deploy: set TAG or DIGEST"
	fi
	[[ "$ref" =~ $REF_RE ]] || die "$ref is not REPO@sha256:<64 hex>"

	# Fail here, before any environment asks for approval, when the image is
	# not ours. The deploy jobs verify again right before they apply.
	WORDCOUNT_GITHUB_REPOSITORY="$repo_slug" cosign/verify "$ref" ||
		die "$ref failed verification; nothing will be deployed"
	local promote=true
	if [[ "${INPUT_PROMOTE:-}" == false || "${PAYLOAD_PROMOTE:-}" == false ]]; then
		promote=false
	elif [[ "$tag" == *-* ]]; then
		say "$tag is a pre-release: deploying to dev only"
		promote=false
	fi
	printf 'ref=%s\npromote=%s\n' "$ref" "$promote" | tee -a "${GITHUB_OUTPUT:-/dev/null}"
	if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
		# shellcheck disable=SC2016 # the backticks are Markdown, not a command
		printf '### Deploying\n\n`%s` (verified: signed by %s release.yml)\n' "$ref" "$repo_slug" >>"$GITHUB_STEP_SUMMARY"
	fi
}

cmd_apply() {
	local env_name="${1:?usage: deploy-step.sh apply ENV}"
	local ref="${REF:?REF (REPO@sha256:...) is not set}"
	[[ "$env_name" =~ ^[a-z0-9-]+$ ]] || die "environment name '$env_name' is not [a-z0-9-]+"
	[[ "$ref" =~ $REF_RE ]] || die "$ref is not REPO@sha256:<64 hex>"
	local out=".tmp/deploy/rendered-$env_name"
	WORDCOUNT_GITHUB_REPOSITORY="${GITHUB_REPOSITORY:?}" \
		scripts/deploy/deploy.sh --image "$ref" --target kubectl --out "$out"

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
			die "deployment/$name in $ns did not become ready; roll back by deploying the previous digest (docs/pipeline.md)"
	done <<<"$deployments"
	say "$env_name now runs $ref"
	if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
		# shellcheck disable=SC2016 # the backticks are Markdown, not a command
		printf '### %s\n\n`%s` rolled out to %s Deployment(s)\n' "$env_name" "$ref" "$(grep -c . <<<"$deployments")" >>"$GITHUB_STEP_SUMMARY"
	fi
}

sub="${1:-}"
shift || true
case "$sub" in
resolve) cmd_resolve "$@" ;;
apply) cmd_apply "$@" ;;
*) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
