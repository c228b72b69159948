#!/usr/bin/env bash
# Builds Tandem, starts a local three-node cluster (scripts/cluster.sh) and
# shows it replicating: 1000 records produced to the leader with kcat, read
# back from a follower, every replica's position (tandemctl status), the
# topic's replicas and ISR (tandemctl topics), the bytes each node holds
# (tandemctl log-dirs) and a byte-level comparison of the three WALs
# (tandemctl verify).
#
#   scripts/demo.sh          # leaves the cluster running; stop it with scripts/cluster.sh down
#   scripts/demo.sh --down   # stops it at the end
set -euo pipefail
cd "$(dirname "$0")/.."
export TANDEM_HOME="${TANDEM_HOME:-$PWD/.tandem}"

if ! command -v kcat >/dev/null; then
	echo "installing kcat (Debian package) ..."
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; } >/dev/null
fi

scripts/build.sh
scripts/cluster.sh down >/dev/null 2>&1 || true
scripts/cluster.sh up

echo
echo "== producing 1000 records to the leader (node 1, 127.0.0.1:9092) with acks=all"
seq 1 1000 | sed 's/^/record-/' | kcat -P -b 127.0.0.1:9092 -t demo -X acks=all -X topic.metadata.refresh.interval.ms=1000

echo "== waiting for both followers to reach the leader's LSN"
for _ in $(seq 1 100); do
	if bin/tandemctl --sidecar 127.0.0.1:9192 verify >/dev/null 2>&1; then break; fi
	sleep 0.2
done

echo
echo "== replication status (tandemctl status, like pg_stat_replication)"
bin/tandemctl --sidecar 127.0.0.1:9192 status

echo
echo "== reading the topic back from node 3 (a follower, 127.0.0.1:9094)"
n=$(kcat -C -b 127.0.0.1:9094 -t demo -o beginning -e -q | wc -l)
echo "node 3 served $n records"

echo
echo "== the topic as Kafka clients see it, asked of node 2 (tandemctl topics: leader, replicas, in-sync replicas)"
bin/tandemctl topics --bootstrap 127.0.0.1:9093 demo

echo
echo "== the bytes of the topic each node holds (tandemctl log-dirs: every node answers for its own copy)"
bin/tandemctl log-dirs --bootstrap 127.0.0.1:9093 demo

echo
echo "== comparing the three WALs (tandemctl verify)"
bin/tandemctl --sidecar 127.0.0.1:9192 verify

if [ "${1:-}" = "--down" ]; then
	scripts/cluster.sh down
else
	echo
	echo "The cluster is still running: scripts/cluster.sh status | kill 1 | start 1 | down"
fi
