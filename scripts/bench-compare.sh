#!/usr/bin/env bash
# Tandem against NATS JetStream, side by side, on this machine: prints ONE
# table and draws docs/compare.png (docs/replication-observability.md
# explains every figure).
#
#   scripts/bench-compare.sh
#
# What it runs (each a bin/tandem-bench subcommand; same record size for all):
#   tandem3-*     three broker+sidecar pairs on 127.0.0.1 (free ports, the same
#                 command lines as scripts/cluster.sh, node 1 leads), producing
#                 to the leader with franz-go:
#                   acks=-1 as fast as possible     throughput, p50/p99 under load
#                   acks=-1 at LOW_RATE records/s   p50/p99 at low load
#                   acks=-1 one record at a time    p50/p99, the same load as
#                                                   JetStream's sync publish
#                   acks=1  as fast as possible     throughput
#   standalone-*  one bin/tandem-broker without a sidecar: the same four runs
#   jetstream-*   three nats-server processes (JetStream on, one store_dir
#                 each, full-mesh cluster routes on loopback), one stream with
#                 replicas=3 and file storage, driven by nats.go:
#                   async  PublishAsync, MAX_PENDING outstanding   throughput
#                   sync   Publish, one at a time (lowest load)   p50/p99
#
# The issue's targets, checked in the table's footer:
#   tandem3 acks=-1 records/s >= 1.5 x JetStream async records/s
#   tandem3 acks=-1 p99 one record at a time <= JetStream sync p99 (like for
#   like: one message in flight each); the fixed-rate p99 is printed too
#
# Environment (all optional):
#   DURATION      measured window per run (default 15s)
#   RECORD_BYTES  record value / message payload size (default 1024)
#   LOW_RATE      records/s of the low-load Tandem runs (default 200)
#   MAX_PENDING   JetStream async window (default 4000, nats.go's default)
#   BENCH_OUT     directory for the result JSON files (default: a temp dir)
#   CHART         PNG to write (default docs/compare.png; empty = none)
#   TMPDIR        where data dirs go: keep it on the disk you mean to measure
#
# Not part of scripts/test.sh: it takes a few minutes and its figures depend
# on whatever else the machine is doing. Every process it starts is stopped
# on exit, on Ctrl-C and on error, and the data dirs are deleted.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# shellcheck source=scripts/lib.sh
. scripts/lib.sh # procs_share, ensure_packages
ensure_packages nats-server:nats-server

DURATION=${DURATION:-15s}
RECORD_BYTES=${RECORD_BYTES:-1024}
LOW_RATE=${LOW_RATE:-200}
MAX_PENDING=${MAX_PENDING:-4000}
CHART=${CHART-docs/compare.png}
BENCH="$ROOT/bin/tandem-bench"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-compare.XXXXXX")
OUT=${BENCH_OUT:-$WORK/results}
mkdir -p "$OUT"

PIDS=()
cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]:-}"; do
		[ -n "$pid" ] && wait "$pid" 2>/dev/null || true
	done
	find "$WORK" -mindepth 1 -maxdepth 1 ! -name results ! -name '*.log' -exec rm -rf {} + 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		echo "bench-compare: failed (exit $rc); logs and results in $WORK" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n==> %s\n' "$*" >&2; }

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT SECONDS
wait_port() {
	local port=$1 deadline=$((SECONDS + $2))
	while [ $SECONDS -lt $deadline ]; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench-compare: nothing listens on 127.0.0.1:$port after $2s" >&2
	return 1
}

# stop_pids PID...: SIGTERM, wait, drop from PIDS.
stop_pids() {
	local pid
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
	local keep=() p
	for p in "${PIDS[@]:-}"; do
		case " $* " in *" $p "*) ;; *) [ -n "$p" ] && keep+=("$p") ;; esac
	done
	PIDS=("${keep[@]:-}")
}

produce() { # produce NAME ACKS BROKER LABEL [extra flags]
	local name=$1 acks=$2 broker=$3 label=$4
	shift 4
	say "$label"
	"$BENCH" produce --brokers "$broker" --topic "$name" --acks "$acks" --record-bytes "$RECORD_BYTES" \
		--duration "$DURATION" --progress 0 --name "$name" --label "$label" --out "$OUT/$name.json" "$@" >&2
}

