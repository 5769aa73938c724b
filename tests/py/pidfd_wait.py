"""pidfd_wait.py STEPS SLEEP_MS [asyncio]: waits for its children through
pidfds. Every 20 steps it starts a child that waits for a word on a pipe
and then exits with a status of its own; each step it asks the child's
pidfd whether the child has ended (it must not have), and at step 15 of
the 20 it sends the word, waits on the pidfd and reads the status through
it. All along it also holds a pidfd of a child it has already waited for,
which must stay readable. With asyncio, the children are
create_subprocess_exec's and the event loop waits for them through its
pidfd child watcher (the default from Python 3.12 on)."""
import asyncio
import os
import select
import sys
import time
import warnings

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
CHILD = "import sys; sys.exit(len(sys.stdin.readline()))"


def pidfd_of_a_finished_child():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    fd = os.pidfd_open(pid)
    os.waitpid(pid, 0)
    return fd


def readable(fd, timeout=0):
    return bool(select.select([fd], [], [], timeout)[0])


def raw():
    gone = pidfd_of_a_finished_child()
    child = pidfd = w = None
    for i in range(steps):
        phase, at = divmod(i, 20)
        if at == 0:
            r, w = os.pipe()
            child = os.fork()
            if child == 0:
                os.close(w)
                os._exit(len(os.read(r, 100)))
            os.close(r)
            pidfd = os.pidfd_open(child)
        state = "waited for" if pidfd is None else "ended" if readable(pidfd) else "running"
        print(f"step {i} child {state} finished child readable {readable(gone)}", flush=True)
        if at == 15:
            os.write(w, b"x" * (phase + 3))
            os.close(w)
            ended = readable(pidfd, 30)
            si = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
            print(f"step {i} child ended {ended} status {si.si_status}", flush=True)
            os.close(pidfd)
            pidfd = None
        time.sleep(sleep_ms / 1000)
    try:
        os.waitid(os.P_PIDFD, gone, os.WEXITED | os.WNOHANG)
        print("the finished child could be waited for again", flush=True)
    except ChildProcessError:
        print("done", flush=True)


async def with_asyncio():
    if sys.version_info < (3, 12):  # the default watcher uses threads there
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher = asyncio.PidfdChildWatcher()
            asyncio.set_child_watcher(watcher)
            watcher.attach_loop(asyncio.get_running_loop())
    proc = None
    for i in range(steps):
        phase, at = divmod(i, 20)
        if at == 0:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD,
                                                        stdin=asyncio.subprocess.PIPE)
        print(f"step {i} child {'running' if proc.returncode is None else 'ended'}", flush=True)
        if at == 15:
            proc.stdin.write(b"x" * (phase + 3) + b"\n")
            await proc.stdin.drain()
            print(f"step {i} child status {await asyncio.wait_for(proc.wait(), 60)}", flush=True)
        await asyncio.sleep(sleep_ms / 1000)
    print("done", flush=True)


if sys.argv[3:] == ["asyncio"]:
    asyncio.run(with_asyncio())
else:
    raw()
