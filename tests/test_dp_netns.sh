#!/usr/bin/env bash
# The dpdk transport on kernel interfaces: two network namespaces joined by a veth pair, one
# dp_netns_peer in each, exchanging numbered frames through tdm_dp_transport over DPDK's
# af_packet driver (must work) and af_xdp driver (tried; reported as skipped when this kernel or
# build cannot open it on a veth). Then, over each driver that opened, the stream path: a
# tandem log of STREAM_COUNT records (some larger than a frame) streamed by a tdm_dp_sender in
# one namespace to a tdm_dp_receiver in the other that checks each record bit for bit.
#
#   test_dp_netns.sh DP_NETNS_PEER [COUNT [STREAM_COUNT]]
#
# Needs root and `ip netns`; without them it exits 77 (skipped) and says what was missing.
# Everything it makes (namespaces, veths, processes, DPDK runtime directories, the sender's log
# directory and its ring in /dev/shm) carries this shell's PID and is removed on every exit path;
# every wait is bounded by `timeout`.
set -u

peer_bin=${1:?usage: test_dp_netns.sh DP_NETNS_PEER [COUNT [STREAM_COUNT]]}
count=${2:-2000}
stream_count=${3:-20000}
id=$$
nsA=tdmA$id nsB=tdmB$id
vethA=tdmva$id vethB=tdmvb$id        # at most 15 characters: IFNAMSIZ
net="10.$((id % 250 + 1)).$((id / 250 % 250))"
ipA=$net.1 ipB=$net.2
prefix=tdmns$id
pids=()
# Under the sanitizers (tools/test sets ASAN_OPTIONS): full malloc stacks, so the suppression of
# libxdp's umem leak in tests/lsan.supp can match (DPDK 22.11's af_xdp never frees it).
if [[ -n ${ASAN_OPTIONS:-} ]]; then
	export ASAN_OPTIONS=$ASAN_OPTIONS:fast_unwind_on_malloc=0
fi

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

cleanup() {
	# TERM reaches the peers through `timeout`, which kills them 5 s later if they linger.
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	ip netns del "$nsA" 2>/dev/null
	ip netns del "$nsB" 2>/dev/null
	ip link del "$vethA" 2>/dev/null       # gone with its namespace; in case the move failed
	rm -rf /var/run/dpdk/"$prefix"* 2>/dev/null
	rm -f /dev/shm/"$prefix"* 2>/dev/null  # stream-send's log ring, if it was killed
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[[ $EUID -eq 0 ]] || skip "needs root to create network namespaces and veth interfaces"
command -v ip >/dev/null || skip "needs ip (iproute2)"
command -v timeout >/dev/null || skip "needs timeout (coreutils)"
[[ -x $peer_bin ]] || fail "$peer_bin is not an executable"

ip netns add "$nsA" 2>/dev/null || skip "ip netns add failed (no network namespace support?)"
ip netns add "$nsB" || fail "ip netns add $nsB"
ip link add "$vethA" type veth peer name "$vethB" 2>/dev/null || skip "no veth support"
ip link set "$vethA" netns "$nsA" && ip link set "$vethB" netns "$nsB" || fail "move veths"
ip -n "$nsA" addr add "$ipA/24" dev "$vethA" && ip -n "$nsB" addr add "$ipB/24" dev "$vethB" ||
	fail "addresses"
for ns in "$nsA" "$nsB"; do ip -n "$ns" link set lo up || fail "lo up in $ns"; done
ip -n "$nsA" link set "$vethA" up && ip -n "$nsB" link set "$vethB" up || fail "veths up"
macA=$(ip -n "$nsA" -br link show "$vethA" | awk '{print $3}')
macB=$(ip -n "$nsB" -br link show "$vethB" | awk '{print $3}')
echo "namespaces $nsA ($vethA $ipA $macA) <-> $nsB ($vethB $ipB $macB)"

# Malformed and foreign frames, sent from namespace A to B before each exchange: the receiving
# transport must drop each one, count it (bad lower or not ours) and go on. Prints how many of
# them are malformed (rx_bad_lower must grow by exactly that).
inject_junk() {
	ip netns exec "$nsA" python3 - "$vethA" "$macA" "$macB" "$ipA" "$ipB" 9000 10 <<'PY'
import socket, struct, sys

iface, smac, dmac, sip, dip, port, reps = sys.argv[1:8]
port, reps = int(port), int(reps)
eth = bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", ""))

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def ip(payload, proto=17, dst=dip, frag=0x4000, ihl=5, ver=4, total=None, good=True):
    total = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", ver << 4 | ihl, 0, total, 1, frag, 64, proto, 0,
                    socket.inet_aton(sip), socket.inet_aton(dst))
    c = csum(h) ^ (0 if good else 0x5555)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload

def udp(payload, dport=port, ulen=None):
    ulen = 8 + len(payload) if ulen is None else ulen
    return struct.pack("!HHHH", port, dport, ulen, 0) + payload

v4, arp, vlan = b"\x08\x00", b"\x08\x06", b"\x81\x00\x00\x05"
data = b"J" * 32
bad = [eth + v4,                                       # no room for an IP header
       eth + v4 + ip(udp(data), ver=6),                # not version 4
       eth + v4 + ip(udp(data), ihl=3),                # IHL below 5
       eth + v4 + ip(udp(data), good=False),           # header checksum
       eth + v4 + ip(udp(data), total=400),            # longer than the frame
       eth + v4 + ip(udp(data), total=12),             # shorter than its header
       eth + v4 + ip(udp(data, ulen=200)),             # UDP longer than the IP payload
       eth + v4 + ip(udp(data, ulen=4)),               # UDP shorter than its header
       eth + vlan + v4 + b"\x45" * 10,                  # tagged, IP header cut short
       eth + v4 + ip(b"", ihl=15)[:30]]                # options run past the frame
foreign = [eth + arp + b"\x00" * 28,                     # not IPv4
           eth + v4 + ip(udp(data), frag=0x2000),      # a fragment
           eth + v4 + ip(b"\x00" * 20, proto=6),        # TCP
           eth + v4 + ip(udp(data), dst="10.254.254.254"),  # another address
           eth + v4 + ip(udp(data, dport=port + 1)),   # another port
           eth + vlan + arp + b"\x00" * 28]             # tagged, not IPv4
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for _ in range(reps):
    for f in bad + foreign:
        s.send(f)
print(len(bad) * reps)
PY
}

