#!/bin/bash
# run_both.sh STEPS SLEEP_MS [PROGDIR]: a shell script that runs two
# programs one after the other, in children it forks and execs: the
# Python counter (counter.py next to this script) and the C counter
# (PROGDIR/counter, by default build/tests/counter of this checkout), each
# with STEPS steps of SLEEP_MS ms, then prints its own last line. A
# checkpoint finds bash waiting for one of them.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 STEPS SLEEP_MS [PROGDIR]" >&2
	exit 2
fi
steps=$1
sleep_ms=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
progdir=${3:-$here/../../build/tests}
/usr/bin/python3 "$here/counter.py" "$steps" "$sleep_ms"
echo "between: counter.py finished with status $?"
"$progdir/counter" "$steps" "$sleep_ms" 7 || rc=$?
echo "between: counter finished with status ${rc:-0}"
echo "done run_both steps=$steps"
