"""GPU programs without a GPU: a fake libcuda.so.1 (tests/gpu/fake_libcuda.c)
records the driver's checkpoint calls ckpt makes, in order, with the pid
it was given and who that pid is inside the program's namespace. The
test program (tests/progs/cuda_counter.c) loads the fake, so ckpt sees a
CUDA process. What a real GPU must confirm is in docs/gpu.md."""
import contextlib
import ctypes
import os
import re
from pathlib import Path

import pytest

from conftest import (ROOT, T_CHECKPOINT, assert_unharmed, c_prog, check_chain, restart_context,
                      run_cmd, snapshot, tail, text_of)

FAKE_DIR = Path(os.environ.get("CKPT_FAKE_CUDA_DIR", str(ROOT / "build" / "tests" / "fake-cuda")))
FAKE_LIB = FAKE_DIR / "libcuda.so.1"


@pytest.fixture
def gpu(ck):
    """ck with the fake driver on LD_LIBRARY_PATH (for ckpt and the program)
    and its call log; returns the log's path."""
    if not FAKE_LIB.exists():
        pytest.fail(f"{FAKE_LIB} is missing: `make` builds it")
    log = ck.work / "cuda-calls.log"
    ck.env.update(LD_LIBRARY_PATH=str(FAKE_DIR), CKPT_FAKE_CUDA_LOG=str(log))
    return log


def calls(log):
    """[(call, host pid, pid in the program's namespace, rc)]"""
    out = []
    for line in text_of(log).splitlines():
        m = re.fullmatch(r"(\w+) (\d+) nspid=(\S+) rc=(\d+)", line)
        assert m, f"unexpected line in the fake driver's log: {line!r}"
        out.append((m[1], int(m[2]), m[3], int(m[4])))
    return out


def failed_checkpoint(ck, prog, want):
    """start -> checkpoint must fail with a message matching want, named in
    execution.log -> the program runs on to its exact uninterrupted end."""
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(ck.rng.randint(3, 10))
    rundir = ck.rundir(proc=run)
    r = ck.cmd("checkpoint", rundir, timeout=T_CHECKPOINT)
    ex = text_of(rundir / "execution.log")
    assert r.returncode != 0, f"the checkpoint should have failed\nexecution.log:\n{tail(ex)}"
    line = [ln for ln in ex.splitlines() if "checkpoint generation 1 failed" in ln]
    assert line and re.search(want, line[0]), (
        f"execution.log should say why the checkpoint failed ({want!r}):\n{tail(ex)}\n"
        f"ckpt checkpoint said: {r.stderr!r}")
    assert "the program continues" in line[0], line[0]
    rc = run.finish()
    expected, ref_rc = ref.result()
    assert run.output() == expected, f"the program did not run on unharmed\n{run.report()}"
    assert rc == ref_rc
    return rundir, line[0]


def test_gpu_checkpoint_restart_order(ck, gpu):
    """Lock -> Checkpoint before the capture, Restore -> Unlock after it;
    at restart Restore -> Unlock once the process runs again; the output is
    exactly an uninterrupted run's. A restart on a node with another GPU
    model, or without the driver library, is refused beforehand."""
    prog = c_prog("cuda_counter", 60, 40, "lib")
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog)
    at_ckpt = calls(gpu)
    assert [c[0] for c in at_ckpt] == ["state", "lock", "checkpoint", "restore", "unlock"], at_ckpt
    assert all(c[2] == "2" and c[3] == 0 for c in at_ckpt), (
        f"the driver was not given the program's pid (2 in its namespace): {at_ckpt}")
    coord = text_of(rundir / "coordinator.log")
    order = [coord.find(s) for s in ("GPU lock and checkpoint", "SUSPEND", "CONTINUE gen=1",
                                     "GPU restore and unlock")]
    assert -1 not in order and order == sorted(order), (
        f"coordinator.log does not show lock/checkpoint -> SUSPEND -> CONTINUE -> restore/unlock:\n"
        f"{tail(coord, 30)}")
    manifest = text_of(rundir / "images" / "latest" / "manifest")
    for key in ("gpu_processes=1", "gpu_pid=2", "gpu_checkpoint_ms=", "gpu_model=Fake%20GPU"):
        assert key in manifest, f"manifest lacks {key}:\n{manifest}"
    assert re.search(r"checkpoint generation 1: .*GPU: 1 process\(es\), lock \d+ ms, device-to-host",
                     text_of(rundir / "execution.log")), tail(text_of(rundir / "execution.log"))
    st = ck.cmd("status", rundir)
    assert re.search(r"gpu: +1 process\(es\): lock \d+ ms", st.stdout), st.stdout

    # refused before anything changes: another GPU model, no driver library
    before = snapshot(rundir)
    for env, want in ((dict(ck.env, CKPT_FAKE_CUDA_MODEL="Other GPU"), r'"Fake GPU".*"Other GPU"'),
                      ({k: v for k, v in ck.env.items() if k != "LD_LIBRARY_PATH"},
                       r"cannot load the NVIDIA driver library libcuda\.so\.1")):
        r = run_cmd(ck.argv("restart", prog), env, cwd=ck.work)
        assert r.returncode != 0 and re.search(want, r.stderr), (r.returncode, r.stderr)
        assert r.stderr.count("\n") == 1, f"want one line: {r.stderr!r}"
        ck.assert_gone("after a refused restart")
    assert_unharmed(before, snapshot(rundir), "a refused restart")
    assert calls(gpu) == at_ckpt, "a refused restart called the driver's checkpoint calls"

    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), (f"restart (checkpoint after {seen} lines)", out, seen)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc
    at_restart = calls(gpu)[len(at_ckpt):]
    assert [c[0] for c in at_restart] == ["restore", "unlock"], at_restart
    assert all(c[2] == "2" and c[3] == 0 for c in at_restart), at_restart
    assert "restored the GPU state of 1 process(es)" in text_of(rundir / "execution.log")


