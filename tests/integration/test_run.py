"""ckpt run (start or resume, safe to call again and again) and the
signals to the supervisor: SIGUSR1 checkpoints and goes on, SIGTERM
checkpoints and stops with status 85 (86 when that checkpoint fails).
Slurm's commands are stood in for by small scripts in PATH here; the real
Slurm is in test_slurm.py."""

import os
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import (T_LINES, T_QUICK, T_RUN, Bg, c_prog, check_chain, py_prog, snapshot,
                      assert_unharmed, tail, text_of)

EXIT_STOPPED, EXIT_STOP_FAILED = 85, 86


def run_bg(ck, prog, opts=(), env=None):
    argv = [ck.ckpt, "run", "--interval", "0", "--dir", ck.runs, *opts, *prog.opts, *prog.argv]
    return Bg(argv, ck.work, env or ck.env, ck._name("run"), ck.user)


def wait_log(rundir, pattern, proc, timeout=T_LINES):
    """Waits until execution.log matches pattern; returns the match."""
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, text_of(Path(rundir) / "execution.log"))
        if m:
            return m
        if time.monotonic() > deadline:
            pytest.fail(f"execution.log never matched {pattern!r} within {timeout} s\n"
                        f"{tail(text_of(Path(rundir) / 'execution.log'))}\n{proc.report()}")
        time.sleep(0.02)


def test_run_starts_resumes_and_finishes_once(ck):
    prog = c_prog("counter", 60, 40, 3)
    ref = ck.reference(prog)
    first = run_bg(ck, prog)
    first.wait_lines(ck.rng.randint(3, 15))
    rundir = ck.rundir(proc=first)
    seen = first.lines()
    ck.checkpoint(rundir)
    first.wait_lines(first.lines() + 2)
    ck.crash(first)
    second = run_bg(ck, prog)
    rc = second.finish(T_RUN)
    ck.assert_gone("after the second ckpt run")
    expected, ref_rc = ref.result()
    check_chain(expected, [("first ckpt run", first.output(), 0),
                           ("second ckpt run (resumed)", second.output(), seen)])
    assert rc == ref_rc == 3, f"ckpt run exited {rc}, the program {ref_rc}\n{second.report()}"
    assert "resuming" in second.stderr(), f"ckpt run should say it resumes:\n{second.report()}"
    # The program has finished: a third call does nothing and says so.
    before = snapshot(rundir)
    third = run_bg(ck, prog)
    rc3 = third.finish(T_QUICK)
    assert rc3 == 3, f"ckpt run on a finished run should exit with its status 3, got {rc3}\n{third.report()}"
    assert third.output() == "", f"a finished run must not run again:\n{third.report()}"
    assert "finished already" in third.stderr(), third.report()
    assert_unharmed(before, snapshot(rundir), "ckpt run on a finished run")


def test_run_without_checkpoint_starts_afresh_keeping_logs(ck):
    prog = c_prog("counter", 40, 30)
    ref = ck.reference(prog)
    first = run_bg(ck, prog)
    first.wait_lines(ck.rng.randint(2, 10))
    rundir = ck.rundir(proc=first)
    ck.crash(first)  # before any checkpoint
    partial = text_of(rundir / "application.log")
    second = run_bg(ck, prog)
    rc = second.finish(T_RUN)
    expected, ref_rc = ref.result()
    assert rc == ref_rc, second.report()
    assert second.output() == expected, "starting afresh must give the whole uninterrupted output"
    assert text_of(rundir / "application.log") == partial + expected, \
        "application.log should keep the first run's output and go on with the fresh one"
    ex = text_of(rundir / "execution.log")
    assert len(re.findall(r"ckpt \S+ starting ", ex)) == 2 and "afresh" in ex, f"execution.log:\n{tail(ex)}"


def test_sigusr1_checkpoints_and_continues(ck):
    for opts, sig, name in (((), signal.SIGUSR1, "usr1"),
                            (("--checkpoint-signal", "USR2", "--id", "usr2"), signal.SIGUSR2, "usr2")):
        prog = c_prog("counter", 40, 40)
        ref = ck.reference(prog)
        run = run_bg(ck, prog, opts)
        run.wait_lines(ck.rng.randint(3, 15))
        rundir = [p for p in ck.runs.iterdir() if p.name.startswith("usr2_") == (name == "usr2")][0]
        os.kill(run.proc.pid, sig)
        wait_log(rundir, r"checkpoint generation 1: ", run)
        rc = run.finish(T_RUN)
        expected, ref_rc = ref.result()
        assert run.output() == expected and rc == ref_rc, \
            f"{sig.name}: the program must go on undisturbed\n{run.report()}"
        ex = text_of(rundir / "execution.log")
        assert f"received {sig.name}" in ex, ex
        assert (rundir / "images" / "gen-000001").is_dir(), f"{sig.name} made no generation 1"


