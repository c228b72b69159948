#!/usr/bin/env bash
# Runs the Jepsen-style failover test (e2e TestJepsenFailover) for as long
# as asked: a real etcd, three broker+sidecar pairs with automatic
# failover, acks=all producers with unique values and min.insync.replicas=2,
# while a nemesis SIGKILLs and SIGSTOPs the leader or a follower (whole
# pairs, only sidecars or only brokers), stops a whole pair, a broker alone
# or a sidecar alone cleanly (SIGTERM, as a rolling restart or an upgrade
# of one binary does),
# cuts the network (a node from every other node
# and etcd, from etcd only, or from one other node: every node and etcd run
# in network namespaces of their own) or floods a node's Kafka port with
# more connections than its --max-connections (400 here), and brings them
# back. At the end it prints
#
#   jepsen: duration D, faults N, operations N, acknowledged N,
#   failed/unknown N, read N, lost 0, duplicated 0, failovers N,
#   longest window without a leader D; brokers taking writes sampled N
#   times, two or more at once in N (windows...); end offsets asked of
#   every node N times: N answers from a leader, N OFFSET_NOT_AVAILABLE,
#   N from a former leader below the end seen, 0 went back; consumer group: read N values,
#   N of them again, rebalance callbacks: ...; consumer-protocol group:
#   read N values, N of them again, callbacks: ...; transactions: N committed,
#   N aborted, N unknown to the client (N of them committed whole),
#   N values read, 0 problems
#
# and fails when an acknowledged value was lost or read twice, when the
# nodes' WALs are not identical (tandemctl verify), when a consumer
# group member reading throughout (auto-commit, its coordinator moving with
# every failover), or a member of a KIP-848 consumer-protocol group doing
# the same, does not read every acknowledged value, or when a
# transactional producer running alongside (transactions of three values
# over three partitions, one in five aborted) finds, reading
# read_committed, a committed transaction not whole or read twice, an
# aborted one's values, or a transaction whose outcome it does not know
# neither whole nor absent, when franz-go tells either group member that
# data it read was lost (kgo.ErrDataLoss), when two brokers took writes
# in two samples in a row, or when the topic's end offset (ListOffsets
# latest, asked of every node every 20 ms) went back: a leader of the
# newest epoch answered below an end already given. Each group's rewinds (where a member started
# reading again below what it had read) are listed after the summary.
#
#   scripts/soak.sh            # 30 minutes
#   scripts/soak.sh 8h         # any Go duration
#
# Environment:
#   TANDEM_TEST_LOG_DIR  keep every process's log there, and each group
#                        member's franz-go log (group-classic.log,
#                        group-848.log); default: a directory under
#                        /tmp, printed at the end
#   TANDEM_E2E_BROKER    test another broker binary instead of bin/tandem-broker
#
# The binaries are rebuilt first (scripts/build.sh). Needs root, etcd, ip
# and nft (Debian's etcd-server, iproute2 and nftables, installed with
# apt-get when missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration="${1:-30m}"
if ! [[ "$duration" =~ ^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$ ]]; then
	echo "soak.sh: '$duration' is not a Go duration (e.g. 90s, 30m, 8h)" >&2
	exit 2
fi
# shellcheck source=scripts/lib.sh
. scripts/lib.sh # ensure_packages
ensure_packages etcd-server:etcd iproute2:ip nftables:nft || exit 2
logs="${TANDEM_TEST_LOG_DIR:-$(mktemp -d /tmp/tandem-soak.XXXXXX)}"
mkdir -p "$logs"

scripts/build.sh >/dev/null
echo "soak: running TestJepsenFailover for $duration (process logs in $logs)"
# The go test timeout leaves room for recovery and the final checks.
status=0
TANDEM_JEPSEN_DURATION="$duration" TANDEM_TEST_LOG_DIR="$logs" \
	go test -race -count=1 -timeout 0 -run '^TestJepsenFailover$' -v ./e2e/ 2>&1 | tee "$logs/soak.out" || status=$?
grep '^jepsen:' "$logs/soak.out" || true
if [ "$status" -ne 0 ] || ! grep -q '^--- PASS: TestJepsenFailover' "$logs/soak.out"; then
	echo "soak: FAILED (see $logs/soak.out)" >&2
	exit 1
fi
echo "soak: passed"
