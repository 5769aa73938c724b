"""append_reopen.py STEPS SLEEP_MS FILE: opens FILE for appending at every
step, writes a line derived from what the file holds, and closes it; prints
the line. A line appended after a checkpoint and again by the restarted
run would change every line after it."""
import hashlib
import sys
import time


def main():
    steps, sleep_ms, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    open(path, "w").close()
    for i in range(steps):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        with open(path, "a") as f:
            f.write(f"{i} {digest}\n")
        print(f"step {i} {digest}", flush=True)
        time.sleep(sleep_ms / 1000)
    print("done", flush=True)


if __name__ == "__main__":
    main()
