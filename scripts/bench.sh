#!/usr/bin/env bash
# Benchmarks Tandem on this machine and prints ONE table with every figure
# side by side (docs/benchmarks.md explains each number).
#
#   scripts/bench.sh          # everything that exists: disk, standalone broker,
#                             # three-node cluster (when bin/tandem-sidecar
#                             # exists), JetStream (nats-server, installed
#                             # with apt-get when missing and run as root);
#                             # about 5 minutes with DURATION=15s
#   scripts/bench.sh standalone   # disk + standalone broker only
#   scripts/bench.sh cluster      # three-node cluster only (lag, catch-up)
#   scripts/bench.sh jetstream    # the JetStream comparison only
#   scripts/bench.sh rss          # broker RSS during RSS_MINUTES (default 5) of full-speed produce
#   scripts/bench.sh txn          # transactional producers (PER_TXN records per
#                                 # transaction) on a standalone broker and on
#                                 # the three-node cluster
#   scripts/bench.sh rebalance    # a consumer group on the three-node cluster
#                                 # through a member joining and one leaving,
#                                 # classic eager, classic cooperative and the
#                                 # KIP-848 consumer protocol (REBALANCE_RATE
#                                 # records/s over REBALANCE_PARTITIONS;
#                                 # REBALANCE_PROTOCOLS picks some)
#   scripts/bench.sh lag-sweep    # follower lag at each rate of LAG_RATES on one
#                                 # three-node cluster, and its chart (BENCH_CHARTS)
#   scripts/bench.sh catchup-limit  # acks=-1 latency at LOW_RATE while a follower
#                                 # catches up, at each --catchup-bytes-per-sec
#                                 # of CATCHUP_LIMITS
#
# What it runs, in order (each a `bin/tandem-bench` subcommand):
#   disk        sequential write bandwidth of the disk holding the data dirs
#   standalone  a `bin/tandem-broker` on a temporary data dir and a free port:
#               produce acks=1 and acks=-1 at full speed, acks=-1 at a low fixed
#               rate and one record at a time (latency), then consume
#               everything back
#   cluster     `scripts/cluster.sh up` with its own TANDEM_HOME (Kafka ports
#               9092-9094; the same pairs on free ports when those are taken):
#               produce acks=1, acks=-1, acks=-1 at low rate and one record at
#               a time (JetStream sync publish's load), follower lag at
#               half the acks=1 and at half the acks=-1 rate; then, on a
#               fresh cluster holding CATCHUP_RECORDS records, catch-up of a
#               follower that was stopped while CATCHUP_RECORDS more were
#               produced; between measurements it waits until the followers
#               caught up
#   jetstream   three nats-server processes (JetStream, file storage, R3) on
#               loopback: async (PublishAsync, 4000 outstanding) and sync
#               (Publish, one at a time) of the same records through nats.go
#   rss         only with RSS_MINUTES > 0 or the `rss` argument
#   txn         only with the `txn` argument: PRODUCERS transactional
#               producers, each committing transactions of PER_TXN records
#               one after the other, on a standalone broker and then on the
#               three-node cluster: committed MB/s and the time from a
#               transaction's first record to its commit's answer
#   lag-sweep   only with the `lag-sweep` argument: `scripts/cluster.sh up` as
#               above, then one lag run (acks=1 to node 1, read from node 2)
#               per rate of LAG_RATES, waiting for the followers in between:
#               where on this machine the followers stop keeping up
#   catchup-limit  only with the `catchup-limit` argument: for each limit of
#               CATCHUP_LIMITS a fresh cluster whose sidecars run with
#               --catchup-bytes-per-sec LIMIT; node 3 is stopped while
#               CATCHUP_RECORDS records are produced, then acks=-1 at LOW_RATE
#               for DURATION without a catch-up, then again while node 3
#               starts and catches up; prints how long node 3 took to be back
#               in the ISR
#
# Environment (all optional):
#   DURATION          measured window of each produce run (default 20s)
#   RECORD_BYTES      record value size (default 1024)
#   PARTITIONS        partitions of the bench topics (default 1)
#   PRODUCERS         franz-go clients of the full-speed produce runs (default 2:
#                     on two cores one client is the bottleneck before the
#                     broker is; the fixed-rate and one-at-a-time runs use one)
#   LOW_RATE          records/s of the low-load latency runs (default 1000)
#   CATCHUP_RECORDS   backlog for the catch-up run (default 1000000, 1 GB at 1 KiB)
#   LAG_RATES         records/s of the lag-sweep runs (default "5000 10000 20000
#                     40000 60000 80000 100000 120000")
#   CATCHUP_LIMITS    --catchup-bytes-per-sec values of the catchup-limit runs
#                     (default "0 100000000 50000000"; 0 = no limit)
#   LAG_LINGER        producer linger of the lag runs (default 10ms, franz-go's
#                     own default; the other runs use 0 so that latency is the
#                     broker's). Lag counts from the leader's ack, so the
#                     linger is not part of it; it sets how many records share
#                     one WAL entry, which is what the followers pay for
#   PER_TXN           records per transaction of the txn runs (default 100)
#   DISK_BYTES        bytes per sequential disk run (default 1GiB; 3 runs, median)
#   RSS_MINUTES       minutes of full-speed produce for the RSS run (default 0 = off;
#                     5 when the `rss` argument is given; fractions such as 0.5 work)
#   RSS_INTERVAL      time between RSS samples (default 15s)
#   RSS_RETENTION     --log-retention-bytes of the RSS run's broker (default 4GiB;
#                     minutes at full speed would otherwise fill the disk)
#   JETSTREAM_CLIENT  natsgo (default: nats.go) or minimal (tandem-bench's own NATS client)
#   BENCH_OUT         directory for the result JSON files (default: a new temp dir)
#   BENCH_CHARTS      directory to write PNG charts into (default: none; e.g. docs)
#   TMPDIR            where the data dirs go: keep it on the disk you mean to measure
#
# Not part of scripts/test.sh: it takes minutes and its figures depend on
# whatever else the machine is doing. Every process it starts is stopped on
# exit, on Ctrl-C and on error. A measurement that fails is reported and
# left out of the table; the others still run. A phase that might not fit on
# the disk is skipped with a message.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# shellcheck source=scripts/lib.sh
. scripts/lib.sh # procs_share, ensure_packages

