# lib.sh: shell helpers shared by scripts/cluster.sh, test.sh, bench.sh,
# soak.sh and bench-compare.sh (sourced, not run).

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

# ensure_packages PKG:CMD ...: installs the Debian packages whose command
# (or, for a CMD of "-", whose dpkg entry) is missing, with apt-get, when run
# as root on a machine that has it; otherwise names what to install and
# fails. A fresh machine has none of the peers the tests and benchmarks
# drive (kafka-python, kcat, etcd, nats-server, ...).
ensure_packages() {
	local want=() missing=() spec pkg cmd
	for spec in "$@"; do
		pkg=${spec%%:*}
		cmd=${spec#*:}
		want+=("$pkg")
		if ! dpkg -s "$pkg" >/dev/null 2>&1; then
			missing+=("$pkg")
		elif [ "$cmd" != "-" ] && ! command -v "$cmd" >/dev/null 2>&1; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	echo "missing: ${missing[*]}" >&2
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "install them (Debian: apt-get install ${want[*]})" >&2
		return 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
}
