"""hold_torch: a Python process with torch imported, holding tensors, for the
checkpoint benchmark.

    /usr/bin/python3 hold_torch.py MIB [--dirty] [--step-ms MS]

Holds MIB MiB (default 256) of float32 tensors: half torch.rand after
torch.manual_seed(0) (incompressible), half a constant 0.5 (compressible,
but not zero pages). Prints "ready rss_kib=N sum=X", then "step N sum X t=MS"
every MS milliseconds (default 50), MS being time.monotonic() in ms. With --dirty, before each step it
writes the step number into the first float of every 100th page of both
tensors: always the same 1% of their pages.
"""
import os
import sys
import time

import torch


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def main(argv):
    mib, dirty, step_ms = 256, False, 50
    args = iter(argv)
    for a in args:
        if a == "--dirty":
            dirty = True
        elif a == "--step-ms":
            step_ms = int(next(args))
        else:
            mib = int(a)
    torch.manual_seed(0)
    n = mib * (1 << 20) // 4 // 2          # float32 elements per half
    rand = torch.rand(n)
    const = torch.full((n,), 0.5)
    per_page = 4096 // 4
    pages = [t.view(-1, per_page) for t in (rand, const)]

    def checksum():
        return float(rand[::n // 16 + 1].sum() + const[::n // 16 + 1].sum())

    print(f"ready rss_kib={rss_kib()} sum={checksum():.6f}", flush=True)
    step = 0
    while True:
        time.sleep(step_ms / 1000)
        step += 1
        if dirty:
            for p in pages:
                p[::100, 0] = float(step)
        print(f"step {step} sum {checksum():.6f} t={time.monotonic() * 1000:.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
