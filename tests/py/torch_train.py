"""torch_train.py STEPS SLEEP_MS: a small MLP trained on synthetic data on
the CPU with a 2-thread intra-op pool, from fixed seeds. Prints the exact
loss (repr) every step and a checksum of the parameters at the end."""
import hashlib
import sys
import time

import torch


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(1234)
    torch.set_num_threads(2)
    x = torch.randn(2048, 64)
    w_true = torch.randn(64, 1)
    y = torch.tanh(x @ w_true) + 0.05 * torch.randn(2048, 1)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for s in range(steps):
        perm = torch.randperm(2048)[:256]
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[perm]), y[perm])
        loss.backward()
        opt.step()
        print(f"step {s} loss={loss.item()!r}", flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    print(f"done steps={steps} checksum={h.hexdigest()[:32]}", flush=True)


if __name__ == "__main__":
    main()
