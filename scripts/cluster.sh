#!/usr/bin/env bash
# cluster.sh: run a local Tandem cluster of broker+sidecar pairs on 127.0.0.1.
#
#   scripts/cluster.sh up        start every node (node 1 leads); builds bin/ if missing
#   scripts/cluster.sh down      stop every node cleanly (data is kept)
#   scripts/cluster.sh status    processes of every node, then `tandemctl status` of the leader
#   scripts/cluster.sh stop N    clean stop (SIGTERM) of node N's broker and sidecar
#   scripts/cluster.sh kill N    SIGKILL of both processes of node N
#   scripts/cluster.sh start N   start node N again on its old data
#
# Node i (1..TANDEM_NODES) serves Kafka on 127.0.0.1:909(1+i) (9092, 9093,
# 9094) and its sidecar (peers, admin, health) on 127.0.0.1:919(1+i) (9192,
# 9193, 9194). Everything of node i lives in $TANDEM_HOME/node-i:
#
#   data/          the broker's data directory (WAL, checkpoints)
#   run/           the broker<->sidecar Unix socket (sidecar.sock; mode 0700)
#   broker.log     broker output (appended across restarts)
#   sidecar.log    sidecar output
#   broker.pid, sidecar.pid
#
# To start from scratch: scripts/cluster.sh down && rm -rf "${TANDEM_HOME:-.tandem}".
#
# Environment:
#   TANDEM_HOME           state directory (default .tandem in the repository)
#   TANDEM_NODES          number of nodes (default 3)
#   TANDEM_CLUSTER_ID     --cluster-id of every sidecar (default local)
#   TANDEM_BROKER_FLAGS   appended to every broker's command line
#   TANDEM_SIDECAR_FLAGS  appended to every sidecar's command line
#   TANDEM_METRICS        1: node i also serves Prometheus /metrics, its sidecar on
#                         127.0.0.1:929(1+i) and its broker on 127.0.0.1:939(1+i)
#                         (9292 and 9392 for node 1); default off
#   TANDEM_BIN            directory of the binaries (default bin in the repository)
#   GOMAXPROCS            Go scheduler threads of every process. Default here:
#                         the machine's cores shared evenly among the
#                         2 x TANDEM_NODES processes (at least 1), because they
#                         all run on this one machine; Go's own default (all
#                         cores, in every process) makes six processes on two
#                         cores wake each other's idle threads for every
#                         message, which costs more CPU than the work itself.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
home=${TANDEM_HOME:-.tandem}
case $home in /*) ;; *) home="$PWD/$home" ;; esac
nodes=${TANDEM_NODES:-3}
cluster_id=${TANDEM_CLUSTER_ID:-local}
bin=${TANDEM_BIN:-$repo/bin}
leader=1

kafka_port() { echo $((9091 + $1)); }
sidecar_port() { echo $((9191 + $1)); }
node_dir() { echo "$home/node-$1"; }

peers() {
	local i out=""
	for ((i = 1; i <= nodes; i++)); do
		out+="${out:+,}$i=127.0.0.1:$(sidecar_port "$i")"
	done
	echo "$out"
}

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

check_node() {
	[[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= nodes)) || die "node must be 1..$nodes, got '$1'"
}

# pid_of NODE PROC: the pid in the pid file if that process still runs.
pid_of() {
	local f
	f="$(node_dir "$1")/$2.pid"
	[[ -f $f ]] || return 1
	local pid
	pid=$(<"$f")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

wait_port() { # host port seconds
	local deadline=$((SECONDS + $3))
	while ((SECONDS < deadline)); do
		if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

ensure_built() {
	if [[ ! -x $bin/tandem-broker || ! -x $bin/tandem-sidecar || ! -x $bin/tandemctl ]]; then
		echo "building binaries (scripts/build.sh) ..."
		"$repo/scripts/build.sh" >/dev/null
	fi
}

# Processes on one machine share its cores (see GOMAXPROCS above).
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
GOMAXPROCS=$(procs_share $((2 * nodes)))
export GOMAXPROCS

start_node() {
	local n=$1 dir
	dir=$(node_dir "$n")
	mkdir -p "$dir/data"
	mkdir -p -m 700 "$dir/run"
	chmod 700 "$dir/run"
	local sock="$dir/run/sidecar.sock"
	local sidecar_metrics=() broker_metrics=()
	if [[ ${TANDEM_METRICS:-} == 1 ]]; then
		sidecar_metrics=(--metrics-listen "127.0.0.1:$((9291 + n))")
		broker_metrics=(--metrics-listen "127.0.0.1:$((9391 + n))")
	fi
	if pid=$(pid_of "$n" sidecar); then
		echo "node $n: sidecar already running (pid $pid)"
	else
		# shellcheck disable=SC2086 # TANDEM_SIDECAR_FLAGS is a list of flags
		setsid "$bin/tandem-sidecar" --node-id "$n" --cluster-id "$cluster_id" --broker-socket "$sock" \
			--listen "127.0.0.1:$(sidecar_port "$n")" --peers "$(peers)" --leader "$leader" \
			"${sidecar_metrics[@]}" ${TANDEM_SIDECAR_FLAGS:-} >>"$dir/sidecar.log" 2>&1 </dev/null &
		echo $! >"$dir/sidecar.pid"
	fi
	if pid=$(pid_of "$n" broker); then
		echo "node $n: broker already running (pid $pid)"
	else
		# shellcheck disable=SC2086 # TANDEM_BROKER_FLAGS is a list of flags
		setsid "$bin/tandem-broker" --node-id "$n" --data-dir "$dir/data" \
			--listen "127.0.0.1:$(kafka_port "$n")" --advertise "127.0.0.1:$(kafka_port "$n")" \
			--sidecar "$sock" "${broker_metrics[@]}" ${TANDEM_BROKER_FLAGS:-} >>"$dir/broker.log" 2>&1 </dev/null &
		echo $! >"$dir/broker.pid"
	fi
	wait_port 127.0.0.1 "$(sidecar_port "$n")" 15 || die "node $n: sidecar did not open port $(sidecar_port "$n"); see $dir/sidecar.log"
	wait_port 127.0.0.1 "$(kafka_port "$n")" 30 || die "node $n: broker did not open port $(kafka_port "$n"); see $dir/broker.log"
	echo "node $n: kafka 127.0.0.1:$(kafka_port "$n")  sidecar 127.0.0.1:$(sidecar_port "$n")  (pids broker $(pid_of "$n" broker || echo -) sidecar $(pid_of "$n" sidecar || echo -))"
}

# signal_node NODE SIGNAL: send SIGNAL to the broker, then the sidecar, and
# wait for both to exit (SIGTERM: up to 15 s, then SIGKILL).
signal_node() {
	local n=$1 sig=$2 proc pid
	for proc in broker sidecar; do
		if pid=$(pid_of "$n" "$proc"); then
			kill "-$sig" "$pid" 2>/dev/null || true
			local deadline=$((SECONDS + 15))
			while kill -0 "$pid" 2>/dev/null; do
				if ((SECONDS >= deadline)); then
					echo "node $n: $proc (pid $pid) did not stop after SIG$sig; sending SIGKILL"
					kill -KILL "$pid" 2>/dev/null || true
				fi
				sleep 0.05
			done
			echo "node $n: $proc stopped (SIG$sig)"
		fi
		rm -f "$(node_dir "$n")/$proc.pid"
	done
}

status() {
	local n proc pid
	for ((n = 1; n <= nodes; n++)); do
		local line="node $n:"
		for proc in broker sidecar; do
			if pid=$(pid_of "$n" "$proc"); then
				line+="  $proc running (pid $pid)"
			else
				line+="  $proc stopped"
			fi
		done
		echo "$line  kafka 127.0.0.1:$(kafka_port "$n")  sidecar 127.0.0.1:$(sidecar_port "$n")"
	done
	echo
	if [[ -x $bin/tandemctl ]]; then
		"$bin/tandemctl" --sidecar "127.0.0.1:$(sidecar_port $leader)" status || true
	fi
}

cmd=${1:-}
case $cmd in
up)
	ensure_built
	mkdir -p "$home"
	for ((n = 1; n <= nodes; n++)); do
		start_node "$n"
	done
	echo "cluster up: $nodes nodes under $home, leader node $leader (kafka 127.0.0.1:$(kafka_port $leader))"
	;;
down)
	for ((n = nodes; n >= 1; n--)); do
		signal_node "$n" TERM
	done
	;;
status)
	status
	;;
stop | kill | start)
	[[ $# -eq 2 ]] || die "usage: cluster.sh $cmd N"
	check_node "$2"
	case $cmd in
	stop) signal_node "$2" TERM ;;
	kill) signal_node "$2" KILL ;;
	start)
		ensure_built
		start_node "$2"
		;;
	esac
	;;
*)
	sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	[[ -z $cmd ]] && exit 2
	die "unknown command '$cmd'"
	;;
esac
