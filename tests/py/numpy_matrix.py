"""numpy_matrix.py STEPS SLEEP_MS: matrix products big enough for OpenBLAS
to use its thread pool (OPENBLAS_NUM_THREADS=2 unless set), from a fixed
seed. Checksums are printed rounded, though runs with the same thread
count give identical results anyway."""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
import numpy as np  # noqa: E402


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(20240601)
    n = 256
    a = rng.standard_normal((n, n))
    m = np.eye(n)
    acc = np.zeros(n)
    for s in range(steps):
        b = rng.standard_normal((n, n)) / np.sqrt(n)
        m = a @ b @ m
        m /= np.linalg.norm(m)        # keep it bounded
        acc += m.sum(axis=0)
        v = np.linalg.solve(np.eye(n) + m @ m.T, acc)
        print(f"step {s} trace={np.trace(m):.9e} norm1={np.abs(m).sum():.9e} "
              f"acc={acc.sum():.9e} solve={v.sum():.9e}", flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} checksum={m.sum():.9e} {acc @ acc:.9e}", flush=True)


if __name__ == "__main__":
    main()
