"""inotify_ctypes.py STEPS SLEEP_MS [unread]: inotify through ctypes the
way Python bindings do it (libc loaded by name, as watchdog and
inotify_simple do): watches a directory it makes (its first watch removed
at once, so the one that stays is number 2) and, at each step, makes a
file there and prints the event it reads. A restart that lost the watch
waits in vain. With "unread" it never reads the events: a checkpoint
cannot wait for them and must say what a restart lacks."""
import ctypes
import os
import select
import struct
import sys
import time

IN_CREATE = 0x100


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    unread = sys.argv[3:] == ["unread"]
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    d = f"inotify_ctypes.{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    first = libc.inotify_add_watch(fd, d.encode(), IN_CREATE)
    libc.inotify_rm_watch(fd, first)
    os.read(fd, 4096)  # its IN_IGNORED
    wd = libc.inotify_add_watch(fd, d.encode(), IN_CREATE)
    print(f"watch {wd}", flush=True)
    for step in range(steps):
        path = os.path.join(d, f"g{step}")
        if os.path.exists(path):  # made by a run killed after the checkpoint
            os.unlink(path)
        open(path, "w").close()
        if unread:
            print(f"step {step}: made g{step}", flush=True)
            time.sleep(sleep_ms / 1000)
            continue
        if not select.select([fd], [], [], 5)[0]:
            print(f"step {step}: no event within 5 s", flush=True)
            return 1
        data = os.read(fd, 4096)
        w, mask, _, length = struct.unpack_from("iIII", data)
        name = data[16:16 + length].rstrip(b"\0").decode()
        print(f"step {step}: watch {w} mask {mask:x} name {name}", flush=True)
        time.sleep(sleep_ms / 1000)
    for step in range(steps):
        os.unlink(os.path.join(d, f"g{step}"))
    os.rmdir(d)
    print("done", flush=True)
    return 0


sys.exit(main())
