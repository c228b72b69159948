# lib.sh: shell helpers shared by scripts/cluster.sh, bench.sh and
# bench-compare.sh (sourced, not run).

# procs_share N: GOMAXPROCS for each of N server processes that share this
# machine: its cores divided evenly, at least 1. Go's default gives every
# process all the cores, and many processes on two cores then spend more CPU
# waking each other's idle threads (for every small replication message)
# than on the work. The benchmarks apply it to Tandem and to nats-server
# alike. A GOMAXPROCS set by the caller wins.
procs_share() {
	if [ -n "${GOMAXPROCS:-}" ]; then
		echo "$GOMAXPROCS"
		return
	fi
	local n=$(($(nproc) / $1))
	echo $((n >= 1 ? n : 1))
}
