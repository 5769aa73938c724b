"""Works on an open temporary file that has no name any more
(tempfile.TemporaryFile): its content and position must survive a
restart."""
import hashlib
import sys
import tempfile
import time

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
tmp = tempfile.TemporaryFile()
h = hashlib.sha256()
for i in range(steps):
    tmp.write(f"record {i:05d} {'x' * (i % 17)}\n".encode())
    tmp.flush()
    pos = tmp.tell()
    tmp.seek(0)
    data = tmp.read()
    h.update(data)
    print(f"step {i} pos={pos} size={len(data)} sha={hashlib.sha256(data).hexdigest()[:16]}",
          flush=True)
    time.sleep(sleep_ms / 1000)
print(f"done {h.hexdigest()}", flush=True)
