"""fifo_pair.py STEPS SLEEP_MS: a parent and its child talk through a named
pipe (mkfifo) opened by path at both ends: the child writes records ahead
of the parent, which reads one per step and prints a running hash."""
import hashlib
import os
import struct
import sys
import tempfile
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    d = tempfile.mkdtemp(prefix="ckpt-fifo-")
    path = os.path.join(d, "fifo")
    os.mkfifo(path)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        w = os.open(path, os.O_WRONLY)
        x = 99991
        for i in range(steps):
            x = (x * 48271) % 2147483647
            os.write(w, struct.pack("<QQ", i, x))
        os._exit(0)
    r = os.open(path, os.O_RDONLY)
    h = hashlib.sha256()
    for i in range(steps):
        data = b""
        while len(data) < 16:
            chunk = os.read(r, 16 - len(data))
            if not chunk:
                raise SystemExit("the writer went away")
            data += chunk
        n, x = struct.unpack("<QQ", data)
        h.update(data)
        print(f"step {i} n={n} x={x} h={h.hexdigest()[:16]}", flush=True)
        time.sleep(sleep_ms / 1000)
    _, status = os.waitpid(pid, 0)
    os.unlink(path)
    os.rmdir(d)
    print(f"done steps={steps} writer exit={os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