# wait_up FILE PID: until the peer writing FILE has its transport up (or is gone): 20 s at most.
wait_up() {
	local i
	for ((i = 0; i < 200; i++)); do
		grep -q "link" "$1" && break
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
}

# run_pair DRIVER: echo in B, junk from A, then send in A. Sets $rc_send / $rc_echo; output in
# $out.*
run_pair() {
	local drv=$1 junk_bad=""
	local common=(--count "$count" --port 9000 --timeout 40)
	: >"$out.echo"
	timeout -k 5 60 ip netns exec "$nsB" "$peer_bin" echo "${common[@]}" \
		--vdev "net_${drv}0,iface=$vethB" --prefix "${prefix}${drv}B" \
		--local-ip "$ipB" --peer-ip "$ipA" --peer-mac "$macA" >"$out.echo" 2>&1 &
	pids+=($!)
	local echo_pid=$!
	wait_up "$out.echo" "$echo_pid"
	if grep -q "link" "$out.echo" && command -v python3 >/dev/null; then
		junk_bad=$(inject_junk) || junk_bad=""
		sleep 0.2   # let the echo side drain them before the count is compared
	fi
	timeout -k 5 60 ip netns exec "$nsA" "$peer_bin" send "${common[@]}" \
		--vdev "net_${drv}0,iface=$vethA" --prefix "${prefix}${drv}A" \
		--local-ip "$ipA" --peer-ip "$ipB" --peer-mac "$macB" >"$out.send" 2>&1 &
	pids+=($!)
	wait $!      # in the background: a trapped INT/TERM interrupts `wait`, not a foreground job
	rc_send=$?
	# The echo side exits on its own after FIN; if the sender failed it waits for its timeout.
	[[ $rc_send -eq 0 ]] || kill -TERM "$echo_pid" 2>/dev/null
	wait "$echo_pid"
	rc_echo=$?
	sed "s/^/  [$drv send] /" "$out.send"
	sed "s/^/  [$drv echo] /" "$out.echo"
	check_junk "$drv" "$junk_bad"
}

