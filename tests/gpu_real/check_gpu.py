"""`make check-gpu`: ckpt with a real NVIDIA GPU and PyTorch (docs/gpu.md).

Needs only the Python standard library and torch, and the build as it is
(build/ may have been copied from another machine): no pytest, nothing
installed. Without a GPU every check is SKIPPED, loudly, with the reason.

1. train: a deterministic CUDA training loop (tests/py/torch_cuda_train.py)
   checkpointed mid-run, killed with SIGKILL, restarted: the losses must be
   exactly those of an uninterrupted run.
2. hold N: N GiB of device tensors (tests/py/torch_cuda_hold.py, N from
   CKPT_GPU_SIZES, default "1,20"): checkpoint, SIGKILL, restart; the
   device memory digest must continue exactly; checkpoint and restart
   times printed beside torch.save/torch.load of the same tensors to the
   same disk.

Environment: CKPT_GPU_PYTHON (the interpreter with torch; default this
one), CKPT_GPU_WORK (work directory, default a new one under /tmp),
CKPT_GPU_SIZES, CKPT_GPU_CHECKS (which to run: "train,nons,hold", the default)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CKPT = Path(os.environ.get("CKPT_BIN", str(ROOT / "build" / "bin" / "ckpt")))
PY = os.environ.get("CKPT_GPU_PYTHON") or sys.executable
PY = shutil.which(PY) or PY
PYDIR = ROOT / "tests" / "py"
SIZES = [int(s) for s in os.environ.get("CKPT_GPU_SIZES", "1,20").split(",") if s]
CHECKS = set(os.environ.get("CKPT_GPU_CHECKS", "train,nons,hold").split(","))

results = []  # (name, "PASS"|"FAIL"|"SKIP", detail)


class Failed(Exception):
    pass


def skip_reason():
    """Why the GPU checks cannot run here, or None."""
    if not Path("/dev/nvidia0").exists():
        return "no /dev/nvidia0: this machine has no NVIDIA GPU (or its driver is not loaded)"
    r = subprocess.run([PY, "-c", "import torch; print(torch.cuda.is_available(), torch.__version__,"
                        " torch.version.cuda, torch.cuda.get_device_name(0) "
                        "if torch.cuda.is_available() else '')"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return f"{PY} cannot import torch: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
    if not r.stdout.startswith("True"):
        return f"torch.cuda.is_available() is False under {PY} ({r.stdout.strip()})"
    print(f"check-gpu: torch {r.stdout.strip()} ({PY})", flush=True)
    return None


class Run:
    """ckpt start/restart in the background, in its own process group."""

    def __init__(self, argv, work, env, name):
        self.out = work / f"{name}.stdout"
        self.err = work / f"{name}.stderr"
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([str(a) for a in argv], cwd=work, env=env,
                                         stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                         start_new_session=True)

    def text(self):
        return self.out.read_text(errors="replace")

    def lines(self):
        return self.text().count("\n")

    def wait_lines(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.lines() < n:
            if self.proc.poll() is not None and self.lines() < n:
                raise Failed(f"{self.out.name}: exited with {self.proc.returncode} after "
                             f"{self.lines()} lines; stderr: {self.err.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise Failed(f"{self.out.name}: {self.lines()} lines in {timeout} s, wanted {n}")
            time.sleep(0.05)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=60)


def ckpt(args, env, work, timeout=900):
    r = subprocess.run([str(CKPT), *map(str, args)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=timeout)
    return r


def manifest(rundir):
    kv = {}
    for line in (rundir / "images" / "latest" / "manifest").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            kv.setdefault(k, v)
    return kv


def cycle(name, script, args, work, env, k, line_timeout, start_env=None, before_restart=None):
    """start -> k lines -> checkpoint -> 2 more lines -> SIGKILL -> restart;
    the outputs must chain into the uninterrupted run exactly. start_env:
    the environment of `ckpt start` if not env; before_restart(argv,
    rundir) runs before the restart. Returns (reference output, timings)."""
    ref = subprocess.run([PY, str(PYDIR / script), *map(str, args)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=3600)
    if ref.returncode != 0:
        raise Failed(f"uninterrupted run failed ({ref.returncode}): {ref.stderr[-2000:]}")
    runs = work / f"runs-{name}"
    argv = ["--interval", "0", "--dir", runs, "--python", PY, PYDIR / script, *args]
    run = Run([CKPT, "start", *argv], work, start_env or env, f"{name}-start")
    try:
        run.wait_lines(k, line_timeout)
        rundir = next(p for p in runs.iterdir() if p.is_dir())
        t0 = time.monotonic()
        r = ckpt(["checkpoint", rundir], env, work)
        ckpt_s = time.monotonic() - t0
        if r.returncode != 0:
            raise Failed(f"ckpt checkpoint failed: {r.stderr.strip()}\nexecution.log:\n"
                         f"{(rundir / 'execution.log').read_text()[-3000:]}")
        run.wait_lines(run.lines() + 2, line_timeout)
    finally:
        run.kill()
    first = run.text()
    m = manifest(rundir)
    if before_restart:
        before_restart(argv, rundir)
    t0 = time.monotonic()
    rs = Run([CKPT, "restart", *argv], work, env, f"{name}-restart")
    rs.wait_lines(1, 3600)
    restart_s = time.monotonic() - t0  # to the first line printed after the restart
    rc = rs.proc.wait(timeout=3600)
    again = rs.text()
    expected = ref.stdout.splitlines(keepends=True)
    got_first, got_again = first.splitlines(keepends=True), again.splitlines(keepends=True)
    if rc != 0:
        raise Failed(f"ckpt restart exited with {rc}: {rs.err.read_text()[-2000:]}")
    if got_first != expected[:len(got_first)]:
        raise Failed("the first run's output differs from the uninterrupted run's")
    start = len(expected) - len(got_again)
    if start < 0 or got_again != expected[start:] or start > len(got_first):
        raise Failed(f"the restarted output does not continue the uninterrupted run exactly:\n"
                     f"restart printed:\n{''.join(got_again[:5])}...\nexpected from line "
                     f"{start}:\n{''.join(expected[max(start, 0):max(start, 0) + 5])}")
    return ref.stdout, dict(ckpt_s=ckpt_s, restart_s=restart_s, bytes=int(m.get("bytes", 0)),
                            gpu_lock_ms=m.get("gpu_lock_ms"), gpu_ckpt_ms=m.get("gpu_checkpoint_ms"),
                            gpu_restore_ms=m.get("gpu_restore_ms"), model=m.get("gpu_model"),
                            rundir=rundir)


def check(name, fn):
    try:
        detail = fn()
        results.append((name, "PASS", detail))
    except (Failed, subprocess.TimeoutExpired, StopIteration, OSError) as e:
        results.append((name, "FAIL", str(e)))
    print(f"check-gpu: {name}: {results[-1][1]} {results[-1][2]}", flush=True)


def main():
    if not CKPT.exists():
        print(f"check-gpu: FAIL: {CKPT} is missing (run make first)")
        return 1
    v = subprocess.run([str(CKPT), "--version"], capture_output=True, text=True)
    if v.returncode != 0:
        print(f"check-gpu: FAIL: {CKPT} does not run here: {v.stderr.strip()}")
        return 1
    why = skip_reason()
    if why:
        print(f"check-gpu: SKIPPED LOUDLY (every GPU check): {why}", flush=True)
        return 0
    work = Path(os.environ.get("CKPT_GPU_WORK") or tempfile.mkdtemp(prefix="ckpt-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    def train():
        _, t = cycle("train", "torch_cuda_train.py", [60, 100], work, env, 15, 600)
        return (f"losses identical after restart; checkpoint {t['ckpt_s']:.1f} s (GPU lock "
                f"{t['gpu_lock_ms']} ms, device-to-host {t['gpu_ckpt_ms']} ms), image "
                f"{t['bytes'] / 2**20:.0f} MiB, restart {t['restart_s']:.1f} s on {t['model']}")

    def no_namespaces():
        """A generation taken without pid namespaces: a restart without
        them is refused (the driver restores only the same thread ids),
        one with them goes on exactly."""
        def refused(argv, rundir):
            before = sorted(p.name for p in (rundir / "images").iterdir())
            r = ckpt(["restart", *argv], dict(env, CKPT_NO_NAMESPACES="1"), work, timeout=120)
            if r.returncode == 0 or "only in pid namespaces" not in r.stderr:
                raise Failed(f"a restart without namespaces was not refused: {r.returncode} "
                             f"{r.stderr.strip()}")
            if sorted(p.name for p in (rundir / "images").iterdir()) != before:
                raise Failed("the refused restart changed the generations")
        _, t = cycle("nons", "torch_cuda_train.py", [60, 100], work, env, 15, 600,
                     start_env=dict(env, CKPT_NO_NAMESPACES="1"), before_restart=refused)
        return (f"restart without namespaces refused; with them the losses are identical "
                f"(restart {t['restart_s']:.1f} s)")

    if "train" in CHECKS:
        check("train", train)
    if "nons" in CHECKS:
        check("restart without namespaces", no_namespaces)
    table = []
    for gib in SIZES if "hold" in CHECKS else []:
        def hold(gib=gib):
            # long enough to outlive the checkpoint (the image is written
            # while it runs on): 20 GiB took 33 s on an H200
            _, t = cycle(f"hold{gib}", "torch_cuda_hold.py", [gib, max(40, 7 * gib), 250], work,
                         env, 3, 1800)
            shutil.rmtree(t["rundir"].parent, ignore_errors=True)
            r = subprocess.run([PY, str(PYDIR / "torch_cuda_hold.py"), str(gib), "0", "0", "save",
                                work / f"save{gib}.pt"], cwd=work, env=env, capture_output=True,
                               text=True, timeout=3600)
            m = re.search(r"save_s=(\S+) load_s=(\S+) bytes=(\d+) same=(\w+)", r.stdout)
            if not m:
                raise Failed(f"torch.save baseline failed: {r.stderr[-2000:]}")
            table.append((gib, t["ckpt_s"], t["gpu_ckpt_ms"], t["bytes"], t["restart_s"],
                          float(m[1]), float(m[2]), int(m[3])))
            return "device memory digest continues exactly after restart"
        check(f"hold {gib} GiB", hold)
    if table:
        print("\ncheck-gpu: times on the same disk (" + str(work) + ")")
        print(f"{'GiB':>4} {'ckpt checkpoint s':>18} {'of it D2H ms':>13} {'image GiB':>10} "
              f"{'ckpt restart s':>15} {'torch.save s':>13} {'torch.load s':>13} {'.pt GiB':>8}")
        for g, cs, d2h, b, rs, ss, ls, pb in table:
            print(f"{g:>4} {cs:>18.1f} {str(d2h):>13} {b / 2**30:>10.2f} {rs:>15.1f} {ss:>13.1f} "
                  f"{ls:>13.1f} {pb / 2**30:>8.2f}")
    failed = [r for r in results if r[1] == "FAIL"]
    print(f"\ncheck-gpu: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
