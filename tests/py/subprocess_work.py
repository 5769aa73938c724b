"""subprocess_work.py STEPS SLEEP_MS: a Python program that runs short
children now and then: subprocess.run(["uname", "-s"]) and platform.uname()
(which runs `uname -p` in a child in some Python versions) at start, one
child with a cleared environment (env={}), and /bin/true every 10 steps,
around a stateful computation in the parent. A checkpoint may catch a
child starting, running or exiting."""
import hashlib
import platform
import subprocess
import sys
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    r = subprocess.run(["uname", "-s"], capture_output=True, text=True, timeout=60)
    print(f"start uname -s -> {r.stdout.strip()} rc={r.returncode}", flush=True)
    u = platform.uname()
    print(f"start platform.uname system={u.system} processor_is_str={isinstance(u.processor, str)}",
          flush=True)
    r = subprocess.run(["/bin/echo", "hi"], env={}, capture_output=True, text=True, timeout=60)
    print(f"start echo with env={{}} -> {r.stdout.strip()!r} rc={r.returncode}", flush=True)
    h = hashlib.sha256(b"subprocess_work")
    x, total, children = 88172645463325252, 0, 0
    for s in range(steps):
        for _ in range(200):
            x ^= (x << 13) % (1 << 64)
            x ^= x >> 7
            x ^= (x << 17) % (1 << 64)
            total = (total + (x >> 40)) % (1 << 64)
        h.update(x.to_bytes(8, "little"))
        extra = ""
        if s % 10 == 0:
            t = subprocess.run(["/bin/true"], timeout=60)
            children += 1
            h.update(bytes([t.returncode]))
            extra = f" /bin/true rc={t.returncode}"
        print(f"step {s} x={x:016x} total={total:016x} state={h.hexdigest()[:16]}{extra}",
              flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} children={children} checksum={h.hexdigest()}", flush=True)


if __name__ == "__main__":
    main()
