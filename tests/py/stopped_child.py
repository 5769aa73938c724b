"""stopped_child.py STEPS SLEEP_MS: the parent stops its child (SIGSTOP)
for the middle half of the run while it keeps sending it numbers through
a pipe, then continues it (SIGCONT) and reads every answer. A checkpoint
in the middle finds the child stopped; it must still be taken, and the
child must answer everything after the restart."""
import hashlib
import os
import signal
import struct
import sys
import time


def child(r, w):
    h = hashlib.sha256(b"stopped child")
    while True:
        data = os.read(r, 8)
        if len(data) < 8:
            os._exit(0)
        h.update(data)
        os.write(w, h.digest()[:8])


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(req_w)
        os.close(resp_r)
        child(req_r, resp_w)
    os.close(req_r)
    os.close(resp_w)
    stop_at, cont_at = steps // 4, 3 * steps // 4
    pending = 0
    total = hashlib.sha256()
    for i in range(steps):
        if i == stop_at:
            os.kill(pid, signal.SIGSTOP)
            os.waitpid(pid, os.WUNTRACED)
        if i == cont_at:
            os.kill(pid, signal.SIGCONT)
        os.write(req_w, struct.pack("<Q", i * 2654435761 % (1 << 64)))
        pending += 1
        if i < stop_at or i >= cont_at:
            while pending:
                total.update(os.read(resp_r, 8))
                pending -= 1
        state = "stopped" if stop_at <= i < cont_at else "running"
        print(f"step {i} child {state} total={total.hexdigest()[:16]}", flush=True)
        time.sleep(sleep_ms / 1000)
    os.close(req_w)
    _, status = os.waitpid(pid, 0)
    print(f"done steps={steps} child exit={os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
