#!/bin/bash
# append_loop.sh STEPS SLEEP_MS FILE: a shell loop that appends to FILE
# and closes it at every step, from the shell itself (echo >>) and from a
# child (seq >>), then prints a line computed from everything in the file.
# Lines appended after a checkpoint and appended again by the restarted
# run would show twice, in the file and in the sums printed.
steps=$1
sleep_s=$(awk -v ms="$2" 'BEGIN { printf "%.3f", ms / 1000 }')
out=$3
: >"$out"
for i in $(seq 1 "$steps"); do
	v=$(seq 1 $((i * 50)) | awk '{ s += $1 * $1 } END { print s }')
	echo "step $i $v" >>"$out"
	seq 1 3 >>"$out"
	echo "step $i lines=$(wc -l <"$out") sum=$(awk '{ s += $3 } END { print s }' "$out")"
	sleep "$sleep_s"
done
echo done
