"""torch_shared.py STEPS SLEEP_MS MIB: a PyTorch tensor of MIB MiB in
shared memory (share_memory_(): a /dev/shm file, deleted at once, that
torch maps and keeps open to pass on). Each step changes a few elements
and prints a checksum of elements spread over all of it. Larger than
what a checkpoint saves of a deleted file through its descriptor
(128 MiB): its content must come with its mapping."""
import sys
import time

import torch


def main():
    steps, sleep_ms, mib = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    n = mib << 18  # float32 elements
    t = torch.zeros(n)
    t.share_memory_()
    t[:: 4099] = torch.rand(len(range(0, n, 4099)))
    probe = torch.arange(0, n, 1021)
    for step in range(steps):
        at = (step * 7919 * 1021) % n
        t[at] += step + 0.5
        print(f"step {step} sum {float(t[probe].double().sum()):.6f}", flush=True)
        time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} sum {float(t.double().sum()):.6f}", flush=True)


if __name__ == "__main__":
    main()
