"""late_delete.py STEPS SLEEP_MS DIR DELETE_AT: writes five files in a new
directory DIR/phase at its start, then at step DELETE_AT reads them into a
checksum and removes them and the directory (a temporary directory done
with). Files made long before the checkpoint and removed after it: a
restart from the second of two checkpoints must find them back, in their
directory, though only the first checkpoint saw them made."""
import hashlib
import os
import sys
import time


def main():
    steps, sleep_ms, d, delete_at = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    phase = os.path.join(d, "phase")
    os.mkdir(phase)
    names = [os.path.join(phase, f"keep_{i}.dat") for i in range(5)]
    for i, name in enumerate(names):
        with open(name, "w") as f:
            f.write(f"data {i}\n" * (100 + i))
    h = hashlib.sha256()
    for step in range(steps):
        if step == delete_at:
            for name in names:
                with open(name, "rb") as f:
                    h.update(f.read())
                os.remove(name)
            os.rmdir(phase)
        print(f"step {step} digest {h.hexdigest()[:16]}", flush=True)
        time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} digest {h.hexdigest()[:16]}", flush=True)


if __name__ == "__main__":
    main()
