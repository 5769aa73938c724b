"""tcp_stream.py MIB SLEEP_MS [fork]: a thread (with fork, a child process)
streams MIB MiB over a loopback TCP connection to the main thread, which
reads a MiB, prints its running hash and sleeps SLEEP_MS: the sender is
ahead by its socket's whole send buffer nearly all the time, bytes the
receiver's full buffer has no room for yet."""
import hashlib
import os
import socket
import sys
import threading
import time


def send(listener, mib):
    conn, _ = listener.accept()
    for i in range(mib * 16):
        conn.sendall(hashlib.sha256(str(i).encode()).digest() * 2048)  # 64 KiB
    conn.close()


def main():
    mib, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    if sys.argv[3:] == ["fork"]:
        child = os.fork()
        if child == 0:
            send(listener, mib)
            os._exit(0)
        listener_addr = listener.getsockname()
        listener.close()
    else:
        child = 0
        threading.Thread(target=send, args=(listener, mib), daemon=True).start()
        listener_addr = listener.getsockname()
    reader = socket.create_connection(listener_addr)
    h, got, shown = hashlib.sha256(), 0, 0
    while True:
        # up to the next MiB at most, so each line hashes the same bytes
        data = reader.recv(min(1 << 16, ((shown + 1) << 20) - got))
        if not data:
            break
        h.update(data)
        got += len(data)
        if got >> 20 > shown:
            shown = got >> 20
            print(f"MiB {shown} {h.hexdigest()[:16]}", flush=True)
            time.sleep(sleep_ms / 1000)
    if child:
        os.waitpid(child, 0)
    print(f"done bytes={got} {h.hexdigest()[:16]}", flush=True)


if __name__ == "__main__":
    main()
