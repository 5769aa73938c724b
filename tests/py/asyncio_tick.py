"""An asyncio program: its event loop (epoll, a socketpair to wake itself)
watches an eventfd and a pipe that a timer feeds; the epoll set, the
eventfd counter and the queued bytes must all survive a restart."""
import asyncio
import os
import sys

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])


async def main():
    loop = asyncio.get_running_loop()
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    r, w = os.pipe()
    os.set_blocking(r, False)
    got = asyncio.Queue()
    loop.add_reader(efd, lambda: got.put_nowait(("eventfd", os.eventfd_read(efd))))
    loop.add_reader(r, lambda: got.put_nowait(("pipe", os.read(r, 100))))
    total = 0
    for i in range(steps):
        os.eventfd_write(efd, i + 1)
        os.write(w, f"tick {i};".encode())
        seen = {}
        while len(seen) < 2:
            kind, value = await got.get()
            seen[kind] = value
        total += seen["eventfd"]
        print(f"step {i} eventfd={seen['eventfd']} pipe={seen['pipe'].decode()} total={total}",
              flush=True)
        await asyncio.sleep(sleep_ms / 1000)
    print(f"done {total}", flush=True)


asyncio.run(main())
