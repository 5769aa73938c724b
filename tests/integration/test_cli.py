"""The command line: help, version, run directory naming and contents,
option pass-through, exit statuses, status, and no hangs on a stopped
program."""
import os
import re
import signal
import time

import pytest

from conftest import (CKPT, PROGS, PYDIR, PYTHON, ROOT, T_QUICK, c_prog, check_chain, run_cmd,
                      tagged_pids, tail, text_of)


def makefile_version():
    m = re.search(r"^VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    return m.group(1) if m else None


def test_version(ck):
    r = ck.cmd("--version")
    assert r.returncode == 0, f"ckpt --version: status {r.returncode}, stderr {r.stderr!r}"
    v = makefile_version()
    assert v and v in r.stdout, f"ckpt --version printed {r.stdout!r}, expected it to contain {v}"


@pytest.mark.parametrize("args", [["--help"], ["start", "--help"], ["restart", "--help"],
                                  ["checkpoint", "--help"], ["status", "--help"]],
                         ids=lambda a: " ".join(a))
def test_help(ck, args):
    r = ck.cmd(*args)
    assert r.returncode == 0, f"ckpt {' '.join(args)}: status {r.returncode}, stderr {r.stderr!r}"
    text = r.stdout + r.stderr
    assert text.strip(), f"ckpt {' '.join(args)} printed nothing"
    if args == ["--help"]:
        for cmd in ("start", "restart", "checkpoint", "status"):
            assert cmd in text, f"ckpt --help does not mention `{cmd}`:\n{text}"


def test_start_without_checkpoint_matches_direct_run(ck):
    """An uninterrupted `ckpt start` changes nothing in the output, and the
    run directory holds the logs the specification lists."""
    prog = c_prog("counter", 30, 5)
    ref = ck.reference(prog)
    run = ck.start(prog)
    rc = run.finish()
    expected, ref_rc = ref.result()
    assert run.output() == expected, f"output under ckpt start differs from a direct run\n{run.report()}"
    assert rc == ref_rc == 0
    rundir = ck.rundir()
    for name in ("application.log", "execution.log", "coordinator.log"):
        assert (rundir / name).is_file(), f"{name} missing from the run directory: {os.listdir(rundir)}"
    assert text_of(rundir / "application.log") == expected, "application.log is not the program's output"
    ex = text_of(rundir / "execution.log")
    assert ex.strip(), "execution.log is empty"
    ck.assert_gone("after ckpt start exited")


def test_run_directory_names(ck):
    """<id>_<name>_<args joined by _>, no <id>_ without an id; -id and -i
    are synonyms of --id and --interval; programs are found through PATH."""
    env = dict(ck.env, PATH=f"{PROGS}:{ck.env['PATH']}")
    cases = [
        (["--id", "job7", "--interval", "0"], ["counter", "3", "0"], "job7_counter_3_0"),
        (["--interval", "0"], ["counter", "4", "0"], "counter_4_0"),
        (["-id", "j2", "-i", "0"], ["counter", "5", "0"], "j2_counter_5_0"),
        (["--id", "py", "--interval", "0", "--python", PYTHON], [str(PYDIR / "counter.py"), "3", "0"],
         "py_counter_3_0"),
    ]
    for opts, prog, name in cases:
        d = ck.base / f"dir-{name}"
        d.mkdir()
        r = run_cmd([CKPT, "start", "--dir", d, *opts, *prog], env, cwd=ck.work, timeout=60)
        assert r.returncode == 0, f"ckpt start {opts} {prog}: status {r.returncode}, stderr {r.stderr!r}"
        entries = os.listdir(d)
        assert entries == [name], f"ckpt start {' '.join(opts + prog)}: run directory {entries}, expected {name}"
    # without --dir: in the current directory
    cwd = ck.base / "cwd"
    cwd.mkdir()
    r = run_cmd([CKPT, "start", "--interval", "0", "counter", "2", "0"], env, cwd=cwd, timeout=60)
    assert r.returncode == 0, f"ckpt start without --dir: status {r.returncode}, stderr {r.stderr!r}"
    assert os.listdir(cwd) == ["counter_2_0"], f"run directory in the current directory: {os.listdir(cwd)}"


def test_long_and_odd_command_lines_get_distinct_directories(ck):
    long_a = "x" * 300 + "a"
    long_b = "x" * 300 + "b"
    odd = "a/b c*d;e'f"
    for arg in (long_a, long_b, odd):
        r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, "echo", arg, timeout=60)
        assert r.returncode == 0, f"ckpt start echo {arg[:20]}...: status {r.returncode}, stderr {r.stderr!r}"
        assert r.stdout == arg + "\n", f"echo printed {r.stdout!r}"
    entries = sorted(os.listdir(ck.runs))
    assert len(entries) == 3, f"three command lines should give three run directories, got {entries}"
    for e in entries:
        assert len(e.encode()) <= 255 and (ck.runs / e / "application.log").is_file(), \
            f"bad run directory {e!r} in {entries}"


