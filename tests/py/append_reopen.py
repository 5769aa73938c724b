"""append_reopen.py STEPS SLEEP_MS FILE [seek]: opens FILE for appending at
every step, writes a line derived from what the file holds, and closes it;
prints the line. With "seek" it opens FILE write-only, without O_APPEND,
and seeks to its end first, as Fortran's position="append" does. A line
appended after a checkpoint and again by the restarted run would change
every line after it."""
import hashlib
import os
import sys
import time


def append(path, line, seek):
    if not seek:
        with open(path, "a") as f:
            f.write(line)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main():
    steps, sleep_ms, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    seek = len(sys.argv) > 4 and sys.argv[4] == "seek"
    open(path, "w").close()
    for i in range(steps):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        append(path, f"{i} {digest}\n", seek)
        print(f"step {i} {digest}", flush=True)
        time.sleep(sleep_ms / 1000)
    print("done", flush=True)


if __name__ == "__main__":
    main()
