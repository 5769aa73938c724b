"""mp_pool.py STEPS SLEEP_MS: multiprocessing.Pool(2) (fork) maps small
tasks every step, so a checkpoint finds tasks and results in flight in the
pool's pipes, its semaphores in shared memory and its helper threads
running; the parent prints the results of each step."""
import hashlib
import multiprocessing as mp
import sys
import time


def work(x):
    time.sleep(0.01)
    return hashlib.sha256(str(x).encode()).hexdigest()[:12]


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    mp.set_start_method("fork")
    total = hashlib.sha256()
    with mp.Pool(2) as pool:
        for i in range(steps):
            r = pool.map(work, range(i, i + 4))
            total.update(" ".join(r).encode())
            print(f"step {i} {' '.join(r)} total={total.hexdigest()[:16]}", flush=True)
            time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} total={total.hexdigest()[:16]}", flush=True)


if __name__ == "__main__":
    main()
