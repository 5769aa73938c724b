"""shared_arena.py STEPS SLEEP_MS: a multiprocessing Array (spawn
context) lives in a heap arena: a deleted file in /dev/shm that the
program maps and keeps open. Each step, a spawned child gets the array
through that descriptor (sent over a socket), adds to it and exits; the
program adds through its mapping and prints the array. After a restart
the descriptor must open the very memory the program maps, or the
children's additions are lost to the program (and its own to them)."""
import multiprocessing as mp
import sys
import time


def child(arr, k):
    with arr.get_lock():
        arr[k % 4] += k * (arr[0] % 7 + 1)


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    ctx = mp.get_context("spawn")
    arr = ctx.Array("q", 4)
    for step in range(steps):
        p = ctx.Process(target=child, args=(arr, step))
        p.start()
        p.join()
        with arr.get_lock():
            arr[0] += 1
            values = list(arr)
        print(f"step {step} arr {values}", flush=True)
        time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} arr {list(arr)}", flush=True)


if __name__ == "__main__":
    main()
