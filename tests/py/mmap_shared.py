"""mmap_shared.py STEPS SLEEP_MS FILE: a file mapped shared and writable
(Python's mmap, as numpy.memmap uses it) holds the program's state: each
step reads it from the mapping and writes the next one there. A restart
must find the file as it was at the checkpoint, not as the killed run
left it."""
import mmap
import sys
import time


def main():
    steps, sleep_ms, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with open(path, "w+b") as f:
        f.truncate(4096)
        m = mmap.mmap(f.fileno(), 4096)
    m[0:16] = b"%016d" % 7
    for s in range(steps):
        total = (int(m[0:16]) * 31 + s) % 1000003
        m[0:16] = b"%016d" % total
        print(f"step {s} total {total}", flush=True)
        time.sleep(sleep_ms / 1000)
    print("done", flush=True)


main()