def test_gpu_restart_without_namespaces_refused(ck, gpu):
    """The driver gives GPU state back only to the thread ids it was taken
    from (on a real GPU, Restore on a process restarted without pid
    namespaces never returned and the program hung). A GPU generation
    taken without namespaces (CKPT_NO_NAMESPACES=1) says so in
    execution.log; a restart without them is refused beforehand with one
    line, the run directory unchanged; a restart with them goes on exactly."""
    ck.env = dict(ck.env, CKPT_NO_NAMESPACES="1")
    prog = c_prog("cuda_counter", 60, 40, "lib")
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog)
    at_ckpt = calls(gpu)
    assert [c[0] for c in at_ckpt] == ["state", "lock", "checkpoint", "restore", "unlock"], at_ckpt
    assert "can be restarted only where ckpt can make them" in text_of(rundir / "execution.log")
    before = snapshot(rundir)
    r = run_cmd(ck.argv("restart", prog), ck.env, cwd=ck.work)
    assert r.returncode != 0 and re.search(r"can be restarted only in pid namespaces", r.stderr), (
        r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1, f"want one line: {r.stderr!r}"
    ck.assert_gone("after a refused restart")
    assert_unharmed(before, snapshot(rundir), "a refused restart")
    assert calls(gpu) == at_ckpt, "a refused restart called the driver's checkpoint calls"

    del ck.env["CKPT_NO_NAMESPACES"]
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), (f"restart (checkpoint after {seen} lines)", out, seen)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc
    assert [c[0] for c in calls(gpu)[len(at_ckpt):]] == ["restore", "unlock"]


def test_gpu_driver_too_old(ck, gpu):
    ck.env["CKPT_FAKE_CUDA_VERSION"] = "12040"
    _, line = failed_checkpoint(ck, c_prog("cuda_counter", 40, 30, "lib"),
                                r"pid 2 \(.*cuda_counter.*\) uses the GPU \(libcuda mapped\).*"
                                r"supports CUDA 12\.4; checkpointing GPU programs needs CUDA 12\.8")
    assert [c[0] for c in calls(gpu)] == [], "a too old driver was asked to checkpoint"


def test_gpu_libcuda_absent_for_ckpt(ck, gpu):
    """The program has libcuda mapped (by path) but ckpt cannot load one."""
    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("SKIPPED LOUDLY: this machine has a real libcuda.so.1, so ckpt would find "
                    "one; the refusal without a driver library cannot be shown here")
    except OSError:
        pass
    del ck.env["LD_LIBRARY_PATH"]
    ck.env["CUDA_COUNTER_LIB"] = str(FAKE_LIB)
    failed_checkpoint(ck, c_prog("cuda_counter", 40, 30, "lib"),
                      r"pid 2 .*uses the GPU \(libcuda mapped\).*cannot load the NVIDIA driver "
                      r"library libcuda\.so\.1")


def test_gpu_checkpoint_call_fails(ck, gpu):
    """A failing Checkpoint call: what was locked is given back."""
    ck.env["CKPT_FAKE_CUDA_FAIL"] = "checkpoint"
    failed_checkpoint(ck, c_prog("cuda_counter", 40, 30, "lib"),
                      r"GPU: pid 2 .*cuCheckpointProcessCheckpoint failed: CUDA_ERROR_UNKNOWN")
    got = [(c[0], c[3]) for c in calls(gpu)]
    assert got[:3] == [("state", 0), ("lock", 0), ("checkpoint", 999)], got
    assert got[-1] == ("unlock", 0), f"the process was not unlocked again: {got}"


def test_gpu_libcuda_without_cuda_state(ck, gpu):
    """libcuda loaded but no CUDA state: an ordinary CPU process."""
    ck.env["CKPT_FAKE_CUDA_STATE"] = "none"
    rundir = ck.checkpoint_and_finish(c_prog("cuda_counter", 40, 30, "lib"), k_range=(3, 10))
    assert [c[0] for c in calls(gpu)] == ["state"], calls(gpu)
    assert "gpu_" not in text_of(rundir / "images" / "latest" / "manifest")


@contextlib.contextmanager
def nvidia_file():
    """A stand-in /dev/nvidia* file (a regular file), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: needs root to create a stand-in /dev/nvidia* file")
    dev = Path(f"/dev/nvidia-ckpt-test-{os.getpid()}")
    try:
        dev.write_bytes(b"")
        dev.chmod(0o666)
        yield dev
    finally:
        dev.unlink(missing_ok=True)


def test_gpu_device_open_without_cuda_state(ck, gpu):
    """A /dev/nvidia* descriptor with no CUDA state the driver can save:
    refused, never imaged as a CPU process."""
    with nvidia_file() as dev:
        ck.env["CKPT_FAKE_CUDA_STATE"] = "none"
        failed_checkpoint(ck, c_prog("cuda_counter", 40, 30, "nolib", dev),
                          r"pid 2 .*has /dev/nvidia\* open but the NVIDIA driver reports no CUDA "
                          r"state")


def test_gpu_device_not_released(ck, gpu):
    """A device still open once every thread is stopped (the fake driver
    never closes it): the checkpoint fails and the GPU is given back."""
    with nvidia_file() as dev:
        failed_checkpoint(ck, c_prog("cuda_counter", 40, 30, "lib", dev),
                          r"pid 2.*GPU: fd \d+ \(/dev/nvidia-ckpt-test-\d+\) is still open when stopped")
    assert [c[0] for c in calls(gpu)] == ["state", "lock", "checkpoint", "restore", "unlock"], \
        calls(gpu)
