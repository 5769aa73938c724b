"""fork_pipes.py STEPS SLEEP_MS: os.fork with two pipes. Each step the
parent sends a number on the request pipe; the child folds it into a
running hash that only the child holds and answers on the response pipe,
where the answer waits while the parent sleeps. At the end the parent
closes the request pipe; the child exits with a status derived from its
hash, which the parent reaps with os.waitpid and prints. The child never
writes to stdout."""
import hashlib
import os
import struct
import sys
import time
import traceback


def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def child(req_r, resp_w):
    h = hashlib.sha256(b"fork_pipes child")
    count = 0
    while True:
        data = read_exact(req_r, 8)
        if len(data) < 8:
            break
        (n,) = struct.unpack("<Q", data)
        h.update(data)
        count += 1
        digest = h.digest()
        mixed = int.from_bytes(digest[:8], "little") ^ ((n * n) % (1 << 64))
        os.write(resp_w, struct.pack("<QQ", count, mixed))
    # the status depends on everything the child saw
    os._exit(3 + h.digest()[0] % 100 + count % 7)


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(req_w)
            os.close(resp_r)
            child(req_r, resp_w)
        except BaseException:
            traceback.print_exc()
        os._exit(99)
    os.close(req_r)
    os.close(resp_w)
    x, total = 2463534242, 0
    for s in range(steps):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        n = x >> 20
        os.write(req_w, struct.pack("<Q", n))
        if sleep_ms:
            time.sleep(sleep_ms / 1000)   # the answer sits in the pipe meanwhile
        data = read_exact(resp_r, 16)
        if len(data) < 16:
            print(f"step {s} child went away", flush=True)
            sys.exit(1)
        count, answer = struct.unpack("<QQ", data)
        total = (total * 31 + answer) % (1 << 64)
        print(f"step {s} sent={n:011x} count={count} answer={answer:016x} total={total:016x}",
              flush=True)
    os.close(req_w)
    rest = os.read(resp_r, 16)
    _, status = os.waitpid(pid, 0)
    print(f"child status exit={os.waitstatus_to_exitcode(status)} extra_bytes={len(rest)}",
          flush=True)
    print(f"done steps={steps} total={total:016x}", flush=True)


if __name__ == "__main__":
    main()
