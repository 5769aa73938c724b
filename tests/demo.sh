#!/bin/bash
# Demo: start a program under ckpt, let it checkpoint, kill everything
# with SIGKILL (as a node failure would), restart it and show that it
# resumed from the checkpoint. Builds nothing: `make demo` builds first.
# Exits non-zero when the restart did not resume correctly.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CKPT=${CKPT_BIN:-$ROOT/build/bin/ckpt}
PROG=$ROOT/build/tests/counter
STEPS=40
SLEEP_MS=150
INTERVAL=2

if [[ -t 1 ]]; then B=$'\033[1m' R=$'\033[1;31m' G=$'\033[1;32m' N=$'\033[0m'; else B= R= G= N=; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
fail() { printf '\n%sDEMO FAILED: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

for f in "$CKPT" "$PROG"; do
	[[ -x $f ]] || fail "$f is not built (run: make demo)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-demo.XXXXXX")
RUNS=$TMP/runs
mkdir "$RUNS"
pgid=
cleanup() {
	[[ -n $pgid ]] && kill -9 -- "-$pgid" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

# Prints the lines of file $1 not shown yet, indented.
shown=0
show_new() {
	local n
	n=$(wc -l <"$1")
	if ((n > shown)); then
		sed -n "$((shown + 1)),${n}p" "$1" | cut -c1-100 | sed 's/^/   | /'
		shown=$n
	fi
}

say "The program: $PROG $STEPS $SLEEP_MS"
echo "A deterministic loop of $STEPS steps, ${SLEEP_MS} ms each, printing its state every step."
echo "Uninterrupted, its last line would be:"
expected=$("$PROG" "$STEPS" 0)
echo "   | $(tail -n1 <<<"$expected")"

say "ckpt start --interval $INTERVAL (a checkpoint every $INTERVAL s)"
echo "\$ ckpt start --interval $INTERVAL --dir $RUNS $PROG $STEPS $SLEEP_MS"
# Its own session and process group, so that the whole group can be killed.
setsid "$CKPT" start --interval "$INTERVAL" --dir "$RUNS" "$PROG" "$STEPS" "$SLEEP_MS" \
	>"$TMP/first.out" 2>"$TMP/first.err" </dev/null &
pid=$!
pgid=$(ps -o pgid= -p "$pid" | tr -d ' ') || true
[[ -n $pgid ]] || fail "ckpt start exited at once: $(cat "$TMP/first.err")"

# Wait for the first checkpoint image.
rundir=
for _ in $(seq 1 300); do
	show_new "$TMP/first.out"
	kill -0 "$pid" 2>/dev/null || fail "ckpt start ended before a checkpoint: $(tail -n3 "$TMP/first.err")"
	rundir=$(find "$RUNS" -mindepth 1 -maxdepth 1 -type d | head -n1)
	if [[ -n $rundir ]] && [[ -n $(find "$rundir" -name '*.img' -type f 2>/dev/null | head -n1) ]]; then
		break
	fi
	sleep 0.1
done
[[ -n $rundir ]] && [[ -n $(find "$rundir" -name '*.img' -type f | head -n1) ]] ||
	fail "no checkpoint image appeared in 30 s"
say "A checkpoint was written (after about $shown steps) in $rundir:"
ls -l "$rundir" | sed 's/^/   /'
grep -i checkpoint "$rundir/execution.log" 2>/dev/null | tail -n2 | sed 's/^/   execution.log: /' || true

echo
echo "The program keeps running for a second..."
end=$(($(date +%s%N) + 1000000000))
while (($(date +%s%N) < end)); do
	sleep 0.05
	show_new "$TMP/first.out"
done

say "Node failure: kill -9 -- -$pgid (ckpt and everything it started)"
last_before=$(tail -n1 "$TMP/first.out")
kill -9 -- "-$pgid"
{ wait "$pid"; } 2>/dev/null || true
pgid=
echo "Killed. Its last line was:"
echo "   | $last_before"

say "ckpt restart (the same command line)"
echo "\$ ckpt restart --interval $INTERVAL --dir $RUNS $PROG $STEPS $SLEEP_MS"
shown=0
setsid "$CKPT" restart --interval "$INTERVAL" --dir "$RUNS" "$PROG" "$STEPS" "$SLEEP_MS" \
	>"$TMP/restart.out" 2>"$TMP/restart.err" </dev/null &
pid=$!
pgid=$(ps -o pgid= -p "$pid" | tr -d ' ') || true
status=
for _ in $(seq 1 1200); do
	show_new "$TMP/restart.out"
	if ! kill -0 "$pid" 2>/dev/null; then
		status=0
		wait "$pid" || status=$?
		break
	fi
	sleep 0.1
done
show_new "$TMP/restart.out"
pgid=
[[ -n $status ]] || fail "ckpt restart did not finish within 2 minutes"
[[ $status -eq 0 ]] || fail "ckpt restart exited with status $status: $(tail -n3 "$TMP/restart.err")"

restarted=$(cat "$TMP/restart.out")
first_line=$(head -n1 <<<"$restarted")
[[ -n $restarted ]] || fail "the restarted program printed nothing"
[[ $first_line =~ ^step\ ([0-9]+) ]] || fail "unexpected first line after restart: $first_line"
resumed_at=${BASH_REMATCH[1]}
say "Result"
if ((resumed_at == 0)); then
	fail "the restart began again at step 0: it did not resume from the checkpoint"
fi
if [[ $expected != *"$restarted" ]]; then
	fail "the restarted output is not the tail of an uninterrupted run's output"
fi
[[ $last_before =~ ^step\ ([0-9]+) ]] && killed_at=${BASH_REMATCH[1]} || killed_at=-1
if ((killed_at >= 0 && resumed_at > killed_at + 1)); then
	fail "the restart resumed at step $resumed_at, but the program had only reached step $killed_at"
fi
echo "Killed at step $killed_at; the restart resumed at step $resumed_at, where the last"
echo "checkpoint before the kill was taken (not at step 0), ran to the end, and its"
echo "output is exactly the tail of an uninterrupted run's."
if ((resumed_at <= killed_at)); then
	echo "Steps $resumed_at..$killed_at came after that checkpoint, so they ran again."
fi
echo "Run directory log (execution.log):"
sed 's/^/   /' "$rundir/execution.log" 2>/dev/null | tail -n 12 || true
printf '\n%sDEMO OK%s\n' "$G" "$N"
