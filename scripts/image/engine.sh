#!/usr/bin/env bash
# Sourced by the image scripts: picks the container engine and exports its
# configuration. A Docker daemon that answers wins (laptops, GitHub runners);
# otherwise podman with this repository's containers.conf (this machine and
# CI). Override with ENGINE=podman|docker.
# shellcheck shell=bash

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

if [[ -z "${ENGINE:-}" ]]; then
	if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then
		ENGINE=docker
	else
		ENGINE=podman
	fi
fi
export ENGINE

if [[ "$ENGINE" == podman ]]; then
	# podman's defaults (systemd cgroups, crun, journald) do not work here; the
	# project's file says why. A caller may still point elsewhere on purpose.
	export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/containers/containers.conf}"
fi

# The local tag every target uses (make image / image-test / local-release).
IMAGE="${IMAGE:-localhost/wordcount:dev}"
export IMAGE
