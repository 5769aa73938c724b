"""probe_driver.py: what NVIDIA's process checkpoint calls do to a running
CUDA process, seen from /proc, without ckpt. Answers the questions
docs/gpu.md lists (which pid the driver wants, what stays open or mapped
after Checkpoint, where the driver's restore thread waits, the times).

Run with the interpreter that has torch:  python3 tests/gpu_real/probe_driver.py
It starts a small torch program holding 256 MiB on the GPU, then calls
GetState, Lock, Checkpoint, Restore, Unlock on it, describing the process
after each; then the same with the program inside new user and pid
namespaces (as ckpt runs programs), trying the pid as the caller sees it
and, if that fails, the pid inside the namespace. Standard library only in
this process (libcuda through ctypes)."""
import ctypes
import os
import shutil
import subprocess
import sys
import time

CHILD = r"""
import sys, time, torch
x = torch.rand(64 << 20, device="cuda", generator=torch.Generator(device="cuda").manual_seed(3))
torch.cuda.synchronize()
print("ready", flush=True)
for i in range(600):
    x.mul_(1.0)
    print(f"step {i} sum={x.view(torch.int32).to(torch.int64).sum().item():x}", flush=True)
    time.sleep(0.1)
"""

NAMES = {0: "RUNNING", 1: "LOCKED", 2: "CHECKPOINTED", 3: "FAILED"}


class Args(ctypes.Structure):
    _fields_ = [("timeout_ms", ctypes.c_uint), ("reserved0", ctypes.c_uint),
                ("reserved1", ctypes.c_uint64 * 7)]


def load():
    lib = ctypes.CDLL("libcuda.so.1")
    ver = ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(ver))
    print(f"libcuda: driver API version {ver.value}")
    for f in ("cuCheckpointProcessGetState", "cuCheckpointProcessLock",
              "cuCheckpointProcessCheckpoint", "cuCheckpointProcessRestore",
              "cuCheckpointProcessUnlock", "cuCheckpointProcessGetRestoreThreadId"):
        print(f"  {f}: {'present' if hasattr(lib, f) else 'MISSING'}")
    return lib


def err(lib, rc):
    if rc == 0:
        return "CUDA_SUCCESS"
    s = ctypes.c_char_p()
    lib.cuGetErrorName(rc, ctypes.byref(s))
    return f"{(s.value or b'?').decode()} ({rc})"


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return f"<{e.strerror}>"


