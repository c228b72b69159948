#!/usr/bin/env bash
# check-proto.sh: the proto contract checks that CI runs.
#
#   1. `buf lint` (STANDARD rules, see buf.yaml) must pass.
#   2. `buf generate` must leave gen/ unchanged: gen/ is committed, and a
#      .proto edit without regenerating (or a hand edit of gen/) fails here.
#
# Run from anywhere: scripts/check-proto.sh. Needs only Go (the buf and
# protoc-gen-go* versions are pinned as tools in go.mod).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "check-proto: buf lint"
if ! go tool buf lint; then
	echo "check-proto: FAIL: buf lint reported problems (see above)" >&2
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
echo "check-proto: OK (lint clean, gen/ up to date)"
