"""rotate_outputs.py STEPS SLEEP_MS DIR [SCRATCH]: each step writes
out_<step>.txt in DIR and keeps the last three: it reads back the oldest,
adds it to a checksum and removes it (os.remove, which fails on a file
already gone). A restart after the program removed files it had at the
checkpoint must find them back, or the restarted program dies with
FileNotFoundError. With SCRATCH, each step also makes and removes that
many scratch files first: thousands of files made and gone between two
checkpoints must not keep ckpt from following the outputs."""
import hashlib
import os
import sys
import time


def main():
    steps, sleep_ms, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    scratch = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    h = hashlib.sha256()
    for step in range(steps):
        for i in range(scratch):
            name = os.path.join(d, f"scratch_{step}_{i}.tmp")
            with open(name, "w") as f:
                f.write("x")
            os.remove(name)
        with open(os.path.join(d, f"out_{step}.txt"), "w") as f:
            f.write(f"step {step}\n" * (step % 5 + 1))
        if step >= 3:
            old = os.path.join(d, f"out_{step - 3}.txt")
            with open(old) as f:
                h.update(f.read().encode())
            os.remove(old)
        print(f"step {step} digest {h.hexdigest()[:16]}", flush=True)
        time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} digest {h.hexdigest()[:16]}", flush=True)


if __name__ == "__main__":
    main()
