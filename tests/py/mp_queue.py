"""mp_queue.py STEPS SLEEP_MS: a producer process puts items on a
multiprocessing.Queue ahead of a consumer process, which folds them into a
hash and sends a summary back on a second queue every step; the main
process prints the summaries. Items are in flight in the queue's pipe (and
its feeder thread) at any moment."""
import hashlib
import multiprocessing as mp
import sys
import time


def producer(q, steps):
    x = 12345
    for i in range(steps * 4):
        x = (x * 1103515245 + 12345) % (1 << 31)
        q.put((i, x, "item-%d" % i))
    q.put(None)


def consumer(q, out, steps, sleep_ms):
    h = hashlib.sha256()
    n = 0
    while True:
        item = q.get()
        if item is None:
            break
        h.update(repr(item).encode())
        n += 1
        if n % 4 == 0:
            out.put((n, h.hexdigest()[:16]))
            time.sleep(sleep_ms / 1000)
    out.put(None)


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    mp.set_start_method("fork")
    q, out = mp.Queue(16), mp.Queue()
    p = mp.Process(target=producer, args=(q, steps))
    c = mp.Process(target=consumer, args=(q, out, steps, sleep_ms))
    p.start()
    c.start()
    step = 0
    while True:
        r = out.get()
        if r is None:
            break
        print(f"step {step} items={r[0]} hash={r[1]}", flush=True)
        step += 1
    p.join()
    c.join()
    print(f"done steps={step} producer={p.exitcode} consumer={c.exitcode}", flush=True)


if __name__ == "__main__":
    main()
