"""libuse.py STEPS SLEEP_MS LIB: loads the shared library LIB (ctypes)
and prints what its value() gives for each step. A test rebuilds the
library after the checkpoint (a new file at the same path, as a compiler
or a package installer makes it): the restarted program must go on with
the library it had mapped, kept with the checkpoint."""
import ctypes
import sys
import time


def main():
    steps, sleep_ms, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    lib = ctypes.CDLL(path)
    total = 0
    for step in range(steps):
        total += lib.value(step)
        print(f"step {step} value {lib.value(step)} total {total}", flush=True)
        time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} total {total}", flush=True)


if __name__ == "__main__":
    main()