def test_program_options_pass_through(ck):
    """ckpt's options end at the program (or at --)."""
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, "echo", "--interval", "5", "--dir", "x",
               "-i", "3", "--id", "y", timeout=60)
    assert r.returncode == 0, f"status {r.returncode}, stderr {r.stderr!r}"
    assert r.stdout == "--interval 5 --dir x -i 3 --id y\n", f"echo got other arguments: {r.stdout!r}"
    other = ck.base / "other"
    other.mkdir()
    r = ck.cmd("start", "--interval", "0", "--dir", other, "--", "echo", "--help-me", timeout=60)
    assert r.returncode == 0, f"with --: status {r.returncode}, stderr {r.stderr!r}"
    assert r.stdout == "--help-me\n", f"with --: echo got {r.stdout!r}"


def test_exit_status(ck):
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, PROGS / "counter", "3", "0", "7", timeout=60)
    assert r.returncode == 7, f"program exited 7, ckpt start {r.returncode}; stderr {r.stderr!r}"
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, PYTHON, "-c",
               "import os, signal; os.kill(os.getpid(), signal.SIGTERM)", timeout=60)
    assert r.returncode == 128 + signal.SIGTERM, \
        f"program killed by SIGTERM: ckpt start should exit {128 + signal.SIGTERM}, got {r.returncode}"


def program_pids(tag, exe):
    out = []
    for pid in tagged_pids(tag):
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(exe):
                out.append(pid)
        except OSError:
            pass
    return out


def test_status(ck):
    prog = c_prog("counter", 400, 20)
    run = ck.start(prog)
    run.wait_lines(3)
    rundir = ck.rundir(proc=run)
    r = ck.cmd("status", rundir)
    assert r.returncode == 0 and r.stdout.strip(), f"ckpt status: status {r.returncode}, {r.stdout!r} {r.stderr!r}"
    gen = ck.checkpoint(rundir)
    r = ck.cmd("status", rundir)
    assert r.returncode == 0, f"ckpt status after a checkpoint: status {r.returncode}, {r.stderr!r}"
    assert re.search(rf"\b{gen}\b", r.stdout), f"ckpt status does not show generation {gen}: {r.stdout!r}"
    # status never asks the program: it answers while the program is stopped
    pids = program_pids(ck.tag, PROGS / "counter")
    assert pids, "cannot find the program's process"
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = ck.cmd("status", rundir, timeout=T_QUICK)
        took = time.monotonic() - t0
        assert r.returncode == 0, f"ckpt status with the program stopped: status {r.returncode} {r.stderr!r}"
        assert took < 5, f"ckpt status took {took:.1f} s with the program stopped (it must not ask it)"
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    ck.crash(run)


def run_on_terminal(argv, env, cwd, timeout=60):
    """argv with a pseudo-terminal as stdin/stdout/stderr: (status, output)."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_restart_progress_on_a_terminal(ck):
    """On a terminal, restart says which generation it verifies and, while
    the restorer works, how much it has read; both lines are erased
    before the program's output goes on."""
    prog = c_prog("bigmem", 30, 30, 64)
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog)
    rc, out = run_on_terminal(ck.argv("restart", prog), dict(ck.env, CKPT_PROGRESS_AFTER_MS="0"),
                              ck.work)
    ck.assert_gone("after the restart on a terminal")
    assert "\rckpt: verifying generation 1 \r\x1b[K" in out, out[:500]
    progress = r"\rckpt: restoring generation 1, [\d.]+ MiB read, [\d.]+ s \r\x1b\[K"
    assert re.search(progress, out), out[:800]
    # without the erased lines, the program's output (the terminal's \r\n
    # as \n) goes on exactly
    program = re.sub(progress, "", out.replace("\rckpt: verifying generation 1 \r\x1b[K", ""))
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0),
                           ("restart on a terminal", program.replace("\r\n", "\n"), seen)],
                context=f"ckpt restart on a terminal exited with status {rc}\n--- execution.log:\n"
                f"{tail(text_of(rundir / 'execution.log'), 8)}")
    assert rc == ref_rc, out[-2000:]
