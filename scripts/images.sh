#!/usr/bin/env bash
# Builds Tandem's container images from the static binaries, with no network
# pulls (every image is FROM scratch):
#
#   tandem-broker:TAG    bin/tandem-broker
#   tandem-sidecar:TAG   bin/tandem-sidecar, bin/tandemctl, grpc-health-probe
#
# Usage: scripts/images.sh [TAG]      (TAG defaults to $TANDEM_IMAGE_TAG or "dev")
#
# Steps: scripts/build.sh builds the binaries (CGO_ENABLED=0, so they run on
# an empty base image); grpc-health-probe is built from its Go module at the
# pinned version below into bin/ (outside Tandem's go.mod: `go install
# pkg@version` ignores the current module); then each image is built from a
# small staged context holding only what it copies. The Dockerfiles are in
# deploy/docker/.
#
# Environment:
#   TANDEM_IMAGE_TAG        tag when no argument is given (default dev)
#   TANDEM_IMAGES_NO_BUILD  set to 1 to skip scripts/build.sh (binaries
#                           already built)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tag=${1:-${TANDEM_IMAGE_TAG:-dev}}
# grpc-health-probe version; a scratch image has no shell, so Docker
# healthchecks run this binary in exec form.
probe_module=github.com/grpc-ecosystem/grpc-health-probe
probe_version=v0.4.62

command -v docker >/dev/null || { echo "images.sh: docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "images.sh: cannot reach the Docker engine (is dockerd running, may this user use it?)" >&2; exit 1; }

if [ "${TANDEM_IMAGES_NO_BUILD:-0}" != 1 ]; then
	scripts/build.sh
fi
for b in tandem-broker tandem-sidecar tandemctl; do
	[ -x "bin/$b" ] || { echo "images.sh: bin/$b is missing; scripts/build.sh did not build it" >&2; exit 1; }
done

# Build the probe into bin/ unless the pinned version is already there.
probe=bin/grpc-health-probe
stamp=bin/.grpc-health-probe.version
if [ ! -x "$probe" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$probe_version" ]; then
	echo "building $probe_module@$probe_version"
	CGO_ENABLED=0 GOBIN="$root/bin" GOFLAGS=-trimpath go install "$probe_module@$probe_version"
	echo "$probe_version" >"$stamp"
fi

# Without buildx the Docker CLI falls back to the classic builder; say so
# explicitly so that it does not refuse when DOCKER_BUILDKIT=1 is set.
if ! docker buildx version >/dev/null 2>&1; then
	export DOCKER_BUILDKIT=0
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/tandem-images.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

# build IMAGE DOCKERFILE: builds from the staged context in $ctx/IMAGE.
build() {
	local image=$1 dockerfile=$2
	# The classic builder prints a deprecation notice on every build: keep
	# the output quiet unless the build fails.
	if ! docker build --pull=false -f "$dockerfile" -t "$image:$tag" \
		--label "org.opencontainers.image.source=https://github.com/tandem-io/tandem" \
		--label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
		"$ctx/$image" >"$ctx/$image.log" 2>&1; then
		cat "$ctx/$image.log" >&2
		echo "images.sh: building $image:$tag failed" >&2
		exit 1
	fi
	echo "built image $image:$tag"
}

mkdir -p "$ctx/tandem-broker/empty"
cp bin/tandem-broker "$ctx/tandem-broker/"
build tandem-broker deploy/docker/broker.Dockerfile

mkdir -p "$ctx/tandem-sidecar/empty" "$ctx/tandem-sidecar/bin"
cp bin/tandem-sidecar bin/tandemctl "$probe" "$ctx/tandem-sidecar/bin/"
build tandem-sidecar deploy/docker/sidecar.Dockerfile
