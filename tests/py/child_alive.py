"""child_alive.py STEPS SLEEP_MS [CHILD ARGS...]: keeps a child process
(sleep 600, or the command given) running while it counts. The child is
part of the checkpoint; a child that cannot be checkpointed (a static
binary) makes the checkpoint fail, naming it, and the program run on."""
import subprocess
import sys
import time

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
child = subprocess.Popen(sys.argv[3:] or ["sleep", "600"], stdout=subprocess.DEVNULL)
x = 7
for i in range(steps):
    x = (x * 48271) % 2147483647
    print(f"step {i} {x}", flush=True)
    time.sleep(sleep_ms / 1000)
child.kill()
child.wait()
print(f"done {x}", flush=True)
