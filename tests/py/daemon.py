"""daemon.py STEPS SLEEP_MS: the first program starts a daemon (fork,
setsid, fork again, the middle process exits) and prints the first third
of the steps, then exits with status 3. The daemon, now an orphan in its
own session, waits for it to end (end of file on a pipe), prints the rest
and exits 0. ckpt supervises until the daemon has ended and exits with the
first program's status, 3."""
import hashlib
import os
import sys
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    first = steps // 3
    r, w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.setsid()
        if os.fork():
            os._exit(0)
        # the daemon: its state continues the first program's
        h = hashlib.sha256(b"daemon")
        os.read(r, 1)  # end of file: the first program has ended
        for i in range(first, steps):
            h.update(str(i).encode())
            # in the session (and group) of the ended middle process
            sid = os.getsid(0)
            own_session = sid > 0 and sid == os.getpgid(0) and sid != os.getpid()
            print(f"step {i} daemon h={h.hexdigest()[:16]} own_session={own_session}",
                  flush=True)
            time.sleep(sleep_ms / 1000)
        print(f"done steps={steps} daemon h={h.hexdigest()[:16]}", flush=True)
        os._exit(0)
    os.close(r)
    os.waitpid(pid, 0)
    h = hashlib.sha256(b"first")
    for i in range(first):
        h.update(str(i).encode())
        print(f"step {i} first h={h.hexdigest()[:16]}", flush=True)
        time.sleep(sleep_ms / 1000)
    sys.exit(3)


if __name__ == "__main__":
    main()
