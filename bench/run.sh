#!/bin/sh
# Builds ckpt and the benchmark's program, then runs the benchmark.
# Options are passed to bench/bench.py (see bench/README.md), e.g.
#   bench/run.sh --sizes 256 --runs 1 --no-torch
# CKPT=/path/to/bin/ckpt measures that ckpt instead of this tree's build.
set -e
cd "$(dirname "$0")/.."
if [ -n "$CKPT" ]; then make -s build/bench/hold build/bench/memcost; else make -s all build/bench/hold build/bench/memcost; fi
exec /usr/bin/python3 bench/bench.py "$@"
