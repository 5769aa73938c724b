"""subprocess_uname.py STEPS SLEEP_MS: runs short-lived children every
step (subprocess.run(["uname", "-a"]), os.system, platform.uname) and
prints whether they worked; output that may differ between machines or
runs is compared with what the first step saw, never printed."""
import os
import platform
import subprocess
import sys
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    pid0 = os.getpid()
    first = None
    for s in range(steps):
        r = subprocess.run(["uname", "-a"], capture_output=True, text=True, timeout=60)
        out = r.stdout.strip()
        if first is None:
            first = out
        system = os.system("true")
        uname = platform.uname()
        print(f"step {s} uname rc={r.returncode} nonempty={bool(out)} same={out == first} "
              f"stderr={r.stderr!r} os.system={system} platform={uname.system} "
              f"pid={'same' if os.getpid() == pid0 else 'CHANGED'}", flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    print(f"done steps={steps}", flush=True)


if __name__ == "__main__":
    main()
