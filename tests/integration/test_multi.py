"""Several checkpoints and restarts in one run."""
import shutil
import subprocess

import pytest

from conftest import T_RUN, Prog, c_prog, check_chain, text_of


def test_checkpoint_twice_then_restart(ck):
    """The restart resumes from the second (latest) checkpoint."""
    ck.twice_then_restart(c_prog("threads", 96, 40))


def test_restart_same_checkpoint_twice(ck):
    """One checkpoint, then: a restart killed in turn before any new
    checkpoint, a restart to completion, and another restart to completion
    from the same checkpoint (named with --generation: the program had
    finished): all resume at the same point."""
    prog = c_prog("counter", 80, 40)
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog, (3, 20))

    again = ck.restart_bg(prog)
    again.wait_lines(3)
    ck.crash(again)
    killed = again.output()

    out1, rc1, _ = ck.restart(prog)
    out2, rc2, _ = ck.restart(prog, opts=("--generation", "1"))
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("restart killed after 3 lines", killed, seen),
                               ("second restart", out1, seen)])
    assert s[1] == s[2], f"two restarts of one checkpoint resumed at lines {s[1] + 1} and {s[2] + 1}"
    assert out2 == out1, "restarting the same checkpoint again gave a different output"
    assert rc1 == rc2 == ref_rc
    log = text_of(rundir / "application.log")
    assert log.endswith(out1 + out2), "application.log should hold both restarts' output, in order"


def test_checkpoint_restarted_program_again(ck):
    """start -> checkpoint 1 -> kill -> restart -> checkpoint 2 -> kill ->
    restart: the last restart resumes from checkpoint 2."""
    prog = c_prog("pipe_reader", 96, 40)
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(ck.rng.randint(3, 15))
    rundir = ck.rundir(proc=run)
    seen1 = run.lines()
    gen1 = ck.checkpoint(rundir)
    run.wait_lines(run.lines() + 2)
    ck.crash(run)
    first = run.output()

    second = ck.restart_bg(prog)
    second.wait_lines(ck.rng.randint(3, 15))
    seen2 = second.lines()
    gen2 = ck.checkpoint(rundir)
    assert gen2 > gen1, f"checkpoint of the restarted program has generation {gen2}, the first had {gen1}"
    second.wait_lines(second.lines() + 2)
    ck.crash(second)
    middle = second.output()

    out, rc, _ = ck.restart(prog)
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("first restart", middle, seen1),
                               ("second restart", out, 0)])
    assert s[2] >= s[1] + seen2, (f"the second restart resumed at line {s[2] + 1}, but checkpoint 2 was "
                                  f"taken after line {s[1] + seen2}")
    assert rc == ref_rc


def test_periodic_checkpoints(ck):
    """--interval 1, no checkpoint on demand: a crash after a few seconds
    restarts from a periodic checkpoint."""
    prog = c_prog("counter", 120, 40)
    ref = ck.reference(prog)
    run = ck.start(prog, interval=1)
    run.wait_lines(60)  # 2.4 s and more: at least one checkpoint was due
    ck.rundir(proc=run)
    ck.crash(run)
    first = run.output()
    out, rc, _ = ck.restart(prog)
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("restart", out, 1)])
    assert s[1] >= 10, f"resumed at line {s[1] + 1}: after 2 s and more, a periodic checkpoint was due"
    assert rc == ref_rc


LAUNCHER_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	(void)argc;
	printf("launcher\n");
	fflush(stdout);
	sleep(1); /* no agent in this process: a checkpoint asked for now waits */
	execv(argv[1], argv + 1);
	perror("execv");
	return 127;
}
"""


def test_checkpoint_before_the_agent_connects(ck, tmp_path):
    """`ckpt checkpoint` while the program has no agent yet (here a
    statically linked launcher that execs the real program a second
    later; on a loaded node, any program's first moments): the request
    waits for the agent instead of failing at once, and the restart goes
    on exactly."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("SKIPPED LOUDLY: no C compiler to build the static launcher")
    src, launcher = tmp_path / "launcher.c", tmp_path / "launcher"
    src.write_text(LAUNCHER_C)
    r = subprocess.run([gcc, "-static", "-O2", "-o", str(launcher), str(src)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot link a static binary: {r.stderr.strip()[-300:]}")
    counter = c_prog("counter", 40, 30)
    argv = ["/bin/sh", "-c", f"exec {launcher} {' '.join(counter.argv)}"]
    prog = Prog("launcher+counter", argv, list(argv))
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(1)
    rundir = ck.rundir(proc=run)
    seen = run.lines()
    assert ck.checkpoint(rundir) == 1
    run.wait_lines(run.lines() + 2)
    ck.crash(run)
    first = run.output()
    out, rc, _ = ck.restart(prog, timeout=T_RUN)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("restart", out, seen)])
    assert rc == ref_rc


def test_deep_run_directory(ck):
    """The run directory's path is far longer than a socket address (108)."""
    deep = ck.base / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    prog = c_prog("counter", 60, 30)
    ref = ck.reference(prog)
    run = ck.start(prog, dir=deep)
    run.wait_lines(ck.rng.randint(3, 15))
    rundir = ck.rundir(within=deep, proc=run)
    assert len(str(rundir / "ctl.sock")) > 108
    seen = run.lines()
    ck.checkpoint(rundir)
    run.wait_lines(run.lines() + 2)
    ck.crash(run)
    first = run.output()
    out, rc, _ = ck.restart(prog, dir=deep, timeout=T_RUN)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("restart", out, seen)])
    assert rc == ref_rc
