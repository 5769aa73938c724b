"""monotonic.py STEPS SLEEP_MS: prints, per step, whether CLOCK_MONOTONIC
(time.monotonic) moved on by less than a second since the last step, and
whether a deadline taken from it at the start (the whole run's length from
then) is still ahead. A restart continues the clock from where it was when
the program was stopped: the time between checkpoint and restart, which on
another node can be days either way, is not seen."""
import sys
import time


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    prev = time.monotonic()
    deadline = prev + steps * sleep_ms / 1000 + 5
    for s in range(steps):
        now = time.monotonic()
        moved = "steady" if 0 <= now - prev < 1.0 else "JUMPED"
        ahead = "ahead" if now < deadline else "PASSED"
        print(f"step {s} clock {moved} deadline {ahead}", flush=True)
        prev = now
        time.sleep(sleep_ms / 1000)
    print("done", flush=True)


main()
