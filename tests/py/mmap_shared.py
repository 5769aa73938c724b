"""mmap_shared.py STEPS SLEEP_MS FILE: a file mapped shared and writable
(Python's mmap), written at each step; the output is computed in memory
only. The checkpoint must say in execution.log that such a file's content
is not in the image."""
import mmap
import sys
import time


def main():
    steps, sleep_ms, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with open(path, "w+b") as f:
        f.truncate(4096)
        m = mmap.mmap(f.fileno(), 4096)
    total = 0
    for s in range(steps):
        total = (total * 31 + s) % 1000003
        m[0:16] = f"{total:016d}".encode()
        print(f"step {s} total {total}", flush=True)
        time.sleep(sleep_ms / 1000)
    print("done", flush=True)


main()