# Three pairs with scripts/cluster.sh's command lines, on free ports.
run_tandem3() {
	local home="$WORK/tandem3" n peers="" kports=() sports=() node_pids=()
	for n in 1 2 3; do
		kports+=("$(free_port)")
		sports+=("$(free_port)")
	done
	for n in 1 2 3; do peers+="$n=127.0.0.1:${sports[$((n - 1))]},"; done
	peers=${peers%,}
	for n in 1 2 3; do
		local dir="$home/node-$n"
		mkdir -p "$dir/data" && mkdir -p -m 700 "$dir/run"
		GOMAXPROCS=$(procs_share 6) bin/tandem-sidecar --node-id "$n" --cluster-id compare --broker-socket "$dir/run/sidecar.sock" \
			--listen "127.0.0.1:${sports[$((n - 1))]}" --peers "$peers" --leader 1 --log-level warn \
			>"$WORK/sidecar-$n.log" 2>&1 </dev/null &
		PIDS+=("$!") node_pids+=("$!")
		GOMAXPROCS=$(procs_share 6) bin/tandem-broker --node-id "$n" --data-dir "$dir/data" --listen "127.0.0.1:${kports[$((n - 1))]}" \
			--advertise "127.0.0.1:${kports[$((n - 1))]}" --sidecar "$dir/run/sidecar.sock" --log-level warn \
			>"$WORK/broker-$n.log" 2>&1 </dev/null &
		PIDS+=("$!") node_pids+=("$!")
	done
	for n in 0 1 2; do
		wait_port "${sports[$n]}" 15
		wait_port "${kports[$n]}" 30
	done
	# Wait until both followers are in the ISR.
	local deadline=$((SECONDS + 30))
	until bin/tandemctl --sidecar "127.0.0.1:${sports[0]}" status --json 2>/dev/null |
		/usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if len(s.get("isr",[]))==3 else 1)'; do
		if [ $SECONDS -ge $deadline ]; then
			echo "bench-compare: the followers did not join the ISR within 30s" >&2
			return 1
		fi
		sleep 0.2
	done
	local leader="127.0.0.1:${kports[0]}"
	say "three pairs up: Kafka on ${kports[*]}, sidecars on ${sports[*]}"
	produce tandem3-acksall -1 "$leader" "Tandem 3 pairs acks=-1"
	produce tandem3-acksall-low -1 "$leader" "Tandem 3 pairs acks=-1 at $LOW_RATE/s" --rate "$LOW_RATE"
	produce tandem3-acksall-sync -1 "$leader" "Tandem 3 pairs acks=-1, one record at a time" --sync
	produce tandem3-acks1 1 "$leader" "Tandem 3 pairs acks=1"
	bin/tandemctl --sidecar "127.0.0.1:${sports[0]}" status >"$OUT/tandem3-status.txt" 2>&1 || true
	stop_pids "${node_pids[@]}"
	rm -rf "$home"
}

run_standalone() {
	local port dir="$WORK/standalone"
	port=$(free_port)
	mkdir -p "$dir"
	bin/tandem-broker --node-id 1 --data-dir "$dir" --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
		--log-level warn >"$WORK/standalone.log" 2>&1 </dev/null &
	local pid=$!
	PIDS+=("$pid")
	wait_port "$port" 15
	produce standalone-acksall -1 "127.0.0.1:$port" "standalone broker acks=-1"
	produce standalone-acksall-low -1 "127.0.0.1:$port" "standalone broker acks=-1 at $LOW_RATE/s" --rate "$LOW_RATE"
	produce standalone-acksall-sync -1 "127.0.0.1:$port" "standalone broker acks=-1, one record at a time" --sync
	produce standalone-acks1 1 "127.0.0.1:$port" "standalone broker acks=1"
	stop_pids "$pid"
	rm -rf "$dir"
}

run_jetstream() {
	local i ports=() cports=() routes="" nats_pids=()
	for i in 0 1 2; do
		ports+=("$(free_port)")
		cports+=("$(free_port)")
	done
	for i in 0 1 2; do routes+="nats://127.0.0.1:${cports[$i]},"; done
	routes=${routes%,}
	for i in 0 1 2; do
		mkdir -p "$WORK/nats-$i"
		GOMAXPROCS=$(procs_share 3) nats-server --name "n$i" -a 127.0.0.1 -p "${ports[$i]}" --cluster_name compare \
			--cluster "nats://127.0.0.1:${cports[$i]}" --routes "$routes" \
			--jetstream --store_dir "$WORK/nats-$i" >"$WORK/nats-$i.log" 2>&1 </dev/null &
		PIDS+=("$!") nats_pids+=("$!")
	done
	for i in 0 1 2; do wait_port "${ports[$i]}" 15; done
	local servers="nats://127.0.0.1:${ports[0]},nats://127.0.0.1:${ports[1]},nats://127.0.0.1:${ports[2]}"
	# The cluster needs a meta leader before it accepts a stream.
	local deadline=$((SECONDS + 30))
	until grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" "$WORK"/nats-*.log; do
		if [ $SECONDS -ge $deadline ]; then
			echo "bench-compare: the NATS cluster elected no JetStream meta leader within 30s" >&2
			return 1
		fi
		sleep 0.2
	done
	say "JetStream R3 file storage, nats.go PublishAsync (at most $MAX_PENDING outstanding)"
	"$BENCH" natsgo --server "$servers" --stream COMPARE --replicas 3 --record-bytes "$RECORD_BYTES" \
		--duration "$DURATION" --mode async --max-pending "$MAX_PENDING" \
		--name jetstream-async --label "JetStream R3 async publish" --out "$OUT/jetstream-async.json" >&2
	say "JetStream R3 file storage, nats.go Publish, one at a time"
	"$BENCH" natsgo --server "$servers" --stream COMPARE --replicas 3 --record-bytes "$RECORD_BYTES" \
		--duration "$DURATION" --mode sync \
		--name jetstream-sync --label "JetStream R3 sync publish" --out "$OUT/jetstream-sync.json" >&2
	stop_pids "${nats_pids[@]}"
}

# loadavg PHASE: the machine's load average before a phase. Other work on
# the machine (tests, builds) shows up in latency tails: the table says how
# busy the machine was.
loadavg() { printf '%-12s %s\n' "$1" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.txt"; }

say "build"
scripts/build.sh >&2
: >"$OUT/loadavg.txt"
loadavg tandem3
run_tandem3
loadavg standalone
run_standalone
loadavg jetstream
run_jetstream
loadavg end

"$BENCH" natsgo-compare --dir "$OUT" ${CHART:+--chart "$CHART"}
printf '\nload average (1, 5, 15 min) on this %s-core machine before each phase:\n' "$(nproc)"
sed 's/^/  /' "$OUT/loadavg.txt"
say "results in $OUT"
