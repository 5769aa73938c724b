"""locks.py STEPS SLEEP_MS: holds an flock on one file and a POSIX lock on
a byte range of another for the whole run. Every step a forked child
checks, through descriptors of its own, that both are still held (its own
attempts must fail), so a restart that lost a lock prints "lost"."""
import fcntl
import os
import sys
import tempfile
import time


def check(path_a, path_b):
    """In a child: 0 if both locks are held by someone else."""
    ok = 0
    with open(path_a, "r+") as a:
        try:
            fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
            ok |= 1
        except BlockingIOError:
            pass
    with open(path_b, "r+") as b:
        try:
            fcntl.lockf(b, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 100)
            ok |= 2
        except OSError:
            pass
    return ok


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    fd_a, path_a = tempfile.mkstemp(prefix="ckpt-lock-a-")
    fd_b, path_b = tempfile.mkstemp(prefix="ckpt-lock-b-")
    os.write(fd_b, b"x" * 200)
    fcntl.flock(fd_a, fcntl.LOCK_EX)
    fcntl.lockf(fd_b, fcntl.LOCK_EX, 10, 100)
    total = 0
    for i in range(steps):
        pid = os.fork()
        if pid == 0:
            os._exit(check(path_a, path_b))
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        total = (total * 7 + i + code) % 1000003
        state = "held" if code == 0 else f"lost(flock={'lost' if code & 1 else 'held'} " \
                                         f"posix={'lost' if code & 2 else 'held'})"
        print(f"step {i} locks {state} total={total}", flush=True)
        time.sleep(sleep_ms / 1000)
    os.unlink(path_a)
    os.unlink(path_b)
    print(f"done steps={steps} total={total}", flush=True)


if __name__ == "__main__":
    main()
