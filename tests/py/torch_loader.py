"""torch_loader.py STEPS SLEEP_MS: a PyTorch DataLoader with two worker
processes (fork) feeding batches through shared memory and queues; the
main process prints a running sum of each batch."""
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
    torch.manual_seed(0)
    loader = DataLoader(Items(steps * 32), batch_size=32, num_workers=2, shuffle=False)
    total = 0.0
    for step, (x, idx) in enumerate(loader):
        total += float(x.double().sum())
        print(f"step {step} first={int(idx[0])} total={total:.6f}", flush=True)
        time.sleep(sleep_ms / 1000)
    print(f"done steps={steps} total={total:.6f}", flush=True)


if __name__ == "__main__":
    main()