# The echo side must have counted exactly the malformed frames we sent as bad lower.
check_junk() {
	local drv=$1 want=$2 got
	if [[ -z $want ]]; then
		echo "  ($drv: no malformed frames injected: python3 missing or the echo side not up)"
		return
	fi
	got=$(sed -n 's/.*bad lower \([0-9]*\).*/\1/p' "$out.echo" | tail -1)
	if [[ $rc_echo -eq 0 && $got != "$want" ]]; then
		echo "  $drv: the echo side counted ${got:-?} malformed frames, $want were sent"
		rc_echo=1
	elif [[ $rc_echo -eq 0 ]]; then
		echo "  $drv: $want malformed frames dropped and counted, the exchange went on"
	fi
}

# run_stream DRIVER: stream-recv in B, then stream-send in A with its log under $outdir and its
# ring named after this run. Sets $rc_ssend / $rc_srecv (1 also when the sender left its log
# directory or ring behind); output in $out.s*
run_stream() {
	local drv=$1
	local shm=${prefix}${drv}log
	local common=(--count "$stream_count" --port 9000 --timeout 60)
	: >"$out.srecv"
	timeout -k 5 75 ip netns exec "$nsB" "$peer_bin" stream-recv "${common[@]}" \
		--vdev "net_${drv}0,iface=$vethB" --prefix "${prefix}${drv}SB" \
		--local-ip "$ipB" --peer-ip "$ipA" --peer-mac "$macA" >"$out.srecv" 2>&1 &
	pids+=($!)
	local recv_pid=$!
	wait_up "$out.srecv" "$recv_pid"
	timeout -k 5 75 ip netns exec "$nsA" "$peer_bin" stream-send "${common[@]}" \
		--vdev "net_${drv}0,iface=$vethA" --prefix "${prefix}${drv}SA" \
		--local-ip "$ipA" --peer-ip "$ipB" --peer-mac "$macB" \
		--log-dir "$outdir" --shm "$shm" >"$out.ssend" 2>&1 &
	pids+=($!)
	wait $!
	rc_ssend=$?
	# The receiver exits on its own once the sender has gone quiet; if the sender failed, stop it.
	[[ $rc_ssend -eq 0 ]] || kill -TERM "$recv_pid" 2>/dev/null
	wait "$recv_pid"
	rc_srecv=$?
	sed "s/^/  [$drv stream-send] /" "$out.ssend"
	sed "s/^/  [$drv stream-recv] /" "$out.srecv"
	if [[ $rc_ssend -eq 0 ]] && compgen -G "$outdir/tdm-netns-log.*" >/dev/null; then
		echo "  $drv: stream-send left its log directory behind: $(echo "$outdir"/tdm-netns-log.*)"
		rc_ssend=1
	fi
	if [[ $rc_ssend -eq 0 && -e /dev/shm/$shm ]]; then
		echo "  $drv: stream-send left its ring /dev/shm/$shm behind"
		rc_ssend=1
	fi
}

# stream DRIVER: run the stream mode over a driver whose transport opened; report, set status.
stream() {
	local drv=$1
	run_stream "$drv"
	if [[ $rc_ssend -eq 0 && $rc_srecv -eq 0 ]]; then
		echo "PASS: $drv: $stream_count records streamed from a tandem log, in order and intact"
	else
		echo "FAIL: $drv: stream: stream-send exit $rc_ssend, stream-recv exit $rc_srecv"
		status=1
	fi
}

outdir=$(mktemp -d /tmp/tdm-netns-$id.XXXXXX) || fail "mktemp"
trap 'cleanup; rm -rf "$outdir"' EXIT
out=$outdir/run

status=0
run_pair af_packet
if [[ $rc_send -eq 0 && $rc_echo -eq 0 ]]; then
	echo "PASS: af_packet: $count frames echoed intact between namespaces"
elif [[ $rc_send -eq 77 || $rc_echo -eq 77 ]]; then
	skip "this build has no DPDK backend"
else
	echo "FAIL: af_packet: send exit $rc_send, echo exit $rc_echo"
	status=1
fi
[[ $rc_send -eq 3 || $rc_echo -eq 3 ]] || stream af_packet

run_pair af_xdp
if [[ $rc_send -eq 0 && $rc_echo -eq 0 ]]; then
	echo "PASS: af_xdp: $count frames echoed intact between namespaces"
elif [[ $rc_send -eq 3 || $rc_echo -eq 3 ]]; then
	echo "SKIPPED PART: af_xdp did not open on a veth here (kernel, libxdp or driver); see above"
else
	echo "FAIL: af_xdp opened but the exchange failed: send exit $rc_send, echo exit $rc_echo"
	status=1
fi
[[ $rc_send -eq 3 || $rc_echo -eq 3 ]] || stream af_xdp
exit $status
