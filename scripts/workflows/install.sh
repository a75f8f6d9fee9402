#!/usr/bin/env bash
# Installs the pinned tools `make workflows-check` needs, skipping each one
# already at its pin, so calling it before every check costs well under 1 s:
#   pip:   zizmor (security audit of the workflows) and yamllint (which brings
#          the PyYAML check-policy.py uses), from the project's one hash-locked
#          Python environment (scripts/lib/python.sh, scripts/pyproject.toml).
#   cargo: action-validator (schema validation of workflows against the
#          SchemaStore schemas compiled into it), pinned in scripts/tools.env.
#          Chosen over actionlint: PyPI only has third-party forks' wheels of
#          actionlint (see ../shared/TOOLS.md) and the upstream wrapper
#          downloads a binary from GitHub at install time.
#   apt:   shellcheck (our scripts).
#
# `install.sh --print-venv` prints the Python environment's bin dir for check.sh.
set -euo pipefail
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "${1:-}" == "--print-venv" ]]; then
	"$scripts/lib/python.sh"
	exit 0
fi

"$scripts/lib/python.sh" >/dev/null
# shellcheck source=scripts/lib/cargo-tool.sh
source "$scripts/lib/cargo-tool.sh"
cargo_tool action-validator "$ACTION_VALIDATOR"
# shellcheck source=scripts/lib/apt.sh
source "$scripts/lib/apt.sh"
apt_install_missing shellcheck
