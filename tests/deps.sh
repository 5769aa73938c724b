#!/bin/bash
# Installs the Debian 12 packages that building and testing ckpt need.
# As root: installs whatever is missing (nothing when all are present).
# As another user: lists what is missing and fails, so `make check` does
# not go on to fail in a confusing way.
set -euo pipefail

PACKAGES=(
	build-essential binutils
	python3 python3-pytest python3-numpy python3-scipy python3-torch
	libzstd-dev libxxhash-dev clang libclang-rt-14-dev procps
)
# For the Slurm tests (tests/integration/test_slurm.py), which start a
# single-node Slurm of their own and need root: installed as root, only
# reported otherwise (those tests then skip, saying why).
OPTIONAL=(slurmctld slurmd slurm-client munge)

if ! command -v dpkg-query >/dev/null 2>&1; then
	# Not Debian: check what matters directly and hope for the best.
	missing=()
	for cmd in gcc make ld objcopy readelf; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
	done
	/usr/bin/python3 -c 'import pytest' >/dev/null 2>&1 || missing+=("/usr/bin/python3 with pytest")
	if ((${#missing[@]})); then
		echo "deps: not a Debian system and missing: ${missing[*]}" >&2
		exit 1
	fi
	echo "deps: not a Debian system; gcc, make and pytest found, going on" >&2
	exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || missing+=("$p")
done
optional=()
for p in "${OPTIONAL[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || optional+=("$p")
done
if [[ $(id -u) -eq 0 ]]; then
	missing+=("${optional[@]}")
elif ((${#optional[@]})); then
	echo "deps: not installed: ${optional[*]} (the Slurm tests will be skipped)" >&2
fi

if ((${#missing[@]} == 0)); then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	echo "deps: (or run this as root: make and .ci/run install them themselves)" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run to finish instead of failing on its lock.
apt_opts=(-o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)
apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
echo "deps: done"
