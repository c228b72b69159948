#!/usr/bin/env bash
# Builds Tandem's binaries into bin/: tandem-broker, tandem-sidecar, tandemctl
# (and tandem-bench when present). Static binaries (CGO off), so the same
# files run on the host and in FROM-scratch images.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
export CGO_ENABLED=0
for cmd in tandem-broker tandem-sidecar tandemctl tandem-bench; do
	if [ -d "cmd/$cmd" ]; then
		go build -trimpath -o "bin/$cmd" "./cmd/$cmd"
		echo "built bin/$cmd"
	fi
done
