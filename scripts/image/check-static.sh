#!/usr/bin/env bash
# check-static.sh BINARY [BUILD_PATH...]: fails unless BINARY is statically
# linked (no PT_INTERP, no NEEDED entry) and contains none of the given build
# paths (as "PATH/" in its strings). Used by build-static.sh on every build;
# test-image.sh proves it refuses a dynamic binary and a leaked path.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
bin=$1
shift
status=0
# `grep >/dev/null`, not `grep -q`: -q exits at the first match, the producer
# then dies of SIGPIPE and pipefail turns the match into a failure, so a
# leaky binary would pass.
if readelf -lW "$bin" | grep 'Requesting program interpreter' >/dev/null; then
	log "$bin has a program interpreter (PT_INTERP): not static"
	status=1
fi
if readelf -dW "$bin" | grep '(NEEDED)' >/dev/null; then
	log "$bin needs shared libraries:"
	readelf -dW "$bin" | grep '(NEEDED)' >&2
	status=1
fi
# A build path in the binary makes it depend on where it was built (so two
# builds differ) and leaks the builder's layout.
for p in "$@"; do
	[[ -n "$p" && "$p" != / ]] || continue
	if strings -a "$bin" | grep -F -- "$p/" >/dev/null; then
		log "build path $p left in $bin, e.g.:"
		strings -a "$bin" | grep -F -- "$p/" | head -3 | sed 's/^/  /' >&2
		status=1
	fi
done
exit "$status"
