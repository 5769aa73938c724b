"""Robustness: a program that cannot reach its safe point. Last in the
suite, so that with -x a failure here does not hide the others."""
import os
import signal
import time

import pytest

from conftest import CKPT, PROGS, Bg, c_prog
from test_cli import program_pids


def test_checkpoint_of_stopped_program_does_not_hang(ck):
    """A program that cannot reach its safe point (here: SIGSTOPped) makes
    the checkpoint fail in bounded time, and it runs on afterwards."""
    prog = c_prog("counter", 60, 30)
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(5)
    rundir = ck.rundir(proc=run)
    pids = program_pids(ck.tag, PROGS / "counter")
    assert pids, "cannot find the program's process"
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    cp = Bg([CKPT, "checkpoint", rundir], ck.work, ck.env, "checkpoint-stopped")
    try:
        t0 = time.monotonic()
        # the spec's bound is 10 s to reach the safe point; allow slack
        while cp.proc.poll() is None and time.monotonic() - t0 < 45:
            time.sleep(0.1)
        took = time.monotonic() - t0
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    if cp.proc.poll() is None:
        rc = cp.finish(30)
        pytest.fail(f"ckpt checkpoint of a stopped program did not return within 45 s (status {rc} "
                    f"once the program was continued)")
    if cp.proc.returncode != 0:
        assert cp.stderr().strip(), "ckpt checkpoint failed without saying why"
    rc = run.finish()
    expected, ref_rc = ref.result()
    assert run.output() == expected, f"the program's output changed after the abandoned checkpoint\n{run.report()}"
    assert rc == ref_rc
    print(f"checkpoint of the stopped program: status {cp.proc.returncode} after {took:.1f} s: "
          f"{cp.stderr().strip()}")
