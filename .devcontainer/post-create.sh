#!/usr/bin/env bash
# Runs once when the development container is created: every scripts/*/install.sh
# (each idempotent and pinned, the same scripts the CI gates call), then
# fetches the crates so the first build works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
for installer in scripts/*/install.sh; do
	echo "post-create: $installer"
	bash "$installer"
done
scripts/manifests/install.sh --podman
cargo fetch --locked
echo "post-create: done; run 'make help'"
