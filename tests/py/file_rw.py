"""file_rw.py STEPS SLEEP_MS INFILE OUTFILE: reads INFILE 53 bytes a step
(wrapping at the end) and appends a line per step to OUTFILE (created or
truncated at start), printing the offsets it sees and whether they match
what it expects. The last line has checksums of what was read and of
OUTFILE as found on disk."""
import hashlib
import os
import sys
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    inpath, outpath = sys.argv[3], sys.argv[4]
    open(outpath, "w").close()
    fin = open(inpath, "rb")
    fout = open(outpath, "a")
    in_off = out_off = 0
    wraps = errors = 0
    h = hashlib.sha256()
    for s in range(steps):
        chunk = fin.read(53)
        if not chunk:
            fin.seek(0)
            in_off = 0
            wraps += 1
            chunk = fin.read(53)
        in_off += len(chunk)
        h.update(chunk)
        line = f"step {s} read {len(chunk)} sum {h.hexdigest()[:12]}\n"
        fout.write(line)
        fout.flush()
        out_off += len(line.encode())
        tell_in, tell_out = fin.tell(), fout.tell()
        size = os.fstat(fout.fileno()).st_size
        ok = tell_in == in_off and tell_out == out_off and size == out_off
        errors += not ok
        print(f"step {s} in={tell_in}/{in_off} wraps={wraps} out={tell_out} size={size} "
              f"expect={out_off} {'ok' if ok else 'MISMATCH'}", flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    fout.close()
    with open(outpath, "rb") as f:
        data = f.read()
    print(f"done steps={steps} errors={errors} out_size={len(data)} expect={out_off} "
          f"in_sum={h.hexdigest()[:16]} out_sum={hashlib.sha256(data).hexdigest()[:16]}", flush=True)
    sys.exit(1 if errors or len(data) != out_off else 0)


if __name__ == "__main__":
    main()
