"""tcp_pair.py STEPS SLEEP_MS: a server thread and a client (the main
thread) of one process talk over a loopback TCP connection. The client
keeps two requests ahead of the answers, so bytes are in flight in both
directions at any moment; the server keeps a running hash the client only
learns through the answers."""
import hashlib
import socket
import struct
import sys
import threading
import time


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def server(listener):
    conn, _ = listener.accept()
    h = hashlib.sha256(b"tcp_pair server")
    while True:
        data = recv_exact(conn, 8)
        (n,) = struct.unpack("<Q", data)
        if n == 0:
            break
        h.update(data)
        conn.sendall(h.digest()[:16])
    conn.close()


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    t = threading.Thread(target=server, args=(listener,), daemon=True)
    t.start()
    client = socket.create_connection(listener.getsockname())
    x = 88172645463325252
    sent = []

    def send_next():
        nonlocal x
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        n = (x >> 11) | 1
        client.sendall(struct.pack("<Q", n))
        sent.append(n)

    send_next()
    send_next()
    for i in range(steps):
        answer = recv_exact(client, 16)
        send_next()
        print(f"step {i} sent={sent[i]:016x} answer={answer.hex()}", flush=True)
        time.sleep(sleep_ms / 1000)
    for _ in range(2):
        recv_exact(client, 16)
    client.sendall(struct.pack("<Q", 0))
    t.join()
    print(f"done steps={steps}", flush=True)


if __name__ == "__main__":
    main()
