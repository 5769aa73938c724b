"""A program with a TCP listening socket on the loopback: each step it
connects to itself, sends a message through the accepted connection and
reads it back. The listener must listen again on the same port after a
restart. A connection that the checkpoint caught before its accept is
queued on the listener again; one caught later (the message in flight)
comes back unconnected: the exchange then fails with an error and is
simply redone, as any client would."""
import socket
import sys
import time

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# as servers do (asyncio, socketserver): without it, the port cannot be
# bound again while connections of the killed run linger in TIME_WAIT
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
port = srv.getsockname()[1]


def exchange(i):
    for attempt in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                conn, _ = srv.accept()
                with conn:
                    conn.sendall(f"message {i}".encode())
                    return c.recv(100).decode()
        except OSError:
            time.sleep(0.01)
    sys.exit(f"step {i}: cannot reach our own listening socket")


total = 0
for i in range(steps):
    got = exchange(i)
    total += len(got)
    print(f"step {i} got {got!r} total={total} same_port={srv.getsockname()[1] == port}",
          flush=True)
    time.sleep(sleep_ms / 1000)
print(f"done {total}", flush=True)