MODE=${1:-all}
if [ "$MODE" = _node ]; then # internal: scripts/bench.sh _node start|stop N HOME (see own_node)
	NODE_ACTION=$2 NODE_N=$3 NODE_HOME=$4
fi
case "$MODE" in
_node) ;;
all | standalone | cluster | jetstream | rss | lag-sweep | catchup-limit | txn | rebalance) ;;
*)
	echo "usage: scripts/bench.sh [all|standalone|cluster|jetstream|rss|lag-sweep|catchup-limit|txn|rebalance]" >&2
	exit 2
	;;
esac

DURATION=${DURATION:-20s}
RECORD_BYTES=${RECORD_BYTES:-1024}
PARTITIONS=${PARTITIONS:-1}
PRODUCERS=${PRODUCERS:-2}
LOW_RATE=${LOW_RATE:-1000}
CATCHUP_RECORDS=${CATCHUP_RECORDS:-1000000}
CATCHUP_LIMITS=${CATCHUP_LIMITS:-0 100000000 50000000}
LAG_LINGER=${LAG_LINGER:-10ms}
LAG_RATES=${LAG_RATES:-5000 10000 20000 40000 60000 80000 100000 120000}
DISK_BYTES=${DISK_BYTES:-1GiB}
PER_TXN=${PER_TXN:-100}
RSS_MINUTES=${RSS_MINUTES:-0}
if [ "$MODE" = rss ] && [ "$RSS_MINUTES" = 0 ]; then
	RSS_MINUTES=5
fi

BENCH="$ROOT/bin/tandem-bench"
if [ "$MODE" != _node ]; then
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench.XXXXXX")
	OUT=${BENCH_OUT:-$WORK/results}
	mkdir -p "$OUT"
fi

PIDS=()
CLUSTER_HOME=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && wait "$pid" 2>/dev/null || true
	done
	if [ -n "$CLUSTER_KIND" ]; then
		cluster_down
	fi
	# Keep the results (and logs, if something failed); drop the data.
	find "$WORK" -mindepth 1 -maxdepth 1 ! -name results ! -name '*.log' -exec rm -rf {} + 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		echo "bench: failed (exit $rc); logs and results in $WORK" >&2
	fi
	exit $rc
}
if [ "$MODE" != _node ]; then
	trap cleanup EXIT
	trap 'exit 130' INT TERM
fi

say() { printf '\n==> %s\n' "$*" >&2; }

# try CMD...: run one measurement; when it fails, say so and go on with the
# next one (its row is then missing from the table).
try() {
	local rc=0
	"$@" || rc=$?
	if [ $rc -ne 0 ]; then
		say "FAILED (exit $rc): ${*:1:2} ...; continuing without this row"
	fi
	return 0
}

# seconds DURATION: "15s", "2m", "1h" or a plain number of seconds.
seconds() {
	case "$1" in
	*ms) echo 1 ;;
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	*h) echo $((${1%h} * 3600)) ;;
	*) echo "$1" ;;
	esac
}

