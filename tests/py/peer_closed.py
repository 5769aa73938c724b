"""peer_closed.py STEPS SLEEP_MS: each step a Unix connection whose one end
writes the step's answer and closes at once, while the other reads it only
SLEEP_MS later, up to end of file. A checkpoint nearly always catches a
connection whose peer has closed with the answer queued: after a restart
the reader must get that answer, then end of file."""
import hashlib
import socket
import sys
import time

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
h = hashlib.sha256(b"peer closed")
for i in range(steps):
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    h.update(str(i).encode())
    writer.sendall(f"answer {i} {h.hexdigest()[:16]}".encode())
    writer.close()
    time.sleep(sleep_ms / 1000)
    got = b""
    while True:
        chunk = reader.recv(7)
        if not chunk:
            break
        got += chunk
    reader.close()
    print(f"step {i} {got.decode()}", flush=True)
print("done", flush=True)
