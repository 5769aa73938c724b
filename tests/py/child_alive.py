"""Keeps a child process (sleep) running while it counts: checkpoints must
be refused, naming the child, and the program must run on undisturbed."""
import subprocess
import sys
import time

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
child = subprocess.Popen(["sleep", "600"])
x = 7
for i in range(steps):
    x = (x * 48271) % 2147483647
    print(f"step {i} {x}", flush=True)
    time.sleep(sleep_ms / 1000)
child.kill()
child.wait()
print(f"done {x}", flush=True)
