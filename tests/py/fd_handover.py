"""fd_handover.py STEPS SLEEP_MS: a descriptor handed from one process to
another the way multiprocessing's resource sharer hands PyTorch
DataLoader batches over. The client (the parent) connects to the server
(a forked child), sends its request at once and waits for the answer;
the server, busy, accepts only SLEEP_MS after the connection came, reads
the request, answers with one byte and, in SCM_RIGHTS, the read end of a
pipe holding the step's result, and hangs up; the client then starts the
next step at once. So nearly all the time a request sits in a connection
not accepted yet, and a checkpoint that lets the server take it sees the
descriptor in flight to a client that would start the next request as
soon as it has it: the run must go on unchanged after a restart. The
server's running hash reaches the client only through the pipes."""
import hashlib
import os
import socket
import sys
import tempfile
import time

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
where = os.path.join(tempfile.mkdtemp(prefix="handover-"), "sharer.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(where)
srv.listen(8)

child = os.fork()
if child == 0:
    srv.settimeout(10)  # a server whose client is gone gives up
    h = hashlib.sha256(b"handover server")
    for i in range(steps):
        time.sleep(sleep_ms / 1000)
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            sys.exit(f"server: no client for step {i}")
        conn.settimeout(None)
        with conn:
            h.update(conn.recv(100))
            r, w = os.pipe()
            os.write(w, f"answer {i} {h.hexdigest()[:16]}".encode())
            os.close(w)
            socket.send_fds(conn, [b"F"], [r])
            os.close(r)
    os._exit(0)
srv.close()

for i in range(steps):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(where)
    c.sendall(f"request {i}".encode())
    msg, fds, _, _ = socket.recv_fds(c, 1, 4)
    if msg != b"F" or len(fds) != 1:
        sys.exit(f"client: step {i}: got {msg!r} with {len(fds)} descriptor(s), "
                 f"not one byte with one descriptor")
    c.close()
    answer = os.read(fds[0], 200).decode()
    os.close(fds[0])
    print(f"step {i} {answer}", flush=True)
os.waitpid(child, 0)
os.unlink(where)
os.rmdir(os.path.dirname(where))
print("done", flush=True)
