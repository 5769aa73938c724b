"""torch_cuda_hold.py GIB STEPS SLEEP_MS [save PATH]: holds GIB GiB of
device tensors (1 GiB each, deterministic contents) on an NVIDIA GPU and
prints a checksum of all of them every step, so a restart that lost or
changed device memory shows. With "save PATH" it instead measures
torch.save of the same tensors to PATH and torch.load back to the GPU,
prints "save_s=... load_s=..." and removes the file (the baseline that
`make check-gpu` compares ckpt with)."""
import os
import sys
import time

import torch

ELEMS = (1 << 30) // 4  # float32 per GiB


def make(gib):
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(7)
    return [torch.rand(ELEMS, device=dev, generator=gen) for _ in range(gib)]


def digest(tensors):
    # exact and order-independent: the bits summed as integers
    return ",".join(f"{t.view(torch.int32).to(torch.int64).sum().item():x}" for t in tensors)


def main():
    gib, steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    tensors = make(gib)
    torch.cuda.synchronize()
    if len(sys.argv) == 6 and sys.argv[4] == "save":
        path = sys.argv[5]
        t0 = time.monotonic()
        torch.save(tensors, path)
        os.sync()
        t1 = time.monotonic()
        back = torch.load(path, map_location="cuda")
        torch.cuda.synchronize()
        t2 = time.monotonic()
        ok = all(torch.equal(a, b) for a, b in zip(tensors, back))
        size = os.path.getsize(path)
        os.unlink(path)
        print(f"save_s={t1 - t0:.3f} load_s={t2 - t1:.3f} bytes={size} same={ok}", flush=True)
        return
    for s in range(steps):
        tensors[s % gib].mul_(1.0)  # touch device memory every step
        print(f"step {s} digest={digest(tensors)}", flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} digest={digest(tensors)}", flush=True)


if __name__ == "__main__":
    main()
