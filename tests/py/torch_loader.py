"""torch_loader.py STEPS SLEEP_MS [EPOCHS]: a PyTorch DataLoader with two
worker processes (fork) feeding batches through shared memory and queues;
the main process prints a running sum of each batch. With EPOCHS (1 if
not given) the STEPS batches are spread over that many epochs: the
workers of each epoch end with it and new ones start the next. A
worker's resource sharer listens in a temporary directory the worker
removes when it ends, so a checkpoint in one epoch followed by a crash in
the next leaves the restored workers' addresses without their
directories: restart must make them again."""
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset


class Items(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.rand(256, generator=g), i


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    torch.manual_seed(0)
    loader = DataLoader(Items(steps // epochs * 32), batch_size=32, num_workers=2, shuffle=False)
    total, step = 0.0, 0
    for _ in range(epochs):
        for x, idx in loader:
            total += float(x.double().sum())
            print(f"step {step} first={int(idx[0])} total={total:.6f}", flush=True)
            step += 1
            time.sleep(sleep_ms / 1000)
    print(f"done steps={step} total={total:.6f}", flush=True)


if __name__ == "__main__":
    main()
