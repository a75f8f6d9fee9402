#!/usr/bin/env bash
# Installs the pinned tools `make workflows-check` needs, skipping each one
# already at its pin, so calling it before every check costs well under 1 s:
#   pip:   zizmor (security audit of the workflows) and yamllint, into a venv
#          of their own under ~/.cache keyed by the pins (never the system
#          Python; a pin bump gets a fresh venv, not an in-place re-resolve).
#          yamllint also brings PyYAML, which check-policy.py uses.
#   cargo: action-validator (schema validation of workflows against the
#          SchemaStore schemas compiled into it), from the Rust crate registry.
#          Chosen over actionlint: PyPI only has third-party forks' wheels of
#          actionlint (see ../shared/TOOLS.md) and the upstream wrapper
#          downloads a binary from GitHub at install time.
#   apt:   shellcheck (our scripts), only when missing.
#
# `install.sh --print-venv` prints the venv's bin dir for check.sh.
# Bumping a pin: change it here and in docs/pipeline.md ("Tools").
set -euo pipefail

readonly ZIZMOR=1.32.0
readonly YAMLLINT=1.38.0
readonly ACTION_VALIDATOR=0.9.0

VENV="${WORKFLOW_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wordcount/workflows-zizmor$ZIZMOR-yamllint$YAMLLINT}"
if [[ "${1:-}" == "--print-venv" ]]; then
	printf '%s\n' "$VENV/bin"
	exit 0
fi

log() { printf 'workflows install: %s\n' "$*" >&2; }

# --- pip ---------------------------------------------------------------------
pip_have() { "$VENV/bin/pip" show "$1" 2>/dev/null | awk '/^Version:/ {print $2}' || true; }
if [[ "$(pip_have zizmor)" != "$ZIZMOR" || "$(pip_have yamllint)" != "$YAMLLINT" ]]; then
	log "creating $VENV (zizmor $ZIZMOR, yamllint $YAMLLINT)"
	rm -rf "$VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "zizmor==$ZIZMOR" "yamllint==$YAMLLINT"
fi

# --- cargo -------------------------------------------------------------------
have=$(action-validator --version 2>/dev/null | awk '{print $NF}' || true)
if [[ "$have" != "$ACTION_VALIDATOR" ]]; then
	log "installing action-validator $ACTION_VALIDATOR (found: ${have:-none})"
	# A private target dir keeps the tool build out of the project's target/.
	CARGO_TARGET_DIR="${TMPDIR:-/tmp}/wordcount-tool-build/action-validator" \
		nice -n 10 cargo install --quiet --locked --version "$ACTION_VALIDATOR" action-validator
	rm -rf "${TMPDIR:-/tmp}/wordcount-tool-build/action-validator"
fi

# --- apt ---------------------------------------------------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
	log "apt-get install shellcheck"
	sudo_cmd=()
	if ((EUID != 0)); then sudo_cmd=(sudo); fi
	"${sudo_cmd[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi
