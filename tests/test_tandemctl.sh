#!/bin/bash
# End-to-end test of `tandemctl log verify|dump` (tools/ctl_log.c), and of the command-line
# errors of `tandemctl status|get|digest` (tools/ctl_node.c), `tandemctl switchover|promote|
# cut|heal` (tools/ctl_failover.c) and `tandemctl conflicts` (tools/ctl_conflicts.c) when no
# node runs; then status and conflicts of a running node of each mode, and of two multi-primary
# nodes after `tandem-load --spread --verify` wrote the same keys on both (the tandemd and
# tandem-load built beside TANDEMCTL; left out when they are not there).
#
#   bash tests/test_tandemctl.sh TANDEMCTL MKLOG      (meson test: tandemctl-cli)
#
# MKLOG (tests/mklog.c) writes a multi-segment log with deterministic records and lists their
# positions; the tool's output is checked against that list, then against damaged copies of the
# log (a flipped byte in a middle segment, a middle segment removed) and bad command lines.
# MKLOG also cuts a second log with tdm_log_truncate; dump reads the side file it leaves, and
# damaged copies of it.
# Exit codes checked: 0 sound, 1 error found, 2 usage. Stops at the first failed assertion
# (expected vs got, and the command's output); the last line is "N passed, 0 failed".
# Exits 77 (skipped) when mklog cannot open a log because io_uring is unavailable.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 TANDEMCTL MKLOG" >&2
	exit 2
fi
CTL=$1
MKLOG=$2

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tdm-cli-XXXXXX")
SHM_FILES=()
cleanup() {
	rm -rf -- "$TMP"
	local f
	for f in "${SHM_FILES[@]}"; do
		rm -f -- "$f"
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SEG=65536       # segment size: data starts at file offset 4096 of each segment file
COUNT=1500      # records: about 8 segments
HDR=4096
PASSED=0
OUT=$TMP/out
ERR=$TMP/err
RC=0
CMD=""

# ---- Assertions ----

fail() {
	echo "FAIL: $1" >&2
	echo "  expected: $2" >&2
	echo "  got:      $3" >&2
	if [ -n "$CMD" ]; then
		echo "  last command: $CMD (exit $RC)" >&2
		echo "  --- its stdout (first 20 lines) ---" >&2
		head -n 20 "$OUT" >&2 || true
		echo "  --- its stderr ---" >&2
		head -n 20 "$ERR" >&2 || true
	fi
	echo "$PASSED passed, 1 failed"
	exit 1
}

pass() {
	PASSED=$((PASSED + 1))
	echo "ok $PASSED: $1"
}

# run CMD...: run it, stdout to $OUT, stderr to $ERR, exit status in $RC
run() {
	CMD="$*"
	RC=0
	"$@" >"$OUT" 2>"$ERR" || RC=$?
}

expect_rc() { # DESC WANT
	if [ "$RC" -ne "$2" ]; then
		fail "$1" "exit status $2" "exit status $RC"
	fi
	pass "$1"
}

expect_eq() { # DESC WANT GOT
	if [ "$2" != "$3" ]; then
		fail "$1" "$2" "$3"
	fi
	pass "$1"
}

expect_in() { # DESC FILE TEXT: FILE contains TEXT (fixed string)
	if ! grep -qF -- "$3" "$2"; then
		fail "$1" "$(basename "$2") containing '$3'" "$(head -c 600 "$2")"
	fi
	pass "$1"
}

expect_py() { # DESC PYTHON-CODE [ARGS...]: the code prints "" on success, else what is wrong
	local desc=$1 code=$2 got
	shift 2
	got=$(python3 -c "$code" "$@" 2>&1) || got="python3 failed: $got"
	if [ -n "$got" ]; then
		fail "$desc" "(checked by python3)" "$got"
	fi
	pass "$desc"
}

# ---- Make the log ----

# mklog DIR [CUT SIDE_FILE]: write the log (and cut it); its listing goes to DIR.list. 77 from
# mklog skips the whole test.
mklog() {
	local rc=0 pid
	"$MKLOG" "$1" "$COUNT" "$SEG" "${@:2}" >"$1.list" 2>"$TMP/mklog.err" &
	pid=$!
	SHM_FILES+=("/dev/shm/tdm-mklog-$pid")
	wait "$pid" || rc=$?
	if [ "$rc" -eq 77 ]; then
		cat "$TMP/mklog.err" >&2
		echo "SKIP: mklog could not open a log (io_uring unavailable)"
		exit 77
	fi
	if [ "$rc" -ne 0 ]; then
		CMD=""
		fail "mklog $1 $COUNT $SEG" "exit status 0" "exit status $rc: $(cat "$TMP/mklog.err")"
	fi
}

LOG=$TMP/clean
mklog "$LOG"
mapfile -t POS < <(awk '$1 == "rec" { print $2 }' "$LOG.list")
mapfile -t TYPES < <(awk '$1 == "rec" { print $3 }' "$LOG.list")
SUMMARY=$(tail -n 1 "$LOG.list")
PADS=$(sed -n 's/.* pads=\([0-9]*\).*/\1/p' <<<"$SUMMARY")
END=$(sed -n 's/.* end=\([0-9]*\).*/\1/p' <<<"$SUMMARY")
NSEG=$(find "$LOG" -maxdepth 1 -name '*.seg' | wc -l)
SEG1=$(printf '%016x.seg' "$SEG")    # the second segment file (stream positions SEG..2*SEG)
LAST=${POS[$((COUNT - 1))]}

expect_eq "mklog listed every record" "$COUNT" "${#POS[@]}"
expect_eq "mklog's log has at least 4 segments with data" 1 "$((END > 3 * SEG))"
expect_eq "mklog's log holds PAD records" 1 "$((PADS > 0))"
# Every file the tool reads, to check that it changed nothing.
SUM_BEFORE=$(cd "$LOG" && sha256sum -- * | sort)

# ---- verify on a clean log ----

run "$CTL" log verify "$LOG"
expect_rc "verify clean log: exit 0" 0
expect_in "verify clean log: says sound" "$OUT" "log $LOG: sound"
expect_eq "verify clean log: records = mklog's records + PADs" "$((COUNT + PADS))" \
	"$(awk '$1 == "records" { print $2 }' "$OUT")"
expect_eq "verify clean log: segments" "$NSEG" "$(awk '$1 == "segments" { print $2 }' "$OUT")"
expect_eq "verify clean log: end" "$END" "$(awk '$1 == "end" { print $2 }' "$OUT")"
expect_eq "verify clean log: last record" "$LAST" \
	"$(awk '$1 == "last" && $2 == "record" { print $3 }' "$OUT")"
expect_eq "verify clean log: nothing on stderr" "" "$(cat "$ERR")"

run "$CTL" log verify --json "$LOG"
expect_rc "verify --json clean log: exit 0" 0
expect_py "verify --json clean log: one object with the log's figures" '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
if len(lines) != 1:
    sys.exit(print(f"{len(lines)} lines, want 1"))
v = json.loads(lines[0])
want = {"dir": sys.argv[2], "result": "ok", "records": int(sys.argv[3]), "segments": int(sys.argv[4]),
        "start": 0, "end": int(sys.argv[5]), "last_record": int(sys.argv[6]), "torn_bytes": 0,
        "error": None}
bad = [f"{k}={v.get(k)!r} (want {w!r})" for k, w in want.items() if v.get(k) != w]
print("; ".join(bad))
' "$OUT" "$LOG" "$((COUNT + PADS))" "$NSEG" "$END" "$LAST"

run "$CTL" log verify --cluster 7 "$LOG"
expect_rc "verify --cluster 7 (the log's cluster): exit 0" 0
run "$CTL" log verify -c 8 "$LOG"
expect_rc "verify -c 8 (another cluster): exit 1" 1
expect_in "verify -c 8: names the first segment" "$ERR" "$LOG/0000000000000000.seg"

# ---- dump ----

run "$CTL" log dump "$LOG"
expect_rc "dump clean log: exit 0" 0
expect_eq "dump: one line per non-PAD record" "$COUNT" "$(wc -l <"$OUT")"
expect_eq "dump: positions are mklog's" "$(printf '%s\n' "${POS[@]}")" "$(awk '{ print $1 }' "$OUT")"
expect_eq "dump: types are mklog's" "$(printf '%s\n' "${TYPES[@]}")" "$(awk '{ print $2 }' "$OUT")"
expect_in "dump: record 1's fields" "$OUT" \
	"${POS[1]} PUT   epoch=0 origin=1 hlc=2 len=150 value_len=101 key_len=9 key=\"k00000001\""
expect_eq "dump clean log: nothing on stderr" "" "$(cat "$ERR")"

run "$CTL" log dump --json "$LOG"
expect_rc "dump --json clean log: exit 0" 0
expect_py "dump --json: every line parses, positions increase and are mklog's" '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
want = [l.split() for l in open(sys.argv[2]) if l.startswith("rec ")]
if len(lines) != len(want):
    sys.exit(print(f"{len(lines)} lines, want {len(want)}"))
prev = -1
for i, (line, (_, pos, typ)) in enumerate(zip(lines, want)):
    try:
        r = json.loads(line)
    except ValueError as e:
        sys.exit(print(f"line {i + 1} is not JSON ({e}): {line}"))
    p = r["position"]
    if p <= prev:
        sys.exit(print(f"line {i + 1}: position {p} after {prev}"))
    prev = p
    key = "" if typ == "NOOP" else f"k{i:08d}"
    got = (r["position"], r["type"], r["hlc"], r["origin"], r["key"])
    exp = (int(pos), typ, i + 1, 1, key)
    if got != exp:
        sys.exit(print(f"line {i + 1}: (position, type, hlc, origin, key) = {got}, want {exp}"))
' "$OUT" "$LOG.list"

# ---- dump --from / --limit ----

K=$((COUNT / 2))
P=${POS[$K]}
run "$CTL" log dump --from "$P" "$LOG"
expect_rc "dump --from (a record's position): exit 0" 0
expect_eq "dump --from POS[$K]: the records from $K on" \
	"$(printf '%s\n' "${POS[@]:$K}")" "$(awk '{ print $1 }' "$OUT")"
run "$CTL" log dump --from "$((P + 1))" "$LOG"
expect_rc "dump --from (inside a record): exit 0" 0
expect_eq "dump --from POS[$K]+1: starts at the next record" \
	"$(printf '%s\n' "${POS[@]:$((K + 1))}")" "$(awk '{ print $1 }' "$OUT")"
run "$CTL" log dump -f "$(printf '0x%x' "$P")" -n 3 "$LOG"
expect_rc "dump -f 0xPOS -n 3: exit 0" 0
expect_eq "dump -f 0xPOS -n 3: three records from $K" \
	"$(printf '%s\n' "${POS[@]:$K:3}")" "$(awk '{ print $1 }' "$OUT")"
run "$CTL" log dump --limit 5 --json "$LOG"
expect_rc "dump --limit 5 --json: exit 0" 0
expect_eq "dump --limit 5 --json: the first five records" \
	"$(printf '%s\n' "${POS[@]:0:5}")" \
	"$(python3 -c 'import json, sys; [print(json.loads(l)["position"]) for l in sys.stdin]' <"$OUT")"
run "$CTL" log dump --from "$END" "$LOG"
expect_rc "dump --from END: exit 0" 0
expect_eq "dump --from END: no records" 0 "$(wc -l <"$OUT")"
run "$CTL" log dump --limit 0 "$LOG"
expect_rc "dump --limit 0: exit 2" 2
expect_in "dump --limit 0: says why" "$ERR" "--limit: must be at least 1"
run "$CTL" log dump --from 12x "$LOG"
expect_rc "dump --from 12x: exit 2" 2
expect_in "dump --from 12x: names the value" "$ERR" "'12x' is not a number"

expect_eq "verify and dump changed nothing in the log" "$SUM_BEFORE" \
	"$(cd "$LOG" && sha256sum -- * | sort)"

# ---- dump of a side file (the records tdm_log_truncate moved out of a log) ----

CUTLOG=$TMP/cutlog
SIDE=$TMP/side.records
NCUT=300             # the last NCUT records are cut: more than one segment's worth
CUTK=$((COUNT - NCUT))
mklog "$CUTLOG" "$CUTK" "$SIDE"
CUT=$(awk '$1 == "cut" { print $2 }' "$CUTLOG.list")
expect_eq "mklog cut at record $CUTK's position" "${POS[$CUTK]}" "$CUT"
expect_eq "mklog's cut moved $NCUT records" "$NCUT" "$(awk '$1 == "cut" { print $3 }' "$CUTLOG.list")"
expect_eq "the cut spans a segment boundary" 1 "$((CUT / SEG < LAST / SEG))"
run "$CTL" log verify "$CUTLOG"
expect_rc "verify the cut log: exit 0" 0
expect_eq "verify the cut log: it ends at the cut" "$CUT" "$(awk '$1 == "end" { print $2 }' "$OUT")"

run "$CTL" log dump "$SIDE"
expect_rc "dump side file: exit 0" 0
expect_in "dump side file: the header line" "$OUT" \
	"# side file $SIDE: $NCUT records cut from the log of node 1 (cluster 7) at position $CUT"
expect_in "dump side file: where the log ended" "$OUT" "that log ended at $END"
expect_eq "dump side file: the header is the first line" "#" "$(head -c 1 "$OUT")"
expect_eq "dump side file: positions are the cut records'" \
	"$(printf '%s\n' "${POS[@]:$CUTK}")" "$(grep -v '^#' "$OUT" | awk '{ print $1 }')"
expect_eq "dump side file: types are the cut records'" \
	"$(printf '%s\n' "${TYPES[@]:$CUTK}")" "$(grep -v '^#' "$OUT" | awk '{ print $2 }')"
expect_eq "dump side file: nothing on stderr" "" "$(cat "$ERR")"

run "$CTL" log dump --json "$SIDE"
expect_rc "dump --json side file: exit 0" 0
expect_py "dump --json side file: a header object, then the records" '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
h, recs = lines[0], lines[1:]
want = {"side_file": sys.argv[2], "node_id": 1, "cluster_id": 7, "first": int(sys.argv[3]),
        "end": int(sys.argv[4]), "epoch": 0, "count": len(sys.argv) - 5}
bad = [f"{k}={h.get(k)!r} (want {w!r})" for k, w in want.items() if h.get(k) != w]
pos = [int(p) for p in sys.argv[5:]]
got = [r["position"] for r in recs]
if got != pos:
    bad.append(f"positions {got[:5]}... ({len(got)}), want {pos[:5]}... ({len(pos)})")
print("; ".join(bad))
' "$OUT" "$SIDE" "$CUT" "$END" "${POS[@]:$CUTK}"

run "$CTL" log dump --from "$((${POS[$((CUTK + 5))]} - 1))" -n 3 "$SIDE"
expect_rc "dump --from -n 3 side file: exit 0" 0
expect_eq "dump --from -n 3 side file: three records from $((CUTK + 5))" \
	"$(printf '%s\n' "${POS[@]:$((CUTK + 5)):3}")" "$(grep -v '^#' "$OUT" | awk '{ print $1 }')"

# A flipped byte in the side file's first record (its hlc, file offset 64 + 16): exit 1, named.
cp -- "$SIDE" "$TMP/side.flipped"
python3 -c '
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(80)
    b = f.read(1)[0]
    f.seek(80)
    f.write(bytes([b ^ 0x10]))
' "$TMP/side.flipped"
run "$CTL" log dump "$TMP/side.flipped"
expect_rc "dump side file, flipped byte: exit 1" 1
expect_in "dump side file, flipped byte: names the file and offset" "$ERR" \
	"error in $TMP/side.flipped at byte offset 64: the record at position $CUT fails its checks"
expect_eq "dump side file, flipped byte: the header, no record" 1 "$(wc -l <"$OUT")"
head -c -8 -- "$SIDE" >"$TMP/side.short"
run "$CTL" log dump "$TMP/side.short"
expect_rc "dump side file cut short: exit 1" 1
expect_in "dump side file cut short: says so" "$ERR" \
	"the file ends inside record $((NCUT - 1)) of $NCUT"
expect_eq "dump side file cut short: the records before" "$((NCUT - 1))" "$(grep -vc '^#' "$OUT")"
cp -- "$SIDE" "$TMP/side.badhdr"
printf '\x01' | dd of="$TMP/side.badhdr" bs=1 seek=40 conv=notrunc status=none
run "$CTL" log dump "$TMP/side.badhdr"
expect_rc "dump side file, damaged header: exit 1" 1
expect_in "dump side file, damaged header: says so" "$ERR" \
	"error in $TMP/side.badhdr at byte offset 0: the header fails its checksum"
run "$CTL" log dump "$LOG.list"
expect_rc "dump a file that is not a side file: exit 1" 1
expect_in "dump a file that is not a side file: says so" "$ERR" "not a tandem side file"

# ---- A flipped byte inside a record of a middle segment ----

BAD=$TMP/flipped
cp -a "$LOG" "$BAD"
# The second segment's first record starts at its file offset 4096 (stream position SEG): flip
# a byte 100 bytes into it (python3 checks that its length word covers that byte), else a byte
# of its CRC.
expect_eq "the second segment starts with one of mklog's records" 1 \
	"$(printf '%s\n' "${POS[@]}" | awk -v s="$SEG" '$1 == s { n++ } END { print n + 0 }')"
if ! FLIP=$(python3 -c '
import struct, sys
with open(sys.argv[1], "rb") as f:
    f.seek(int(sys.argv[2]))
    (length,) = struct.unpack("<I", f.read(4))
if length & 0x80000000 or length < 40:
    sys.exit(f"the segment does not start with a record (length word {length:#x})")
print(int(sys.argv[2]) + (100 if length > 100 else 4))
' "$BAD/$SEG1" "$HDR" 2>&1); then
	CMD=""
	fail "a byte to flip in the first record of $SEG1" "a file offset" "$FLIP"
fi
python3 -c '
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)[0]
    f.seek(int(sys.argv[2]))
    f.write(bytes([b ^ 0x10]))
' "$BAD/$SEG1" "$FLIP"

run "$CTL" log verify "$BAD"
expect_rc "verify, flipped byte at $SEG1+$FLIP: exit 1" 1
expect_in "verify, flipped byte: names the segment file" "$ERR" "$BAD/$SEG1"
expect_in "verify, flipped byte: the record's offset and position" "$ERR" \
	"at byte offset $HDR (stream position $SEG = $(printf '0x%x' "$SEG"))"
expect_in "verify, flipped byte: says ERROR" "$OUT" "log $BAD: ERROR"
run "$CTL" log verify --json "$BAD"
expect_rc "verify --json, flipped byte: exit 1" 1
expect_py "verify --json, flipped byte: error names the file, offset and position" '
import json, sys
v = json.loads(open(sys.argv[1]).read())
e = v.get("error") or {}
got = (v.get("result"), e.get("file"), e.get("offset"), e.get("position"))
want = ("error", sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
print("" if got == want else f"(result, file, offset, position) = {got}, want {want}")
' "$OUT" "$BAD/$SEG1" "$HDR" "$SEG"
NBEFORE=$(printf '%s\n' "${POS[@]}" | awk -v s="$SEG" '$1 < s' | wc -l)
run "$CTL" log dump "$BAD"
expect_rc "dump, flipped byte: exit 1" 1
expect_eq "dump, flipped byte: prints the records before the bad one" \
	"$(printf '%s\n' "${POS[@]:0:$NBEFORE}")" "$(awk '{ print $1 }' "$OUT")"
expect_in "dump, flipped byte: names the segment file" "$ERR" "$BAD/$SEG1"

# ---- A middle segment removed ----

GAP=$TMP/gap
cp -a "$LOG" "$GAP"
rm -- "$GAP/$SEG1"
run "$CTL" log verify "$GAP"
expect_rc "verify, $SEG1 removed: exit 1" 1
expect_in "verify, segment removed: names the missing file" "$ERR" "$GAP/$SEG1"
expect_in "verify, segment removed: says it is missing" "$ERR" "missing"
run "$CTL" log dump "$GAP"
expect_rc "dump, segment removed: exit 1" 1
expect_in "dump, segment removed: names the missing file" "$ERR" "$GAP/$SEG1"

# ---- Empty directory ----

mkdir "$TMP/empty"
run "$CTL" log verify --json "$TMP/empty"
expect_rc "verify, empty directory: exit 0" 0
expect_in "verify, empty directory: result empty" "$OUT" '"result":"empty"'

# ---- Usage errors: exit 2, the culprit named ----

run "$CTL" log verify --bogus "$LOG"
expect_rc "verify --bogus: exit 2" 2
expect_in "verify --bogus: names the option" "$ERR" "unknown option '--bogus'"
run "$CTL" log dump -x "$LOG"
expect_rc "dump -x: exit 2" 2
expect_in "dump -x: names the option" "$ERR" "unknown option '-x'"
run "$CTL" log verify --json=1 "$LOG"
expect_rc "verify --json=1: exit 2" 2
expect_in "verify --json=1: names the option" "$ERR" "option '--json' takes no value"
run "$CTL" log dump "$LOG" --from
expect_rc "dump DIR --from (no value): exit 2" 2
expect_in "dump --from without a value: names the option" "$ERR" "option '--from' needs a value"
run "$CTL" log verify
expect_rc "verify without DIR: exit 2" 2
expect_in "verify without DIR: says so" "$ERR" "missing DIR"
run "$CTL" log verify "$LOG" extra
expect_rc "verify DIR extra: exit 2" 2
expect_in "verify DIR extra: names the argument" "$ERR" "unexpected argument 'extra'"
run "$CTL" log verify "$TMP/nonexistent"
expect_rc "verify on a missing directory: exit 2" 2
expect_in "verify on a missing directory: names it" "$ERR" "$TMP/nonexistent"
run "$CTL" log frob
expect_rc "log frob: exit 2" 2
expect_in "log frob: names the command" "$ERR" "unknown command 'frob'"
run "$CTL" --bogus
expect_rc "tandemctl --bogus: exit 2" 2
expect_in "tandemctl --bogus: names the option" "$ERR" "unknown option '--bogus'"

# ---- status, get, digest without a running node (running nodes: tests/test_repl.c) ----

run "$CTL" status
expect_rc "status without --dir or --config: exit 2" 2
expect_in "status without --dir: says what is missing" "$ERR" "missing --dir DATA_DIR or --config FILE"
run "$CTL" digest --dir "$TMP/empty" --config "$TMP/node.ini"
expect_rc "digest --dir and --config: exit 2" 2
expect_in "digest --dir and --config: says one of them" "$ERR" "give --dir or --config, not both"
run "$CTL" status --dir "$TMP/nonexistent"
expect_rc "status on a missing directory: exit 2" 2
expect_in "status on a missing directory: names it" "$ERR" "DATA_DIR '$TMP/nonexistent'"
run "$CTL" status --dir "$TMP/empty"
expect_rc "status, no node ever ran in DIR: exit 1" 1
expect_in "status, no node: says so" "$ERR" "tandemctl status: no node is running in $TMP/empty"
expect_eq "status, no node: nothing on stdout" "" "$(cat "$OUT")"
run "$CTL" status --json --dir "$TMP/empty"
expect_rc "status --json, no node: exit 1" 1
expect_eq "status --json, no node: nothing on stdout" "" "$(cat "$OUT")"
run "$CTL" get --dir "$TMP/empty" k1
expect_rc "get, no node: exit 1" 1
expect_in "get, no node: says so" "$ERR" "tandemctl get: no node is running in $TMP/empty"
run "$CTL" digest --dir "$TMP/empty" --json
expect_rc "digest, no node: exit 1" 1
expect_in "digest, no node: says so" "$ERR" "tandemctl digest: no node is running in $TMP/empty"
printf '[node]\nid = 1\ndata_dir = %s\n' "$TMP/empty" >"$TMP/node.ini"
run "$CTL" digest --config "$TMP/node.ini"
expect_rc "digest --config, no node: exit 1" 1
expect_in "digest --config: the config's data_dir" "$ERR" "no node is running in $TMP/empty"
printf '[node]\nid = 1\nrole = leader\n' >"$TMP/bad.ini"
run "$CTL" status --config "$TMP/bad.ini"
expect_rc "status --config with a bad file: exit 2" 2
expect_in "status --config with a bad file: file, line and key" "$ERR" \
	"$TMP/bad.ini:3: [node] role = leader: unknown value; write primary, replica or witness"
printf '[node]\nid = 1\n' >"$TMP/nodir.ini"
run "$CTL" status --config "$TMP/nodir.ini"
expect_rc "status --config without data_dir: exit 2" 2
expect_in "status --config without data_dir: says so" "$ERR" "sets no [node] data_dir"
run "$CTL" get --dir "$TMP/empty"
expect_rc "get without KEY: exit 2" 2
expect_in "get without KEY: says so" "$ERR" "missing KEY"
run "$CTL" get --dir "$TMP/empty" k1 k2
expect_rc "get KEY extra: exit 2" 2
expect_in "get KEY extra: names the argument" "$ERR" "unexpected argument 'k2'"
run "$CTL" status --dir "$TMP/empty" --watch 0
expect_rc "status --watch 0: exit 2" 2
expect_in "status --watch 0: says the range" "$ERR" "--watch: give 1..86400 seconds"
run "$CTL" status --dir "$TMP/empty" --watch 2s
expect_rc "status --watch 2s: exit 2" 2
expect_in "status --watch 2s: names the value" "$ERR" "'2s' is not a number"
run "$CTL" digest --dir "$TMP/empty" --hex
expect_rc "digest --hex: exit 2" 2
expect_in "digest --hex: names the option" "$ERR" "unknown option '--hex'"

# ---- switchover, promote, cut, heal without a running node (running clusters:
# tests/test_failover.c) ----

run "$CTL" switchover --dir "$TMP/empty"
expect_rc "switchover without NODE: exit 2" 2
expect_in "switchover without NODE: says so" "$ERR" "missing NODE"
run "$CTL" switchover 2
expect_rc "switchover without --dir or --config: exit 2" 2
expect_in "switchover without --dir: says what is missing" "$ERR" \
	"missing --dir DATA_DIR or --config FILE"
run "$CTL" switchover --dir "$TMP/empty" two
expect_rc "switchover NODE two: exit 2" 2
expect_in "switchover NODE two: names the value" "$ERR" "NODE: 'two' is not a node id (1..65535)"
run "$CTL" switchover --dir "$TMP/empty" 0
expect_rc "switchover NODE 0: exit 2" 2
expect_in "switchover NODE 0: names the value" "$ERR" "NODE: '0' is not a node id"
run "$CTL" switchover --dir "$TMP/empty" 65536
expect_rc "switchover NODE 65536: exit 2" 2
expect_in "switchover NODE 65536: names the value" "$ERR" "NODE: '65536' is not a node id"
run "$CTL" switchover --dir "$TMP/empty" 2 3
expect_rc "switchover NODE extra: exit 2" 2
expect_in "switchover NODE extra: names the argument" "$ERR" "unexpected argument '3'"
run "$CTL" switchover --dir "$TMP/empty" --force 2
expect_rc "switchover --force: exit 2" 2
expect_in "switchover --force: names the option" "$ERR" "unknown option '--force'"
run "$CTL" switchover --dir "$TMP/nonexistent" 2
expect_rc "switchover on a missing directory: exit 2" 2
expect_in "switchover on a missing directory: names it" "$ERR" "DATA_DIR '$TMP/nonexistent'"
run "$CTL" switchover --dir "$TMP/empty" 2
expect_rc "switchover, no node: exit 1" 1
expect_in "switchover, no node: says so" "$ERR" \
	"tandemctl switchover: no node is running in $TMP/empty"
expect_eq "switchover, no node: nothing on stdout" "" "$(cat "$OUT")"
run "$CTL" switchover --config "$TMP/node.ini" 2
expect_rc "switchover --config, no node: exit 1" 1
expect_in "switchover --config: the config's data_dir" "$ERR" "no node is running in $TMP/empty"
run "$CTL" promote
expect_rc "promote without --dir or --config: exit 2" 2
expect_in "promote without --dir: says what is missing" "$ERR" \
	"missing --dir DATA_DIR or --config FILE"
run "$CTL" promote --dir "$TMP/empty" 2
expect_rc "promote with an argument: exit 2" 2
expect_in "promote with an argument: names it" "$ERR" "unexpected argument '2'"
run "$CTL" promote --dir "$TMP/empty" --force=yes
expect_rc "promote --force=yes: exit 2" 2
expect_in "promote --force=yes: names the option" "$ERR" "option '--force' takes no value"
run "$CTL" promote --dir "$TMP/empty"
expect_rc "promote, no node: exit 1" 1
expect_in "promote, no node: says so" "$ERR" "tandemctl promote: no node is running in $TMP/empty"
run "$CTL" promote -f --config "$TMP/node.ini"
expect_rc "promote -f --config, no node: exit 1" 1
expect_in "promote -f --config, no node: says so" "$ERR" "no node is running in $TMP/empty"
run "$CTL" cut --dir "$TMP/empty"
expect_rc "cut without PEER: exit 2" 2
expect_in "cut without PEER: says so" "$ERR" "missing PEER"
run "$CTL" cut --dir "$TMP/empty" none
expect_rc "cut PEER none: exit 2" 2
expect_in "cut PEER none: names the value" "$ERR" "PEER: 'none' is not a node id (1..65535, or all)"
run "$CTL" heal --dir "$TMP/empty" -1
expect_rc "heal -1: exit 2" 2
expect_in "heal -1: names the option" "$ERR" "unknown option '-1'"
run "$CTL" heal all
expect_rc "heal without --dir or --config: exit 2" 2
expect_in "heal without --dir: says what is missing" "$ERR" "missing --dir DATA_DIR or --config FILE"
run "$CTL" cut --dir "$TMP/empty" all
expect_rc "cut all, no node: exit 1" 1
expect_in "cut all, no node: says so" "$ERR" "tandemctl cut: no node is running in $TMP/empty"
run "$CTL" heal --dir "$TMP/empty" 3
expect_rc "heal 3, no node: exit 1" 1
expect_in "heal 3, no node: says so" "$ERR" "tandemctl heal: no node is running in $TMP/empty"
expect_eq "heal 3, no node: nothing on stdout" "" "$(cat "$OUT")"

# ---- conflicts without a running node ----

run "$CTL" conflicts
expect_rc "conflicts without --dir or --config: exit 2" 2
expect_in "conflicts without --dir: says what is missing" "$ERR" \
	"missing --dir DATA_DIR or --config FILE"
run "$CTL" conflicts --dir "$TMP/empty" -n 0
expect_rc "conflicts -n 0: exit 2" 2
expect_in "conflicts -n 0: says the range" "$ERR" "--limit: give 1..4096"
run "$CTL" conflicts --dir "$TMP/empty" --limit 4097
expect_rc "conflicts --limit 4097: exit 2" 2
expect_in "conflicts --limit 4097: says the range" "$ERR" "--limit: give 1..4096"
run "$CTL" conflicts --dir "$TMP/empty" -n five
expect_rc "conflicts -n five: exit 2" 2
expect_in "conflicts -n five: names the value" "$ERR" "'five' is not a number"
run "$CTL" conflicts --dir "$TMP/empty" k1
expect_rc "conflicts with an argument: exit 2" 2
expect_in "conflicts with an argument: names it" "$ERR" "unexpected argument 'k1'"
run "$CTL" conflicts --dir "$TMP/empty"
expect_rc "conflicts, no node: exit 1" 1
expect_in "conflicts, no node: says so" "$ERR" "tandemctl conflicts: no node is running in $TMP/empty"
run "$CTL" conflicts --json -n 5 --config "$TMP/node.ini"
expect_rc "conflicts --json --config, no node: exit 1" 1
expect_eq "conflicts --json, no node: nothing on stdout" "" "$(cat "$OUT")"

# ---- status and conflicts of running nodes: one of each mode alone (its one peer never comes
# up), then two multi-primary nodes under tandem-load --spread (tandemd and tandem-load beside
# tandemctl) ----

TANDEMD=$(dirname -- "$CTL")/tandemd
LOAD=$(dirname -- "$CTL")/tandem-load
NODE_PIDS=()
PORT=$((30000 + $$ % 20000))

stop_nodes() {
	local p
	for p in "${NODE_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	NODE_PIDS=()
}
trap 'stop_nodes; cleanup' EXIT

# start_node NAME MODE [ID PEER]: node ID (default 1) of that mode in $TMP/NAME, its one peer
# PEER (default 2); waits until its status answers.
start_node() {
	local id=${3:-1} peer=${4:-2} pid
	mkdir -p "$TMP/$1"
	cat >"$TMP/$1.ini" <<INI
[node]
id = $id
role = primary
cluster_id = 7
data_dir = $TMP/$1
[log]
ring_size = 4M
segment_size = 4M
[dataplane]
backend = udp
address = 127.0.0.1:$((PORT + id))
[replication]
level = local
mode = $2
[peer.$peer]
address = 127.0.0.1:$((PORT + peer))
INI
	"$TANDEMD" --config "$TMP/$1.ini" 2>"$TMP/$1.log" &
	pid=$!
	NODE_PIDS+=("$pid")
	for _ in $(seq 1 250); do
		"$CTL" status --dir "$TMP/$1" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	CMD=""
	fail "tandemd starts ($2)" "a running node" "$(cat "$TMP/$1.log")"
}

if [ -x "$TANDEMD" ]; then
	start_node pr primary-replica
	run "$CTL" conflicts --dir "$TMP/pr"
	expect_rc "conflicts, primary-replica node: exit 0" 0
	expect_in "conflicts, primary-replica node: says there are none" "$OUT" \
		"runs primary-replica: one node takes writes, so there are no conflicts"
	run "$CTL" conflicts --json --dir "$TMP/pr"
	expect_rc "conflicts --json, primary-replica node: exit 0" 0
	expect_py "conflicts --json, primary-replica node: mode and no conflicts" '
import json, sys
v = json.load(open(sys.argv[1]))
got = (v.get("mode"), v.get("conflicts"), v.get("node_id"))
print("" if got == ("primary-replica", [], 1) else f"(mode, conflicts, node_id) = {got}")
' "$OUT"
	run "$CTL" status --json --dir "$TMP/pr"
	expect_py "status --json, primary-replica node: mode, multi-primary and origin fields" '
import json, sys
v = json.load(open(sys.argv[1]))
bad = [f"{k}={v.get(k)!r}" for k, w in (("mode", "primary-replica"), ("conflicts_stale", 0),
       ("tombstones", 0)) if v.get(k) != w]
bad += [f"{k} missing" for k in ("writable", "hlc", "purge_hlc") if k not in v]
p = v["peers"][0]
bad += [f"peer {k} missing" for k in ("origin_state", "origin_applied", "clock_offset_ns",
        "conflicts_lost", "conflicts_won") if k not in p]
print("; ".join(bad))
' "$OUT"
	run "$CTL" status --dir "$TMP/pr"
	expect_eq "status, primary-replica node: no multi-primary lines" "" \
		"$(grep -E '^  (mode|clock|tombstones) ' "$OUT" || true)"
	stop_nodes

	start_node mp multi-primary
	run "$CTL" conflicts --dir "$TMP/mp"
	expect_rc "conflicts, multi-primary node: exit 0" 0
	expect_in "conflicts, multi-primary node: the totals" "$OUT" \
		"node 1 ($TMP/mp): stale 0 (0 in the window), overwrites 0"
	expect_in "conflicts, multi-primary node: none yet" "$OUT" \
		"no conflicts recorded since the node started"
	run "$CTL" conflicts --json -n 3 --dir "$TMP/mp"
	expect_rc "conflicts --json, multi-primary node: exit 0" 0
	expect_py "conflicts --json, multi-primary node: mode, totals, no conflicts" '
import json, sys
v = json.load(open(sys.argv[1]))
got = (v.get("mode"), v.get("stale"), v.get("overwrites"), v.get("conflicts"))
print("" if got == ("multi-primary", 0, 0, []) else f"(mode, stale, overwrites, conflicts) = {got}")
' "$OUT"
	run "$CTL" status --dir "$TMP/mp"
	expect_rc "status, multi-primary node: exit 0" 0
	expect_in "status, multi-primary node: the role" "$OUT" "node 1 (multi-primary, writable)"
	expect_in "status, multi-primary node: write_mode" "$OUT" \
		"  mode       multi-primary, write_mode any: writable"
	expect_in "status, multi-primary node: the clock" "$OUT" "max offset 500 ms"
	expect_in "status, multi-primary node: the peer's writes" "$OUT" "CONFLICTS LOST/WON"
	run "$CTL" status --json --dir "$TMP/mp"
	expect_py "status --json, multi-primary node: mode, writable, clock" '
import json, sys
v = json.load(open(sys.argv[1]))
got = (v.get("mode"), v.get("writable"), v.get("max_clock_offset_ms"), "hlc" in v)
print("" if got == ("multi-primary", True, 500, True) else f"(mode, writable, max offset, hlc) = {got}")
' "$OUT"
	stop_nodes
else
	echo "# no tandemd beside $CTL: the running-node checks are left out"
fi

# Two multi-primary nodes writing the same 20 keys: they converge (tandem-load --verify), and
# the conflicts they counted are listed.
if [ -x "$TANDEMD" ] && [ -x "$LOAD" ]; then
	start_node m1 multi-primary 1 2
	start_node m2 multi-primary 2 1
	run "$LOAD" --attach "$TMP/m1" --attach "$TMP/m2" --spread --shared 100 --keys 20 \
		--rate 200 --duration 1 --verify --json --quiet
	expect_rc "tandem-load --spread --verify on two nodes: exit 0" 0
	expect_py "tandem-load --spread --json: both nodes, the total, equal digests" '
import json, sys
v = json.load(open(sys.argv[1]))
n = v["nodes"]
bad = [] if [x["node_id"] for x in n] == [1, 2] else [f"nodes {n}"]
w = [x["writes"] for x in n]
if v["writes"] != sum(w) or v["writes"] == 0:
    bad.append("total writes %d, nodes %s" % (v["writes"], w))
d = v["verify"]
if not d["ok"] or not d["digests_equal"] or len({x["digest"] for x in d["nodes"]}) != 1:
    bad.append(f"verify {d}")
print("; ".join(bad))
' "$OUT"
	run "$CTL" conflicts --dir "$TMP/m1" --json -n 5
	expect_rc "conflicts --json after shared writes: exit 0" 0
	expect_py "conflicts --json after shared writes: 1..5 rows of both nodes' keys" '
import json, sys
v = json.load(open(sys.argv[1]))
c = v["conflicts"]
bad = [] if 1 <= len(c) <= 5 else [f"{len(c)} conflicts"]
for r in c:
    if r["kind"] not in ("stale", "overwrite") or {r["winner"]["origin"], r["loser"]["origin"]} != {1, 2} \
            or not r["key"].startswith("k") or r["key_len"] != 16 or r["winner"]["hlc"] <= r["loser"]["hlc"]:
        bad.append(f"row {r}")
if v["stale"] + v["overwrites"] < len(c):
    bad.append("totals %d + %d below the rows" % (v["stale"], v["overwrites"]))
print("; ".join(bad))
' "$OUT"
	run "$CTL" conflicts --dir "$TMP/m2" -n 2
	expect_rc "conflicts after shared writes: exit 0" 0
	expect_in "conflicts after shared writes: the table" "$OUT" "TIME          KIND       WIN  KEY"
	stop_nodes
fi

# ---- Help ----

for args in "--help" "log --help" "log verify --help" "log dump --help" "log help dump" "help log" \
	"status --help" "get --help" "digest --help" "help status" "switchover --help" \
	"promote --help" "cut --help" "heal --help" "help switchover" "conflicts --help" \
	"help conflicts"; do
	# shellcheck disable=SC2086 # split the words on purpose
	run "$CTL" $args
	expect_rc "tandemctl $args: exit 0" 0
	expect_in "tandemctl $args: prints a usage" "$OUT" "Usage: tandemctl"
done
run "$CTL" --version
expect_rc "tandemctl --version: exit 0" 0
expect_in "tandemctl --version: prints the version" "$OUT" "tandemctl "

echo "$PASSED passed, 0 failed"
