"""shared_offset.py STEPS SLEEP_MS: a parent and its child write records
in turn through one descriptor they share since the fork (one open file
description: one file offset). The parent prints the shared offset each
step and a hash of the file at the end: a restart that gave each process
a description of its own would make them overwrite each other."""
import hashlib
import os
import sys
import tempfile
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    tmp, path = tempfile.mkstemp(prefix="ckpt-shared-offset-")
    os.close(tmp)
    fd = os.open(path, os.O_RDWR | os.O_TRUNC)
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(to_child_w)
        os.close(to_parent_r)
        while True:
            n = os.read(to_child_r, 8)
            if not n:
                os._exit(0)
            os.write(fd, b"child  %08d\n" % int(n))
            os.write(to_parent_w, b"k")
    os.close(to_child_r)
    os.close(to_parent_w)
    for i in range(steps):
        os.write(fd, b"parent %08d\n" % i)
        os.write(to_child_w, b"%08d" % i)
        os.read(to_parent_r, 1)
        print(f"step {i} offset={os.lseek(fd, 0, os.SEEK_CUR)}", flush=True)
        time.sleep(sleep_ms / 1000)
    os.close(to_child_w)
    os.waitpid(pid, 0)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    print(f"done steps={steps} bytes={len(data)} sha={hashlib.sha256(data).hexdigest()[:16]}",
          flush=True)


if __name__ == "__main__":
    main()
