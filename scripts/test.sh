#!/usr/bin/env bash
# Runs every check and test of the repository, the way CI does.
#
#   scripts/test.sh            # from any directory
#
# On a fresh Debian machine (run as root) it first installs the programs the
# end-to-end tests drive: kafka-python, kcat, etcd, nats-server, protoc and
# the gRPC Python plugin, nftables (network partitions), Prometheus (its
# server and promtool check the alert rules). Then, in order, and stopping
# at the first failure:
#
#   1. gofmt        every .go file outside gen/ must be formatted
#   2. go vet       ./...
#      staticcheck  ./... (honnef.co/go/tools, pinned as a go.mod tool)
#   3. proto check  scripts/check-proto.sh (buf lint, generated code up to date)
#   4. build        scripts/build.sh (bin/tandem-broker, bin/tandem-sidecar, ...)
#   5. go test      -race over every package, end-to-end tests included (they
#                   start the binaries built in step 4)
#   6. fuzz smoke   each Fuzz target on ten thousand inputs
#
# Environment:
#   TANDEM_TEST_TIMEOUT  go test -timeout (default 25m)
#   TANDEM_FUZZTIME      -fuzztime per fuzz target (default 10000x, ten thousand
#                        inputs; a duration such as 30s works too; 0 skips)
#   TANDEM_TEST_RUN      passed to go test -run (default: every test)
#   TANDEM_TEST_LOG_DIR  keep the logs of processes started by tests there
#   TANDEM_TEST_VERBOSE  print process logs even for passing tests
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- 0. Dependencies -------------------------------------------------------
# Debian packages the tests need, each with a command that proves it is
# present ("-": its dpkg entry is enough).
# shellcheck source=scripts/lib.sh
. scripts/lib.sh # ensure_packages
install_deps() {
	ensure_packages python3-kafka:- kcat:kcat etcd-server:etcd nats-server:nats-server \
		iproute2:ip nftables:nft protobuf-compiler:protoc protobuf-compiler-grpc:grpc_python_plugin \
		python3-grpcio:- python3-protobuf:- python3-confluent-kafka:- prometheus:promtool || exit 1
}

step "dependencies"
install_deps
command -v go >/dev/null 2>&1 || {
	echo "scripts/test.sh: the Go toolchain (go) is not on PATH" >&2
	exit 1
}
go version

# --- 1. gofmt -----------------------------------------------------------------
step "gofmt"
unformatted=$(git ls-files -co --exclude-standard -- '*.go' ':(exclude)gen/**' | xargs -r gofmt -l)
if [[ -n $unformatted ]]; then
	echo "these files need gofmt -w:" >&2
	echo "$unformatted" >&2
	exit 1
fi

# --- 2. go vet ----------------------------------------------------------------
step "go vet"
go vet ./...

# staticcheck finds what vet does not: values assigned and never read (a
# shadowed err that hid a failed wait in broker/compact.go), deprecated
# APIs, unreachable code. Pinned in go.mod's tool block, so the first run on
# a new machine builds it (about a minute).
step "staticcheck"
go tool staticcheck ./...

# --- 3. proto -----------------------------------------------------------------
if [[ -x scripts/check-proto.sh || -f scripts/check-proto.sh ]]; then
	step "proto check"
	bash scripts/check-proto.sh
fi

# --- 4. build -----------------------------------------------------------------
step "build"
if [[ -f scripts/build.sh ]]; then
	bash scripts/build.sh
else
	echo "scripts/test.sh: scripts/build.sh is missing; the end-to-end tests need the binaries it builds" >&2
	exit 1
fi

# --- 5. tests -----------------------------------------------------------------
step "go test -race"
test_args=(-race -count=1 -timeout "${TANDEM_TEST_TIMEOUT:-25m}")
if [[ -n ${TANDEM_TEST_RUN:-} ]]; then
	test_args+=(-run "$TANDEM_TEST_RUN")
fi
go test "${test_args[@]}" ./...

# --- 6. fuzz smoke ------------------------------------------------------------
# A count, not a duration: with a duration, Go 1.26's fuzzing coordinator can
# report a spurious "context deadline exceeded" failure when the time runs out
# while a worker is busy (golang/go#75804, fixed in Go 1.27); a loaded 2-core
# machine hits it now and then. 10000 inputs take 1-25 s per target here.
fuzztime=${TANDEM_FUZZTIME:-10000x}
if [[ $fuzztime != 0 && $fuzztime != 0s ]]; then
	step "fuzz smoke (-fuzztime $fuzztime per target)"
	# Every "func FuzzXxx(" in a _test.go file outside gen/, as "dir name".
	while read -r file name; do
		dir=$(dirname "$file")
		echo "--- ./$dir $name"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$dir"
	done < <(git ls-files -co --exclude-standard -- '*_test.go' ':(exclude)gen/**' |
		xargs -r grep -Ho '^func Fuzz[A-Za-z0-9_]*' |
		sed -e 's/:func / /' | sort -u)
fi

step "all checks passed"
