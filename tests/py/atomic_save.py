"""atomic_save.py STEPS SLEEP_MS DIR: each step reads its state back from
DIR/state.json, writes the next state to DIR/state.json.tmp in three
flushed pieces and renames it over state.json (the usual atomic save).
A checkpoint mostly finds the temporary file open; the renames after it
take that file away, so a restart must make it again as it was at the
checkpoint. Each state is also kept, hard-linked, in DIR/hist, so that no
inode number is freed and reused for a later temporary file. Every line
printed depends on the state read back."""
import hashlib
import json
import os
import sys
import time


def main():
    steps, sleep_ms, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    hist = os.path.join(d, "hist")
    os.makedirs(hist, exist_ok=True)
    final, tmp = os.path.join(d, "state.json"), os.path.join(d, "state.json.tmp")
    for leftover in (final, tmp):
        if os.path.exists(leftover):
            os.remove(leftover)
    for i in range(steps):
        h = ""
        if os.path.exists(final):
            with open(final) as f:
                parts = [json.loads(line) for line in f.read().splitlines()]
            h = "".join(p["h"] for p in parts)
        h = hashlib.sha256(f"{i} {h}".encode()).hexdigest()
        with open(tmp, "w") as f:
            for k in range(3):
                f.write(json.dumps({"step": i, "part": k, "h": h[k:k + 20]}) + "\n")
                f.flush()
                time.sleep(sleep_ms / 3000)
        kept = os.path.join(hist, f"{i}.json")
        if os.path.exists(kept):  # from a run killed after this step
            os.remove(kept)
        os.link(tmp, kept)
        os.replace(tmp, final)
        print(f"step {i} {h[:16]}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