# enough_space GB WHAT: true when the file system of $WORK has GB GiB free.
# Full-speed produce writes hundreds of MB a second; a full disk would break
# every other program on the machine, so a phase that may not fit is skipped.
enough_space() {
	local need=$1 avail
	avail=$(df --output=avail -BG "$WORK" | tail -1 | tr -dc 0-9)
	if [ "${avail:-0}" -lt "$need" ]; then
		say "$2: skipped (needs about ${need} GiB free in $WORK, $avail GiB available)"
		return 1
	fi
}

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT SECONDS: poll until something accepts TCP connections there.
wait_port() {
	local port=$1 deadline=$((SECONDS + $2))
	while [ $SECONDS -lt $deadline ]; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "bench: nothing listens on 127.0.0.1:$port after $2s" >&2
	return 1
}

# start_standalone [FLAGS]: a broker on a fresh data dir; sets BROKER_PID and BROKER_ADDR.
start_standalone() { # [extra broker flags]
	local port
	port=$(free_port)
	mkdir -p "$WORK/standalone"
	bin/tandem-broker --node-id 1 --data-dir "$WORK/standalone" \
		--listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
		--log-level warn "$@" >"$WORK/standalone.log" 2>&1 &
	BROKER_PID=$!
	PIDS+=("$BROKER_PID")
	BROKER_ADDR="127.0.0.1:$port"
	wait_port "$port" 15
}

stop_standalone() {
	kill "$BROKER_PID" 2>/dev/null || true
	wait "$BROKER_PID" 2>/dev/null || true
	rm -rf "$WORK/standalone"
}

produce() { # produce NAME ACKS BROKERS TOPIC WATCHPID [extra flags]
	local name=$1 acks=$2 brokers=$3 topic=$4 pid=$5
	shift 5
	say "produce $name (acks=$acks $*)"
	local watch=()
	if [ -n "$pid" ]; then watch=(--watch-pid "$pid"); fi
	try "$BENCH" produce --brokers "$brokers" --topic "$topic" --acks "$acks" \
		--record-bytes "$RECORD_BYTES" --partitions "$PARTITIONS" --duration "$DURATION" \
		"${watch[@]}" --name "$name" --out "$OUT/$name.json" "$@"
}

run_disk() {
	say "disk: $DISK_BYTES sequential writes + fsync, 3 runs, in $WORK"
	try "$BENCH" disk --dir "$WORK" --bytes "$DISK_BYTES" --out "$OUT/disk.json"
}

run_standalone() {
	local dur
	dur=$(seconds "${DURATION%.*}")
	# Two full-speed runs at up to ~0.6 GB/s, the low-load run, margin.
	enough_space $((2 * dur * 6 / 10 + 3)) "standalone broker" || return 0
	start_standalone
	say "standalone broker pid $BROKER_PID on $BROKER_ADDR"
	local topic=bench-standalone
	produce standalone-acks1 1 "$BROKER_ADDR" "$topic" "$BROKER_PID" --producers "$PRODUCERS" --label "standalone produce acks=1, $PRODUCERS clients"
	produce standalone-acksall -1 "$BROKER_ADDR" "$topic" "$BROKER_PID" --producers "$PRODUCERS" --label "standalone produce acks=-1, $PRODUCERS clients"
	produce standalone-acksall-low -1 "$BROKER_ADDR" "$topic" "$BROKER_PID" --rate "$LOW_RATE" \
		--label "standalone produce acks=-1 at $LOW_RATE records/s"
	produce standalone-acksall-sync -1 "$BROKER_ADDR" "$topic" "$BROKER_PID" --sync \
		--label "standalone produce acks=-1, one record at a time"
	say "consume everything back from $topic"
	try "$BENCH" consume --brokers "$BROKER_ADDR" --topic "$topic" --name standalone-consume \
		--label "standalone consume" --out "$OUT/standalone-consume.json"
	stop_standalone
}

# The three-node cluster. scripts/cluster.sh is the normal way to run one,
# but its ports are fixed (Kafka 9092-9094, sidecars 9192-9194). When any of
# them is taken (another cluster or a test is running on this machine),
# bench.sh runs the same three broker+sidecar pairs itself, on free ports,
# with cluster.sh's command lines and layout ($CLUSTER_HOME/node-i/data, run/,
# broker.pid, sidecar.pid, *.log): `scripts/bench.sh _node start|stop N HOME`.
CLUSTER_KIND=""

