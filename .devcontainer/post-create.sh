#!/usr/bin/env bash
# Runs once when the development container is created: every group of
# scripts/install.sh (idempotent and pinned, the installer the CI gates call),
# then fetches the crates so the first build works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh supply-chain image signing fuzz browser manifests podman workflows observability
cargo fetch --locked
echo "post-create: done; run 'make help'"
