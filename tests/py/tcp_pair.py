"""tcp_pair.py STEPS SLEEP_MS: a server thread and a client (the main
thread) of one process talk over a loopback TCP connection. The client
keeps two requests ahead of the answers, so bytes are in flight in both
directions at any moment; the server keeps a running hash the client only
learns through the answers.

tcp_pair.py STEPS SLEEP_MS split: the client sends each request in two
halves and the server, not the client, sleeps after each answer. Nagle's
algorithm holds the second half in the client's socket until the server
acknowledges the first, which it does only when its delayed-ACK timer
fires or it reads: most of the time, a request is half in the server's
queue and half still in the client's."""
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


def server(listener, pause):
    conn, _ = listener.accept()
    h = hashlib.sha256(b"tcp_pair server")
    while True:
        data = recv_exact(conn, 8)
        (n,) = struct.unpack("<Q", data)
        if n == 0:
            break
        h.update(data)
        conn.sendall(h.digest()[:16])
        time.sleep(pause)
    conn.close()


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    split = sys.argv[3:] == ["split"]
    client_pause = 0 if split else sleep_ms / 1000
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    t = threading.Thread(target=server, args=(listener, sleep_ms / 1000 - client_pause), daemon=True)
    t.start()
    client = socket.create_connection(listener.getsockname())
    x = 88172645463325252
    sent = []

    def send_next():
        nonlocal x
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        n = (x >> 11) | 1
        request = struct.pack("<Q", n)
        for part in (request[:4], request[4:]) if split else (request,):
            client.sendall(part)
        sent.append(n)

    send_next()
    send_next()
    for i in range(steps):
        answer = recv_exact(client, 16)
        send_next()
        print(f"step {i} sent={sent[i]:016x} answer={answer.hex()}", flush=True)
        time.sleep(client_pause)
    for _ in range(2):
        recv_exact(client, 16)
    client.sendall(struct.pack("<Q", 0))
    t.join()
    print(f"done steps={steps}", flush=True)


if __name__ == "__main__":
    main()