def describe(pid, restore_tid=0, label=""):
    """Threads (state, wchan, syscall), nvidia descriptors and mappings, RSS."""
    print(f"--- {label}: pid {pid}")
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError as e:
        print(f"  cannot list threads: {e}")
        return
    states = {}
    for t in tids:
        st = read(f"/proc/{pid}/task/{t}/stat")
        comm = read(f"/proc/{pid}/task/{t}/comm")
        s = st.rsplit(")", 1)[-1].split()[0] if ")" in st else "?"
        states.setdefault((comm, s), []).append(t)
        if t == restore_tid:
            print(f"  restore thread {t} ({comm}) state {s} wchan "
                  f"{read(f'/proc/{pid}/task/{t}/wchan')} syscall "
                  f"{read(f'/proc/{pid}/task/{t}/syscall')}")
    print("  threads: " + ", ".join(f"{c}[{s}]x{len(v)}" for (c, s), v in sorted(states.items())))
    fds = []
    try:
        for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(("/dev/nvidia", "socket:", "anon_inode:")):
                fds.append(f"{fd}->{target}")
    except OSError as e:
        fds.append(f"<{e}>")
    print(f"  nvidia/socket/anon descriptors ({len(fds)}): {' '.join(fds)[:1500]}")
    nv, nvbytes = 0, 0
    other = {}
    count, none_bytes, biggest = 0, 0, (0, "")
    for line in read(f"/proc/{pid}/maps").splitlines():
        parts = line.split(None, 5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        name = parts[5] if len(parts) > 5 else ""
        count += 1
        if parts[1].startswith("---"):
            none_bytes += hi - lo
        if hi - lo > biggest[0]:
            biggest = (hi - lo, f"{parts[0]} {parts[1]} {name}")
        if name.startswith("/dev/nvidia"):
            nv += 1
            nvbytes += hi - lo
            other[name] = other.get(name, 0) + 1
    print(f"  /dev/nvidia* mappings: {nv} ({nvbytes >> 20} MiB) {other}")
    print(f"  mappings: {count}, inaccessible {none_bytes >> 30} GiB, largest "
          f"{biggest[0] >> 20} MiB ({biggest[1]})")
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith(("VmRSS", "RssAnon", "RssShmem", "NSpid")):
            print("  " + " ".join(line.split()))


def drive(lib, pid, label):
    """The call sequence ckpt uses; returns True when all succeeded."""
    st = ctypes.c_int(-1)
    rc = lib.cuCheckpointProcessGetState(pid, ctypes.byref(st))
    print(f"[{label}] GetState({pid}) -> {err(lib, rc)} {NAMES.get(st.value, st.value)}")
    if rc != 0:
        return False
    tid = ctypes.c_int(0)
    if hasattr(lib, "cuCheckpointProcessGetRestoreThreadId"):
        rc = lib.cuCheckpointProcessGetRestoreThreadId(pid, ctypes.byref(tid))
        print(f"[{label}] GetRestoreThreadId -> {err(lib, rc)} tid {tid.value}")
    describe(pid, tid.value, f"{label} before Lock")
    ok = True
    for name, fn, a in (("Lock", lib.cuCheckpointProcessLock, Args(timeout_ms=10000)),
                        ("Checkpoint", lib.cuCheckpointProcessCheckpoint, Args()),
                        ("Restore", lib.cuCheckpointProcessRestore, Args()),
                        ("Unlock", lib.cuCheckpointProcessUnlock, Args())):
        t = time.monotonic()
        rc = fn(pid, ctypes.byref(a))
        ms = (time.monotonic() - t) * 1000
        lib.cuCheckpointProcessGetState(pid, ctypes.byref(st))
        print(f"[{label}] {name} -> {err(lib, rc)} in {ms:.1f} ms; state now "
              f"{NAMES.get(st.value, st.value)}")
        if rc != 0:
            ok = False
            break
        describe(pid, tid.value, f"{label} after {name}")
    return ok


def child_pid_in(parent):
    """The first descendant of `parent` running python (the unshare case)."""
    for _ in range(100):
        for p in os.listdir("/proc"):
            if p.isdigit() and read(f"/proc/{p}/stat").split(")")[-1].split()[1:2] == [str(parent)]:
                return int(p)
        time.sleep(0.05)
    return 0


def run(lib, argv, label, pid_of):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            print(f"[{label}] the CUDA program did not start: {line!r} {proc.stderr.read()[-1500:]}")
            return
        pid = pid_of(proc)
        ns = [x for x in read(f"/proc/{pid}/status").splitlines() if x.startswith("NSpid")]
        print(f"[{label}] program pid {pid} {ns}")
        ok = drive(lib, pid, label)
        if not ok and ns and len(ns[0].split()) > 2:
            inner = int(ns[0].split()[-1])
            print(f"[{label}] retrying with the pid inside the namespace, {inner}")
            drive(lib, inner, label + " inner pid")
        before = proc.stdout.readline().strip()
        time.sleep(0.5)
        after = proc.stdout.readline().strip()
        print(f"[{label}] program goes on: {before!r} then {after!r}")
    finally:
        proc.kill()
        proc.wait()


def main():
    py = sys.executable
    lib = load()
    rc = lib.cuInit(0)
    print(f"cuInit(0) in the caller -> {err(lib, rc)}")
    run(lib, [py, "-c", CHILD], "plain", lambda p: p.pid)
    unshare = shutil.which("unshare")
    if unshare:
        run(lib, [unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", py, "-c", CHILD],
            "user+pid namespaces", lambda p: child_pid_in(p.pid))
    else:
        print("no unshare command: the namespace case is not probed")


if __name__ == "__main__":
    main()
