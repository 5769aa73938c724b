"""torch_cuda_train.py STEPS SLEEP_MS: a small MLP trained on an NVIDIA GPU
from fixed seeds with deterministic algorithms only, so that every run
prints the same exact losses (repr) and final checksum. Run by
`make check-gpu` (tests/gpu_real/check_gpu.py)."""
import hashlib
import os
import sys
import time

# cuBLAS is deterministic only with a fixed workspace (set before CUDA starts)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402


def main():
    steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(1234)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(99)
    x = torch.randn(8192, 256, generator=gen).to(dev)
    w_true = torch.randn(256, 1, generator=gen).to(dev)
    y = torch.tanh(x @ w_true)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 1)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for s in range(steps):
        perm = torch.randperm(8192, generator=gen)[:1024].to(dev)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[perm]), y[perm])
        loss.backward()
        opt.step()
        print(f"step {s} loss={loss.item()!r}", flush=True)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    print(f"done steps={steps} checksum={h.hexdigest()[:32]}", flush=True)


if __name__ == "__main__":
    main()
