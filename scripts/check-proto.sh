#!/usr/bin/env bash
# check-proto.sh: the proto contract checks that CI runs.
#
#   1. `buf lint` (STANDARD rules, see buf.yaml) must pass.
#   2. `buf breaking` against proto/compat/v1.binpb, the image of the last
#      released contract: a change that breaks the wire or generated code
#      of tandem.*.v1 (a removed field, a renumbered tag, a changed type, a
#      renamed service...) fails here. Adding fields, messages, enum values
#      or RPCs is fine. A deliberate break means a new package version
#      (tandem.link.v2), never an edit of v1.
#   3. `buf generate` must leave gen/ unchanged: gen/ is committed, and a
#      .proto edit without regenerating (or a hand edit of gen/) fails here.
#
# Run from anywhere: scripts/check-proto.sh. Needs Go (buf and the Go
# plugins are pinned as tools in go.mod) and, for the Python stubs in
# gen/python, protoc 3.21 and grpc_python_plugin (Debian 12:
# apt-get install protobuf-compiler protobuf-compiler-grpc;
# scripts/test.sh installs them).
#
# Releasing a new contract version: after the release,
#   go tool buf build -o proto/compat/v1.binpb
# and commit it, so that later changes are checked against it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The protoc that made gen/python: another version writes different Python
# code, which would show up below as a diff that is not a real change.
want_protoc="libprotoc 3.21.12"
for cmd in protoc grpc_python_plugin; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		echo "check-proto: FAIL: $cmd is not installed (Debian: apt-get install protobuf-compiler protobuf-compiler-grpc)" >&2
		exit 1
	fi
done
if [ "$(protoc --version)" != "$want_protoc" ]; then
	echo "check-proto: FAIL: gen/python was generated with $want_protoc, this machine has $(protoc --version)." >&2
	echo "check-proto: use Debian 12's protobuf-compiler, or regenerate with the new protoc and update want_protoc in $0." >&2
	exit 1
fi

echo "check-proto: buf lint"
if ! go tool buf lint; then
	echo "check-proto: FAIL: buf lint reported problems (see above)" >&2
	exit 1
fi

echo "check-proto: buf breaking against proto/compat/v1.binpb"
if ! go tool buf breaking --against proto/compat/v1.binpb; then
	echo "check-proto: FAIL: the protos break compatibility with the released contract (see above)." >&2
	echo "check-proto: keep v1 wire-compatible (add, never remove or renumber), or start a v2 package." >&2
	exit 1
fi

echo "check-proto: buf generate"
go tool buf generate

# Untracked, modified or deleted files under gen/ all count as a diff.
diff=$(git status --porcelain -- gen/)
if [ -n "$diff" ]; then
	echo "check-proto: FAIL: 'go tool buf generate' changed gen/:" >&2
	echo "$diff" >&2
	echo "check-proto: regenerate with 'go tool buf generate' and commit gen/ together with proto/." >&2
	exit 1
fi
echo "check-proto: OK (lint clean, compatible with proto/compat/v1.binpb, gen/ up to date)"
