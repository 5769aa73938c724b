"""spawn_queue.py STEPS SLEEP_MS spawn|forkserver: each step makes a
multiprocessing Queue, prints the last step's results, waits SLEEP_MS and
starts two children with the start method given; they put their results
into the queue. Children of spawn and forkserver open the queue's locks
(named semaphores in /dev/shm) by name, and the step's end removes the
names: a checkpoint in the wait, restarted, must give the children
the names made before it, and the program the names it removes."""
import hashlib
import multiprocessing as mp
import sys
import time


def child(q, i):
    h = hashlib.sha256(str(i).encode())
    for _ in range(2000):
        h = hashlib.sha256(h.digest())
    q.put((i, h.hexdigest()[:12]))


def main():
    steps, sleep_ms, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ctx = mp.get_context(method)
    last = []
    for i in range(steps):
        q = ctx.Queue()
        print(f"step {i} last={last}", flush=True)
        time.sleep(sleep_ms / 1000)
        ps = [ctx.Process(target=child, args=(q, 2 * i + j)) for j in range(2)]
        for p in ps:
            p.start()
        last = sorted(q.get() for _ in ps)
        for p in ps:
            p.join()
        q.close()
        q.join_thread()
    print(f"done steps={steps} last={last}", flush=True)


if __name__ == "__main__":
    main()
