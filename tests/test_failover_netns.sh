#!/usr/bin/env bash
# Failover across a real network partition: the primary (node 1) in one network namespace, the
# two replicas (nodes 2 and 3) in another, joined by a veth pair; tandemd over kernel UDP.
# Taking the primary's veth down partitions it: it must fence itself (refuse writes) and the
# replicas must elect one of them; writes at `durable` (majority quorum) go on there. Bringing
# the veth up again, the old primary follows the new one, every acknowledged write is on every
# node (tandem-load --verify), the digests match, and no epoch has writes of two origins in any
# node's log (tandemctl log dump).
#
#   test_failover_netns.sh BUILD_DIR
#
# Needs root and `ip netns`; without them it exits 77 (skipped). Everything it makes
# (namespaces, veths, processes, data directories, shm rings) carries this shell's PID and is
# removed on every exit path; every wait is bounded.
set -u

build=${1:?usage: test_failover_netns.sh BUILD_DIR}
build=$(cd "$build" && pwd)
tandemd=$build/tools/tandemd tandemctl=$build/tools/tandemctl load=$build/tools/tandem-load
id=$$
nsA=tfoA$id nsB=tfoB$id
vethA=tfova$id vethB=tfovb$id        # at most 15 characters: IFNAMSIZ
net="10.$((id % 250 + 1)).$(((id / 250) % 250))"
ipA=$net.1 ipB=$net.2
dir=$(mktemp -d /tmp/tc-netns-XXXXXX)
pids=()

skip() { echo "SKIP: $*"; exit 77; }
fail() {
	echo "FAIL: $*"
	for n in 1 2 3; do echo "---- node $n ----"; cat "$dir/n$n.err" 2>/dev/null; done
	exit 1
}