# own_node start|stop N HOME (HOME/ports.sh holds the ports chosen at "up").
own_node() {
	local action=$1 n=$2 home=$3
	# shellcheck source=/dev/null
	. "$home/ports.sh"
	local dir="$home/node-$n" kport sport mport
	kport=$(eval echo "\$KPORT$n")
	sport=$(eval echo "\$SPORT$n")
	mport=$(eval echo "\$MPORT$n")
	case $action in
	start)
		mkdir -p "$dir/data"
		mkdir -p -m 700 "$dir/run"
		# shellcheck disable=SC2086 # TANDEM_SIDECAR_FLAGS is a list of flags
		GOMAXPROCS=$(procs_share 6) bin/tandem-sidecar --node-id "$n" --cluster-id bench --broker-socket "$dir/run/sidecar.sock" \
			--listen "127.0.0.1:$sport" --peers "$PEERS" --leader 1 --log-level warn --metrics-listen "127.0.0.1:$mport" \
			${TANDEM_SIDECAR_FLAGS:-} >>"$dir/sidecar.log" 2>&1 </dev/null &
		echo $! >"$dir/sidecar.pid"
		# shellcheck disable=SC2086 # TANDEM_BROKER_FLAGS is a list of flags
		GOMAXPROCS=$(procs_share 6) bin/tandem-broker --node-id "$n" --data-dir "$dir/data" --listen "127.0.0.1:$kport" \
			--advertise "127.0.0.1:$kport" --sidecar "$dir/run/sidecar.sock" --log-level warn ${TANDEM_BROKER_FLAGS:-} \
			>>"$dir/broker.log" 2>&1 </dev/null &
		echo $! >"$dir/broker.pid"
		wait_port "$sport" 15
		wait_port "$kport" 30
		;;
	stop)
		local proc pid deadline
		for proc in broker sidecar; do
			[ -f "$dir/$proc.pid" ] || continue
			pid=$(<"$dir/$proc.pid")
			kill -TERM "$pid" 2>/dev/null || true
			deadline=$((SECONDS + 15))
			while kill -0 "$pid" 2>/dev/null; do
				if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; fi
				sleep 0.05
			done
			rm -f "$dir/$proc.pid"
		done
		;;
	esac
}

cluster_up() {
	CLUSTER_HOME="$WORK/cluster"
	mkdir -p "$CLUSTER_HOME"
	local port busy=""
	for port in 9092 9093 9094 9192 9193 9194 9292 9293 9294 9392 9393 9394; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy=$port; fi
	done
	if [ -z "$busy" ]; then
		CLUSTER_KIND=script
		say "three-node cluster: scripts/cluster.sh up (TANDEM_HOME=$CLUSTER_HOME)"
		TANDEM_METRICS=1 TANDEM_HOME="$CLUSTER_HOME" scripts/cluster.sh up >"$WORK/cluster-up.log" 2>&1 || {
			cat "$WORK/cluster-up.log" >&2
			return 1
		}
		KAFKA1=127.0.0.1:9092 KAFKA2=127.0.0.1:9093 KAFKA3=127.0.0.1:9094 SIDECAR1=127.0.0.1:9192
		METRICS1=http://127.0.0.1:9292/metrics
		STOP3="TANDEM_HOME='$CLUSTER_HOME' '$ROOT/scripts/cluster.sh' stop 3"
		START3="TANDEM_HOME='$CLUSTER_HOME' '$ROOT/scripts/cluster.sh' start 3"
	else
		CLUSTER_KIND=own
		local k1 k2 k3 s1 s2 s3 m1 m2 m3
		k1=$(free_port) k2=$(free_port) k3=$(free_port) s1=$(free_port) s2=$(free_port) s3=$(free_port)
		m1=$(free_port) m2=$(free_port) m3=$(free_port)
		cat >"$CLUSTER_HOME/ports.sh" <<-PORTS
			KPORT1=$k1 KPORT2=$k2 KPORT3=$k3 SPORT1=$s1 SPORT2=$s2 SPORT3=$s3 MPORT1=$m1 MPORT2=$m2 MPORT3=$m3
			PEERS=1=127.0.0.1:$s1,2=127.0.0.1:$s2,3=127.0.0.1:$s3
		PORTS
		say "three-node cluster: port $busy is taken, so not scripts/cluster.sh: the same three pairs on Kafka ports $k1 $k2 $k3"
		local n
		for n in 1 2 3; do own_node start "$n" "$CLUSTER_HOME"; done
		KAFKA1=127.0.0.1:$k1 KAFKA2=127.0.0.1:$k2 KAFKA3=127.0.0.1:$k3 SIDECAR1=127.0.0.1:$s1
		METRICS1=http://127.0.0.1:$m1/metrics
		STOP3="'$ROOT/scripts/bench.sh' _node stop 3 '$CLUSTER_HOME'"
		START3="'$ROOT/scripts/bench.sh' _node start 3 '$CLUSTER_HOME'"
	fi
}