def test_sigterm_checkpoints_and_stops_then_run_resumes(ck):
    prog = py_prog("counter", 60, 30)
    ref = ck.reference(prog)
    first = run_bg(ck, prog)
    first.wait_lines(ck.rng.randint(3, 20))
    rundir = ck.rundir(proc=first)
    os.kill(first.proc.pid, signal.SIGTERM)
    rc = first.finish(T_RUN)
    assert rc == EXIT_STOPPED, f"SIGTERM: ckpt should exit {EXIT_STOPPED}, got {rc}\n{first.report()}"
    assert "stopped after checkpoint generation 1" in first.stderr(), first.report()
    ck.assert_gone("after the stop")
    second = run_bg(ck, prog)
    rc2 = second.finish(T_RUN)
    expected, ref_rc = ref.result()
    check_chain(expected, [("run stopped by SIGTERM", first.output(), 0),
                           ("ckpt run again", second.output(), 1)], stopped_exactly=True)
    assert rc2 == ref_rc, second.report()
    ex = text_of(rundir / "execution.log")
    assert "received SIGTERM" in ex and "status 85" in ex, tail(ex)


def test_sigterm_when_checkpoint_fails_exits_86(ck, static_binary):
    # a statically linked child runs without the agent: no checkpoint
    prog = py_prog("child_alive", 200, 50, static_binary, 100000, 100)
    run = run_bg(ck, prog)
    run.wait_lines(3)
    rundir = ck.rundir(proc=run)
    os.kill(run.proc.pid, signal.SIGTERM)
    rc = run.finish(T_RUN)
    assert rc == EXIT_STOP_FAILED, f"expected {EXIT_STOP_FAILED}, got {rc}\n{run.report()}"
    ex = text_of(rundir / "execution.log")
    assert "no checkpoint could be made" in ex and "counter_static" in ex, tail(ex)
    assert not (rundir / "images" / "latest").exists()


def fake_slurm(ck, time_left):
    """squeue printing time_left, scontrol logging its arguments."""
    bindir = ck.base / "fakebin"
    bindir.mkdir(exist_ok=True)
    log = ck.base / "scontrol.log"
    (bindir / "squeue").write_text(f"#!/bin/sh\necho '{time_left}'\n")
    (bindir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    for f in ("squeue", "scontrol"):
        (bindir / f).chmod(0o755)
    env = dict(ck.env, PATH=f"{bindir}:{ck.env['PATH']}", SLURM_JOB_ID="4242",
               SLURM_RESTART_COUNT="1", SLURMD_NODENAME="n7")
    return env, log


def test_before_limit_and_requeue_with_stand_in_slurm(ck):
    prog = c_prog("counter", 50, 100)
    ref = ck.reference(prog)
    env, log = fake_slurm(ck, "0:12")
    first = run_bg(ck, prog, ("--before-limit", "10", "--requeue"), env)
    t0 = time.monotonic()
    rc = first.finish(T_RUN)
    took = time.monotonic() - t0
    assert rc == EXIT_STOPPED, f"expected {EXIT_STOPPED}\n{first.report()}"
    assert 1.5 < took < 8, f"12 s left, --before-limit 10: should stop after about 2 s, took {took:.1f}"
    rundir = ck.runs / "job4242_counter_50_100"
    assert rundir.is_dir(), f"run directory named after the job: {list(ck.runs.iterdir())}"
    assert text_of(log) == "requeue 4242\n", f"scontrol got: {text_of(log)!r}"
    ex = text_of(rundir / "execution.log")
    assert "Slurm job 4242, restart count 1, node n7" in ex and "requeued Slurm job 4242" in ex, tail(ex)
    env, _ = fake_slurm(ck, "UNLIMITED")
    second = run_bg(ck, prog, ("--before-limit", "10", "--requeue"), env)
    rc2 = second.finish(T_RUN)
    expected, ref_rc = ref.result()
    check_chain(expected, [("stopped before the limit", first.output(), 0),
                           ("requeued run", second.output(), 1)], stopped_exactly=True)
    assert rc2 == ref_rc and text_of(log) == "requeue 4242\n", second.report()


def test_batch_options_refused_outside_slurm(ck):
    prog = c_prog("counter", 5, 0)
    for opts in (["--requeue"], ["--before-limit", "60"], ["--checkpoint-signal", "TERM"],
                 ["--checkpoint-signal", "KILL"], ["--checkpoint-signal", "nope"],
                 ["--before-limit", "soon"]):
        r = ck.cmd("run", "--dir", ck.runs, *opts, *prog.argv)
        assert r.returncode == 2, f"{opts}: status {r.returncode}, stderr {r.stderr!r}"
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("ckpt: "), f"{opts}: {r.stderr!r}"
        assert not any(ck.runs.iterdir()), f"{opts}: a run directory was created"


def test_second_run_while_first_runs_is_refused(ck):
    """Calling ckpt run again while the run is going on (for instance a job
    started twice) refuses with status 2 and disturbs nothing, with or
    without a checkpoint."""
    prog = c_prog("counter", 60, 30)
    ref = ck.reference(prog)
    first = run_bg(ck, prog)
    first.wait_lines(3)
    rundir = ck.rundir(proc=first)
    r = ck.cmd("run", "--interval", "0", "--dir", ck.runs, *prog.argv)
    assert r.returncode == 2 and "in use" in r.stderr and r.stdout == "", \
        f"without a checkpoint: status {r.returncode}, stderr {r.stderr!r}"
    ck.checkpoint(rundir)
    r = ck.cmd("run", "--interval", "0", "--dir", ck.runs, *prog.argv)
    assert r.returncode == 2 and "in use" in r.stderr and r.stdout == "", \
        f"with a checkpoint: status {r.returncode}, stderr {r.stderr!r}"
    rc = first.finish(T_RUN)
    expected, ref_rc = ref.result()
    assert first.output() == expected and rc == ref_rc, first.report()