cleanup() {
	local ring
	for n in 1 2 3; do
		ring=$("$tandemctl" status --dir "$dir/n$n" --json 2>/dev/null |
		       python3 -c 'import json,sys; print(json.load(sys.stdin)["ring"])' 2>/dev/null)
		[[ -n $ring ]] && rm -f /dev/shm/"$ring"*
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	ip netns del "$nsA" 2>/dev/null
	ip netns del "$nsB" 2>/dev/null
	ip link del "$vethA" 2>/dev/null
	[[ -n ${TC_KEEP:-} ]] && echo "TC_KEEP: leaving $dir" || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[[ $EUID -eq 0 ]] || skip "needs root to create network namespaces and veth interfaces"
command -v ip >/dev/null || skip "needs ip (iproute2)"
command -v python3 >/dev/null || skip "needs python3"
for b in "$tandemd" "$tandemctl" "$load"; do [[ -x $b ]] || fail "$b is not built"; done

ip netns add "$nsA" 2>/dev/null || skip "ip netns add failed (no network namespace support?)"
ip netns add "$nsB" || fail "ip netns add $nsB"
ip link add "$vethA" type veth peer name "$vethB" 2>/dev/null || skip "no veth support"
ip link set "$vethA" netns "$nsA" && ip link set "$vethB" netns "$nsB" || fail "move veths"
ip -n "$nsA" addr add "$ipA/24" dev "$vethA" && ip -n "$nsB" addr add "$ipB/24" dev "$vethB" ||
	fail "addresses"
for ns in "$nsA" "$nsB"; do ip -n "$ns" link set lo up || fail "lo up in $ns"; done
ip -n "$nsA" link set "$vethA" up && ip -n "$nsB" link set "$vethB" up || fail "veths up"

# node N: its address, its namespace
addr() { [[ $1 == 1 ]] && echo "$ipA:$((21000 + id % 1000 * 3))" || echo "$ipB:$((21000 + id % 1000 * 3 + $1 - 1))"; }
nsof() { [[ $1 == 1 ]] && echo "$nsA" || echo "$nsB"; }

for n in 1 2 3; do
	role=replica
	[[ $n == 1 ]] && role=primary
	{
		printf '[node]\nid = %d\nrole = %s\ncluster_id = %d\ndata_dir = %s/n%d\n' \
			"$n" "$role" $((5000 + id % 1000)) "$dir" "$n"
		printf 'threads = 1\nidle = yield\n'
		[[ $n != 1 ]] && printf 'primary = 1\n'
		printf '[log]\nring_size = 4M\nsegment_size = 1M\n'
		printf '[dataplane]\nbackend = udp\naddress = %s\n' "$(addr "$n")"
		for p in 1 2 3; do
			[[ $p == "$n" ]] || printf '[peer.%d]\naddress = %s\n' "$p" "$(addr "$p")"
		done
		printf '[replication]\nlevel = durable\nquorum = 1\ntimeout_ms = 2000\n'
		printf 'failover_timeout_ms = 300\n'
	} > "$dir/n$n.ini"
done

field() { # field N KEY: a top-level field of node N's status
	"$tandemctl" status --dir "$dir/n$1" --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null
}
wait_for() { # wait_for WHAT COMMAND...: up to 60 s
	local what=$1
	shift
	for _ in $(seq 1 600); do "$@" && return 0; sleep 0.1; done
	fail "$what: not within 60 s"
}
started() { [[ -n $(field "$1" role) ]]; }
streaming() { [[ $(field "$1" replica_state) == streaming ]]; }
fenced() { [[ $(field 1 fenced) == True || $(field 1 role) != primary ]]; }
new_primary() {
	for n in 2 3; do [[ $(field $n role) == primary && $(field $n epoch) -gt 1 ]] && return 0; done
	return 1
}
follows() { [[ $(field 1 role) == replica && $(field 1 replica_state) == streaming &&
	       $(field 1 primary_id) != 1 ]]; }

for n in 1 2 3; do
	ip netns exec "$(nsof $n)" "$tandemd" --config "$dir/n$n.ini" 2> "$dir/n$n.err" &
	pids+=($!)
	wait_for "node $n starts" started "$n"
done
wait_for "node 2 streams" streaming 2
wait_for "node 3 streams" streaming 3

"$load" --attach "$dir/n1" --count 2000 --level durable --keys 1000000 --quiet \
	> "$dir/load1.txt" || fail "writes before the partition"

ip -n "$nsA" link set "$vethA" down || fail "veth down"
echo "partition: $vethA down"
wait_for "node 1 fences itself" fenced
echo "node 1: $(field 1 failover_note)"
wait_for "nodes 2/3 elect a primary" new_primary
if "$load" --attach "$dir/n1" --count 1 --level memory --quiet >/dev/null 2>&1; then
	fail "the cut-off primary accepted a write"
fi
"$load" --attach "$dir/n2" --attach "$dir/n3" --follow --count 2000 --level durable \
	--keys 1000000 --seed 7 --verify --quiet > "$dir/load2.txt" ||
	{ cat "$dir/load2.txt"; fail "writes to the new primary"; }

ip -n "$nsA" link set "$vethA" up || fail "veth up"
echo "healed: $vethA up"
wait_for "node 1 follows the new primary" follows
for n in 2 3; do
	[[ $(field $n role) == primary ]] && p=$n
done
"$load" --attach "$dir/n$p" --count 500 --level durable --keys 1000000 --seed 9 --verify \
	--quiet > "$dir/load3.txt" || { cat "$dir/load3.txt"; fail "writes after healing"; }

digest_of() { # digest_of N: "digest keys applied" of node N
	"$tandemctl" digest --dir "$dir/n$1" --json 2>/dev/null | python3 -c \
		'import json,sys; d=json.load(sys.stdin); print(d["digest_hex"], d["keys"], d["applied"])'
}
same_digest() {
	local d1 d2 d3
	d1=$(digest_of 1) && d2=$(digest_of 2) && d3=$(digest_of 3) || return 1
	[[ -n $d1 && $d1 == "$d2" && $d2 == "$d3" ]]
}
wait_for "digests converge" same_digest
echo "digest, keys, applied position on all three nodes: $(digest_of 1)"

for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
pids=()
for n in 1 2 3; do
	"$tandemctl" log dump "$dir/n$n/log" --json > "$dir/dump$n.json" || fail "log dump of node $n"
done
python3 - "$dir" <<'PY' || fail "an epoch has writes of two origins"
import json, sys
d = sys.argv[1]
owner = {}
for n in (1, 2, 3):
    for line in open(f"{d}/dump{n}.json"):
        r = json.loads(line)
        if r.get("type") not in ("PUT", "DEL"):
            continue
        e, o = r["epoch"], r["origin"]
        if owner.setdefault(e, o) != o:
            print(f"node {n}: epoch {e} has writes of origins {owner[e]} and {o}")
            sys.exit(1)
print("epochs and their single writer:", dict(sorted(owner.items())))
PY
echo "PASS"
