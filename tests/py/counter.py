"""counter.py STEPS SLEEP_MS: a pure Python loop. Its state (an integer,
a growing dict and list) is digested every step."""
import hashlib
import os
import sys
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    pid0 = os.getpid()
    x, total = 12345, 0
    table = {}
    history = []
    for s in range(steps):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        total += x >> 32
        table[f"k{s % 97}"] = table.get(f"k{s % 97}", 0) ^ x
        history.append(x & 0xFFFF)
        digest = hashlib.sha256(repr((sorted(table.items()), history)).encode()).hexdigest()[:16]
        same = "same" if os.getpid() == pid0 else "CHANGED"
        print(f"step {s} x={x:016x} total={total} state={digest} pid={same}", flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    digest = hashlib.sha256(repr((x, total, sorted(table.items()), history)).encode()).hexdigest()
    print(f"done steps={steps} checksum={digest}", flush=True)


if __name__ == "__main__":
    main()
