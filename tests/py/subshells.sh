#!/bin/bash
# subshells.sh STEPS SLEEP_MS: eight command substitutions with a pipe per
# step, each a forked bash that closes and dup2s descriptors while the
# agent in it connects to the supervisor; prints a running checksum.
steps=$1
pause=$(printf '0.%03d' "$2")
sum=0
for ((s = 0; s < steps; s++)); do
	for k in 1 2 3 4 5 6 7 8; do
		x=$(echo $((s * k)) | cat)
		sum=$(((sum * 31 + x) % 1000003))
	done
	echo "step $s sum $sum"
	sleep "$pause"
done
echo done
