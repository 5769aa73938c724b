"""Engine refusals that must not hurt the program: a thread that never
reaches its safe point, a child process alive at checkpoint time. Each
checkpoint fails with a message naming the culprit, within a bounded time,
and the program's output stays exactly that of an uninterrupted run."""
import time

from conftest import CKPT, Bg, c_prog, py_prog, require_python_modules, tail, text_of


def failed_checkpoint(ck, prog, lines, env_extra=None, bound=30):
    if env_extra:
        ck.env = dict(ck.env, **env_extra)
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(lines)
    rundir = ck.rundir(proc=run)
    t0 = time.monotonic()
    r = ck.cmd("checkpoint", rundir, timeout=bound + 30)
    took = time.monotonic() - t0
    assert r.returncode != 0, f"checkpoint should have failed: {r.stdout!r}"
    assert took < bound, f"the failed checkpoint took {took:.1f} s"
    rc = run.finish()
    expected, ref_rc = ref.result()
    assert run.output() == expected, f"output changed after the failed checkpoint\n{run.report()}"
    assert rc == ref_rc
    log = text_of(rundir / "execution.log")
    assert not list((rundir / "images").glob("gen-*[0-9]")), "a failed checkpoint left a generation"
    return r.stderr + log


def test_thread_that_never_stops(ck):
    why = failed_checkpoint(ck, c_prog("sigblock", 40, 50), 5, {"CKPT_STOP_TIMEOUT_MS": "2000"})
    assert "stubborn" in why and "did not stop" in why, f"the thread is not named:\n{tail(why)}"


def test_child_alive_at_checkpoint(ck):
    prog = py_prog("child_alive", 30, 60)
    why = failed_checkpoint(ck, prog, 5)
    assert "child process" in why and "sleep" in why, f"the child is not named:\n{tail(why)}"
