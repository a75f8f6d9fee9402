#!/usr/bin/env bash
# make mock-prod, after `make local-release` (the Makefile runs it first):
# the image in the loopback registry, signed by the rehearsal key, goes
# through the real deploy step - resolve, verify the signature, render
# raw-yaml/ to the verified digest - whose podman target runs
# scripts/manifests/podman-play.sh on the rendered manifests (the, coffee:
# own word, uid 65532, read-only root; torn down afterwards).
#
# The loopback registry that local-release started is stopped on exit.
# Without the signing step (a quick look at a local image, not mock-production):
#   scripts/manifests/podman-play.sh raw-yaml localhost/wordcount:dev
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
trap 'scripts/deploy/registry.sh stop || true' EXIT
scripts/manifests/install.sh --podman
scripts/deploy/deploy.sh --from-local-release --target podman
