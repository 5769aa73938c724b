"""pending_connect.py STEPS SLEEP_MS unix|tcp [ask|fd]: a client (the parent) and a
server (a forked child) that accepts each connection only SLEEP_MS after
the client made it, the way multiprocessing's resource sharer or a busy
server does. Nearly all the time the client waits for an answer on a
connection the server has not accepted yet, so a checkpoint almost always
catches one queued on the listener; the restart must queue it there again
(the server's next accept finds it) for the run to go on unchanged. The
server's running hash reaches the client only through the answers.
With "ask", the client sends its question before the server accepts: the
bytes sit in the queued connection, out of reach of a checkpoint, which
lets the server run until it has accepted them (given SLEEP_MS under a
second; longer, the restart must give the client an unconnected socket,
an error, never a connection that silently lost them, a hang). With "fd"
(unix only), the client asks too, and the server answers the way
multiprocessing's resource sharer hands PyTorch DataLoader batches over:
one byte and, in SCM_RIGHTS, the read end of a pipe holding the answer;
then it hangs up, and the client starts the next step at once, so a
checkpoint that lets the server accept sees the descriptor in flight to
a client that would start the next request as soon as it has it."""
import hashlib
import os
import socket
import sys
import tempfile
import time

steps, sleep_ms, family = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
by_fd = sys.argv[4:] == ["fd"]
ask = by_fd or sys.argv[4:] == ["ask"]
if family == "unix":
    where = os.path.join(tempfile.mkdtemp(prefix="pending-"), "server.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(where)
else:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    where = srv.getsockname()
srv.listen(8)

child = os.fork()
if child == 0:
    # a server whose client is gone gives up instead of waiting for ever
    srv.settimeout(5)
    h = hashlib.sha256(b"pending server")
    for i in range(steps):
        time.sleep(sleep_ms / 1000)
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            sys.exit(f"server: no client for step {i}")
        conn.settimeout(None)
        with conn:
            if ask:
                h.update(conn.recv(100))
            h.update(str(i).encode())
            answer = f"answer {i} {h.hexdigest()[:16]}".encode()
            if by_fd:
                r, w = os.pipe()
                os.write(w, answer)
                os.close(w)
                socket.send_fds(conn, [b"F"], [r])
                os.close(r)
            else:
                conn.sendall(answer)
    os._exit(0)
srv.close()


def answer_by_fd(c, i):
    msg, fds, _, _ = socket.recv_fds(c, 1, 4)
    if msg != b"F" or len(fds) != 1:
        sys.exit(f"client: step {i}: got {msg!r} with {len(fds)} descriptor(s), "
                 f"not one byte with one descriptor")
    got = os.read(fds[0], 200)
    os.close(fds[0])
    return got


def answer_to_end(c):
    got = b""
    while True:
        chunk = c.recv(100)
        if not chunk:
            return got
        got += chunk


for i in range(steps):
    c = socket.socket(srv.family, socket.SOCK_STREAM)
    c.connect(where)
    if ask:
        c.sendall(f"question {i}".encode())
    got = answer_by_fd(c, i) if by_fd else answer_to_end(c)
    c.close()
    print(f"step {i} {got.decode()}", flush=True)
os.waitpid(child, 0)
if family == "unix":
    os.unlink(where)
    os.rmdir(os.path.dirname(where))
print("done", flush=True)