CLUSTERS_RUN=0
cluster_down() {
	case "$CLUSTER_KIND" in
	script) TANDEM_HOME="$CLUSTER_HOME" scripts/cluster.sh down >/dev/null 2>&1 || true ;;
	own)
		local n
		for n in 3 2 1; do own_node stop "$n" "$CLUSTER_HOME" || true; done
		;;
	esac
	CLUSTER_KIND=""
	# The data goes, the nodes' logs stay with the results: a figure that
	# looks wrong can be explained afterwards.
	CLUSTERS_RUN=$((CLUSTERS_RUN + 1))
	local logs="$OUT/logs/cluster-$CLUSTERS_RUN" f node
	for f in "$CLUSTER_HOME"/node-*/*.log; do
		[ -f "$f" ] || continue
		node=$(basename "$(dirname "$f")")
		mkdir -p "$logs"
		cp "$f" "$logs/$node-$(basename "$f")"
	done
}

# node_broker_pid N: the pid of node N's broker from its pid file; empty
# when it is not running.
node_broker_pid() {
	local f="$CLUSTER_HOME/node-$1/broker.pid" pid
	[ -f "$f" ] || return 0
	pid=$(<"$f")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# settle: wait until both followers have applied everything, so that a
# measurement does not start behind the backlog of the previous one (acks=1
# at full speed leaves the followers seconds behind on 2 cores).
settle() {
	[ -x bin/tandemctl ] || return 0
	"$BENCH" settle --status-cmd "'$ROOT/bin/tandemctl' --sidecar $SIDECAR1 status --json" --timeout 3m ||
		say "followers did not catch up; measuring anyway"
}

run_cluster() {
	if [ ! -x bin/tandem-sidecar ]; then
		say "three-node cluster: skipped (bin/tandem-sidecar does not exist)"
		return 0
	fi
	# Per node: two full-speed runs at up to ~0.3 GB/s, two lag runs, the
	# catch-up backlog, margin; three nodes.
	local dur
	dur=$(seconds "${DURATION%.*}")
	local backlog=$((CATCHUP_RECORDS * RECORD_BYTES / 1000000000 + 1))
	enough_space $((3 * (4 * dur * 3 / 10 + backlog + 2))) "three-node cluster" || return 0
	cluster_up
	local leader_pid
	leader_pid=$(node_broker_pid 1) # empty if not found: no RSS column then
	local topic=bench-cluster
	settle
	produce cluster-acks1 1 "$KAFKA1" "$topic" "$leader_pid" --producers "$PRODUCERS" --label "three-node produce acks=1, $PRODUCERS clients"
	settle
	produce cluster-acksall -1 "$KAFKA1" "$topic" "$leader_pid" --producers "$PRODUCERS" --label "three-node produce acks=-1, $PRODUCERS clients"
	settle
	produce cluster-acksall-low -1 "$KAFKA1" "$topic" "$leader_pid" --rate "$LOW_RATE" \
		--label "three-node produce acks=-1 at $LOW_RATE records/s"
	settle
	# The same load as JetStream's sync publish: one record in flight.
	produce cluster-acksall-sync -1 "$KAFKA1" "$topic" "$leader_pid" --sync \
		--label "three-node produce acks=-1, one record at a time"
	settle
	lag_status_flags
	say "follower lag at half the acks=1 rate (write to node 1 $KAFKA1, read from node 2 $KAFKA2)"
	try "$BENCH" lag --leader "$KAFKA1" --follower "$KAFKA2" --topic bench-lag "${LAG_STATUS[@]}" \
		--record-bytes "$RECORD_BYTES" --duration "$DURATION" --linger "$LAG_LINGER" \
		--rate-from "$OUT/cluster-acks1.json" --rate-fraction 0.5 --name lag --out "$OUT/lag.json"
	# acks=1 at full speed outruns what the followers apply on 2 cores, so half
	# of it may still be more than they sustain; half of the acks=-1 rate (a
	# rate the followers did keep up with) shows the lag without a backlog.
	settle
	say "follower lag at half the acks=-1 rate"
	try "$BENCH" lag --leader "$KAFKA1" --follower "$KAFKA2" --topic bench-lag-sustained "${LAG_STATUS[@]}" \
		--record-bytes "$RECORD_BYTES" --duration "$DURATION" --linger "$LAG_LINGER" \
		--rate-from "$OUT/cluster-acksall.json" --rate-fraction 0.5 --name lag-sustained --out "$OUT/lag-sustained.json"
	cluster_down
	rm -rf "$CLUSTER_HOME"
	CLUSTER_HOME=""
	run_cluster_catchup
	run_cluster_interval
}

# lag_status_flags: the lag runs' flags that also sample what the leader
# sidecar reports for node 2 and read the apply lag it measured (its
# /metrics histogram), next to the lag measured from the outside.
lag_status_flags() {
	LAG_STATUS=()
	if [ -x bin/tandemctl ]; then
		LAG_STATUS=(--status-cmd "'$ROOT/bin/tandemctl' --sidecar $SIDECAR1 status --json" --status-node 2)
	fi
	LAG_STATUS+=(--apply-lag-url "$METRICS1")
}

# run_lag_sweep: the follower lag at every rate of LAG_RATES, on one fresh
# three-node cluster, each run starting with the followers caught up.
run_lag_sweep() {
	if [ ! -x bin/tandem-sidecar ]; then
		say "lag sweep: skipped (bin/tandem-sidecar does not exist)"
		return 0
	fi
	local dur rate sum=0
	dur=$(seconds "${DURATION%.*}")
	for rate in $LAG_RATES; do sum=$((sum + rate)); done
	# Three copies of every record, plus margin.
	enough_space $((3 * sum * (dur + 5) * RECORD_BYTES / 1000000000 + 2)) "lag sweep" || return 0
	cluster_up
	lag_status_flags
	for rate in $LAG_RATES; do
		settle
		say "follower lag at $rate records/s (write to node 1 $KAFKA1, read from node 2 $KAFKA2)"
		try "$BENCH" lag --leader "$KAFKA1" --follower "$KAFKA2" --topic bench-lag-sweep "${LAG_STATUS[@]}" \
			--record-bytes "$RECORD_BYTES" --duration "$DURATION" --linger "$LAG_LINGER" --rate "$rate" \
			--name "$(printf 'lag-sweep-%07d' "$rate")" --label "follower lag at $rate records/s" \
			--out "$OUT/$(printf 'lag-sweep-%07d' "$rate").json"
	done
	cluster_down
}

# run_cluster_catchup: the catch-up run on a fresh cluster that first holds
# CATCHUP_RECORDS records on every node, so that the follower restarts with
# as much WAL as it then misses. (On the cluster of the runs above, node 3
# would restart holding the 8-10 GB those runs left, and its start-up,
# which reads and verifies all of it at the disk's read rate, about 1.1
# GB/s here, would be most of what is timed. The catch-up row's note gives
# the start command's own time, so the rate after it is visible too.)
run_cluster_catchup() {
	say "catch-up on a fresh cluster: $CATCHUP_RECORDS records on every node first"
	cluster_up
	try "$BENCH" produce --brokers "$KAFKA1" --topic bench-catchup-held --acks -1 --producers "$PRODUCERS" \
		--record-bytes "$RECORD_BYTES" --records "$CATCHUP_RECORDS" --warmup 0s --progress 0 \
		--name catchup-held --label "records held before the catch-up run" >/dev/null
	settle
	say "catch-up: stop node 3, produce $CATCHUP_RECORDS records, start node 3"
	try "$BENCH" catchup --leader "$KAFKA1" --follower "$KAFKA3" --topic bench-catchup \
		--record-bytes "$RECORD_BYTES" --records "$CATCHUP_RECORDS" \
		--stop-cmd "$STOP3" --start-cmd "$START3" --name catchup --out "$OUT/catchup.json"
	cluster_down
	rm -rf "$CLUSTER_HOME"
	CLUSTER_HOME=""
}

# node3_in_isr: whether the leader sidecar reports node 3 in its ISR.
node3_in_isr() {
	"$ROOT/bin/tandemctl" --sidecar "$SIDECAR1" status --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
st = json.load(sys.stdin)
sys.exit(0 if any(r.get("nodeId") == 3 and r.get("inIsr") for r in st.get("replicas", [])) else 1)'
}

# run_catchup_limit: what a follower's catch-up costs the producers, at each
# --catchup-bytes-per-sec of CATCHUP_LIMITS (docs/operations.md).
run_catchup_limit() {
	if [ ! -x bin/tandem-sidecar ]; then
		say "catch-up limit: skipped (bin/tandem-sidecar does not exist)"
		return 0
	fi
	local limit backlog=$((CATCHUP_RECORDS * RECORD_BYTES / 1000000000 + 1))
	for limit in $CATCHUP_LIMITS; do
		enough_space $((3 * (backlog + 2))) "catch-up limit $limit" || return 0
		export TANDEM_SIDECAR_FLAGS="--catchup-bytes-per-sec $limit"
		say "catch-up limit $limit bytes/s: fresh cluster, node 3 stopped while $CATCHUP_RECORDS records are produced"
		cluster_up
		settle
		eval "$STOP3"
		try "$BENCH" produce --brokers "$KAFKA1" --topic bench-catchup-limit --acks 1 --producers "$PRODUCERS" \
			--record-bytes "$RECORD_BYTES" --records "$CATCHUP_RECORDS" --warmup 0s --progress 0 \
			--name "catchup-limit-$limit-backlog" --label "backlog for node 3" >/dev/null
		local deadline=$((SECONDS + 60))
		while node3_in_isr && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
		produce "catchup-limit-$limit-quiet" -1 "$KAFKA1" bench-catchup-low "" --rate "$LOW_RATE" \
			--label "acks=-1 at $LOW_RATE records/s, node 3 down (limit $limit)"
		local t0=$SECONDS
		(
			eval "$START3" >/dev/null 2>&1
			local start=$SECONDS
			until node3_in_isr; do
				if [ $((SECONDS - start)) -gt 600 ]; then
					say "node 3 not back in the ISR after 10 minutes (limit $limit)"
					exit 1
				fi
				sleep 0.2
			done
			say "limit $limit: node 3 back in the ISR $((SECONDS - t0)) s after its start command"
		) &
		local watcher=$!
		produce "catchup-limit-$limit-catchup" -1 "$KAFKA1" bench-catchup-low "" --rate "$LOW_RATE" \
			--label "acks=-1 at $LOW_RATE records/s, node 3 catching up (limit $limit)"
		wait "$watcher" || true
		cluster_down
		rm -rf "$CLUSTER_HOME"
		CLUSTER_HOME=""
		unset TANDEM_SIDECAR_FLAGS
	done
}

# run_cluster_interval: the one-record-at-a-time acks=-1 run again on a fresh
# cluster whose brokers fsync once a second (--fsync interval) instead of
# before every acknowledgement: the durability JetStream has by default
# (it fsyncs every 2 minutes), so that the latency comparison can be read
# like for like as well as against Tandem's default.
run_cluster_interval() {
	say "three-node cluster with --fsync interval (JetStream's durability)"
	TANDEM_BROKER_FLAGS="--fsync interval" cluster_up
	local leader_pid
	leader_pid=$(node_broker_pid 1)
	settle
	produce cluster-acksall-sync-interval -1 "$KAFKA1" bench-interval "$leader_pid" --sync \
		--label "three-node produce acks=-1, one record at a time, --fsync interval"
	cluster_down
	rm -rf "$CLUSTER_HOME"
	CLUSTER_HOME=""
}

run_jetstream() {
	if ! ensure_packages nats-server:nats-server; then
		say "JetStream: skipped (nats-server is not installed and could not be)"
		return 0
	fi
	say "JetStream: three nats-server processes, file storage, R3"
	local i ports=() cports=() routes=""
	for i in 1 2 3; do
		ports+=("$(free_port)")
		cports+=("$(free_port)")
	done
	for i in 0 1 2; do
		routes+="nats://127.0.0.1:${cports[$i]},"
	done
	routes=${routes%,}
	for i in 0 1 2; do
		mkdir -p "$WORK/nats-$i"
		GOMAXPROCS=$(procs_share 3) nats-server --name "n$i" -a 127.0.0.1 -p "${ports[$i]}" --cluster_name bench \
			--cluster "nats://127.0.0.1:${cports[$i]}" --routes "$routes" \
			--jetstream --store_dir "$WORK/nats-$i" >"$WORK/nats-$i.log" 2>&1 &
		PIDS+=("$!")
	done
	for i in 0 1 2; do wait_port "${ports[$i]}" 15; done
	local servers="nats://127.0.0.1:${ports[0]}"
	# nats.go, the client NATS users run (`tandem-bench natsgo`); set
	# JETSTREAM_CLIENT=minimal for tandem-bench's own protocol client
	# (`tandem-bench jetstream`), which cross-checks it with no nats.go code.
	local cmd=natsgo client="nats.go"
	if [ "${JETSTREAM_CLIENT:-natsgo}" = minimal ]; then cmd=jetstream client="minimal client"; fi
	try "$BENCH" "$cmd" --server "$servers" --stream BENCH --replicas 3 --record-bytes "$RECORD_BYTES" \
		--duration "$DURATION" --mode async --name jetstream-async \
		--label "JetStream R3 file, async publish ($client)" --out "$OUT/jetstream-async.json"
	try "$BENCH" "$cmd" --server "$servers" --stream BENCH --replicas 3 --record-bytes "$RECORD_BYTES" \
		--duration "$DURATION" --mode sync --name jetstream-sync \
		--label "JetStream R3 file, sync publish ($client)" --out "$OUT/jetstream-sync.json"
}

run_rss() {
	# Full speed for minutes is far more data than the disk holds (~0.5 GB/s):
	# the broker keeps RSS_RETENTION of WAL (default 4 GiB) and checks every
	# 5 s, as a production broker with log.retention.bytes would.
	local retention
	retention=$(/usr/bin/python3 -c 'import sys; u={"GiB":2**30,"MiB":2**20,"GB":10**9}; v=sys.argv[1]
for k,m in u.items():
    if v.endswith(k): print(int(float(v[:-len(k)])*m)); break
else: print(int(v))' "${RSS_RETENTION:-4GiB}")
	enough_space $((retention / 1073741824 + 8)) "RSS run" || return 0
	start_standalone --log-retention-bytes "$retention" --log-retention-check-interval 5s
	say "broker keeps at most ${RSS_RETENTION:-4GiB} of WAL (--log-retention-bytes $retention)"
	say "RSS: $RSS_MINUTES minutes of full-speed acks=1 produce to broker pid $BROKER_PID"
	# The sampler prints a line every RSS_INTERVAL and writes its result when
	# it is told to stop (SIGTERM) after the produce run.
	"$BENCH" rss --pid "$BROKER_PID" --interval "${RSS_INTERVAL:-15s}" --duration 24h \
		--name rss --out "$OUT/rss.json" &
	local rss_pid=$!
	PIDS+=("$rss_pid")
	try "$BENCH" produce --brokers "$BROKER_ADDR" --topic bench-rss --acks 1 --record-bytes "$RECORD_BYTES" \
		--duration "${RSS_MINUTES}m" --progress 30s --name rss-produce \
		--label "produce acks=1 during the RSS run" --out "$OUT/rss-produce.json"
	kill -TERM "$rss_pid" 2>/dev/null || true
	wait "$rss_pid" || true
	stop_standalone
}

run_txn() {
	local dur
	dur=$(seconds "${DURATION%.*}")
	enough_space $((4 * dur * 3 / 10 + 3)) "transaction runs" || return 0
	start_standalone
	say "transactions on the standalone broker pid $BROKER_PID"
	try "$BENCH" txn --brokers "$BROKER_ADDR" --topic bench-txn --record-bytes "$RECORD_BYTES" --per-txn "$PER_TXN" \
		--producers "$PRODUCERS" --partitions "$PARTITIONS" --duration "$DURATION" --name standalone-txn \
		--label "standalone transactions of $PER_TXN records, $PRODUCERS producers" --out "$OUT/standalone-txn.json"
	stop_standalone
	if [ ! -x bin/tandem-sidecar ]; then
		say "three-node transactions: skipped (bin/tandem-sidecar does not exist)"
		return 0
	fi
	cluster_up
	settle
	say "transactions on the three-node cluster (leader $KAFKA1)"
	try "$BENCH" txn --brokers "$KAFKA1" --topic bench-txn --record-bytes "$RECORD_BYTES" --per-txn "$PER_TXN" \
		--producers "$PRODUCERS" --partitions "$PARTITIONS" --duration "$DURATION" --name cluster-txn \
		--label "three-node transactions of $PER_TXN records, $PRODUCERS producers" --out "$OUT/cluster-txn.json"
	cluster_down
	rm -rf "$CLUSTER_HOME"
	CLUSTER_HOME=""
}

# run_rebalance: a consumer group on the three-node cluster through a member
# joining and one leaving, with each group protocol (tandem-bench
# rebalance prints its own table; the report below has no row for it).
run_rebalance() {
	if [ ! -x bin/tandem-sidecar ]; then
		say "rebalance: skipped (bin/tandem-sidecar does not exist)"
		return 0
	fi
	cluster_up
	settle
	say "consumer group changes on the three-node cluster (leader $KAFKA1)"
	try "$BENCH" rebalance --brokers "$KAFKA1" --partitions "${REBALANCE_PARTITIONS:-12}" \
		--rate "${REBALANCE_RATE:-2000}" --hold "${REBALANCE_HOLD:-15s}" \
		--protocols "${REBALANCE_PROTOCOLS:-eager,cooperative,consumer}" --out "$OUT/rebalance.json"
	cluster_down
	rm -rf "$CLUSTER_HOME"
	CLUSTER_HOME=""
}

if [ "$MODE" = _node ]; then
	own_node "$NODE_ACTION" "$NODE_N" "$NODE_HOME"
	exit 0
fi

say "build"
scripts/build.sh >&2

case "$MODE" in
all)
	run_disk
	run_standalone
	run_cluster
	run_jetstream
	if [ "$RSS_MINUTES" != 0 ]; then run_rss; fi
	;;
standalone)
	run_disk
	run_standalone
	;;
cluster) run_cluster ;;
jetstream) run_jetstream ;;
rss) run_rss ;;
txn) run_txn ;;
rebalance) run_rebalance ;;
lag-sweep) run_lag_sweep ;;
catchup-limit) run_catchup_limit ;;
esac

say "results in $OUT"
if [ "$MODE" = rebalance ]; then
	exit 0 # tandem-bench rebalance printed its table
fi
echo
"$BENCH" report --dir "$OUT" --out "$OUT/report.json"
if [ -n "${BENCH_CHARTS:-}" ]; then
	mkdir -p "$BENCH_CHARTS"
	"$BENCH" chart --in "$OUT/report.json" --out "$BENCH_CHARTS/bench-throughput.png" --metric mbps \
		--title "Produce throughput, ${RECORD_BYTES}-byte records" \
		--names standalone-acks1,standalone-acksall,cluster-acks1,cluster-acksall,jetstream-async >&2 || true
	"$BENCH" chart --in "$OUT/report.json" --out "$BENCH_CHARTS/bench-latency-p99.png" --metric p99 \
		--title "p99 produce latency at low load" \
		--names standalone-acksall-sync,cluster-acksall-sync,cluster-acksall-low,jetstream-sync >&2 || true
fi
if [ "$MODE" = lag-sweep ]; then
	"$BENCH" chart --lag-sweep --in "$OUT" --out "${BENCH_CHARTS:-$OUT}/lag-sweep.png" \
		--title "Follower lag against produce rate, ${RECORD_BYTES}-byte records" >&2 || true
fi
