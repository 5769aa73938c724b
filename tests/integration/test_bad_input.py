"""Bad input: each must give a one-line error on stderr that names the
problem, a non-zero exit status, and leave every run directory as it was
(only *.log files may grow). A command that refuses to start must not
leave a run directory behind either: the user would then be told that it
"exists" when they run the corrected command."""
import os
import struct
import warnings

import pytest

from conftest import (PROGS, PYTHON, T_RUN, assert_unharmed, c_prog, check_chain, find_images,
                      snapshot)

CORRUPT_WORDS = ("checksum", "crc", "corrupt", "damaged", "invalid", "mismatch", "truncat", "short",
                 "size", "incomplete", "bad")


def assert_refused(r, what, words):
    """Non-zero exit and exactly one line on stderr mentioning one of words."""
    err = r.stderr.strip()
    assert r.returncode != 0, f"{what}: exit status 0, expected a refusal\nstdout {r.stdout!r}\nstderr {r.stderr!r}"
    assert err, f"{what}: failed (status {r.returncode}) without an error message"
    lines = err.splitlines()
    assert len(lines) == 1, f"{what}: the error should be one line, got {len(lines)}:\n{err}"
    assert any(w.lower() in err.lower() for w in words), \
        f"{what}: the error {err!r} should mention one of {list(words)}"
    return err


def start_refused(ck, args, what, words):
    """Runs `ckpt start ARGS` in an empty --dir holding one unrelated file,
    expects a refusal and that nothing was created or changed there."""
    keep = ck.runs / "keep.txt"
    keep.write_text("unrelated\n")
    before = snapshot(ck.runs)
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, *args, timeout=60)
    err = assert_refused(r, what, words)
    assert sorted(os.listdir(ck.runs)) == ["keep.txt"], \
        f"{what}: refused but left {sorted(os.listdir(ck.runs))} in --dir"
    assert_unharmed(before, snapshot(ck.runs), what)
    return err


@pytest.mark.parametrize("args,word", [
    (["start", "--bogus-option", "PROG", "3", "0"], "bogus-option"),
    (["restart", "--bogus-option", "PROG", "3", "0"], "bogus-option"),
    (["--bogus-option"], "bogus-option"),
    (["frobnicate", "x"], "frobnicate"),
    (["start", "--interval", "soon", "PROG", "3", "0"], "soon"),
], ids=["start", "restart", "global", "unknown-command", "bad-interval"])
def test_unknown_option(ck, args, word):
    args = [str(PROGS / "counter") if a == "PROG" else a for a in args]
    keep = ck.runs / "keep.txt"
    keep.write_text("unrelated\n")
    r = ck.cmd(*args[:1], "--dir", ck.runs, *args[1:]) if args[0] in ("start", "restart") else ck.cmd(*args)
    assert_refused(r, f"ckpt {' '.join(args)}", [word, "unknown", "unrecognized", "invalid"])
    if word != "frobnicate" and word != "soon":
        assert word in r.stderr, f"the error should name the option: {r.stderr.strip()!r}"
    assert os.listdir(ck.runs) == ["keep.txt"], f"left {os.listdir(ck.runs)} behind"
    assert keep.read_text() == "unrelated\n"


def test_missing_program(ck):
    start_refused(ck, ["/nonexistent/no-such-program", "1"], "missing program",
                  ["no-such-program"])


def test_missing_program_in_path(ck):
    start_refused(ck, ["no-such-program-anywhere", "1"], "program not in PATH",
                  ["no-such-program-anywhere"])


def test_missing_script(ck):
    start_refused(ck, ["--python", PYTHON, "/nonexistent/missing_script.py", "1"], "missing script",
                  ["missing_script"])


def test_non_executable_program(ck):
    prog = ck.work / "not_executable"
    prog.write_text("#!/bin/sh\necho hello\n")
    prog.chmod(0o644)
    start_refused(ck, [prog], "non-executable program", ["not_executable", "executable", "permission"])


def test_static_binary(ck, static_binary):
    err = start_refused(ck, [static_binary, "3", "0"], "static binary", ["static"])
    assert "static" in err.lower()


def finished_run(ck, prog):
    """A run directory of a program that ran to completion, no checkpoint."""
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=T_RUN)
    assert r.returncode == 0, f"ckpt start {prog.argv}: status {r.returncode}, stderr {r.stderr!r}"
    return ck.rundir()


def test_start_on_existing_run_directory(ck):
    prog = c_prog("counter", 3, 0)
    rundir = finished_run(ck, prog)
    before = snapshot(rundir)
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    err = assert_refused(r, "start on an existing run directory", ["exist"])
    assert "restart" in err, f"the error should say how to resume (ckpt restart ...): {err!r}"
    assert r.stdout == "", f"the program must not run again: stdout {r.stdout!r}"
    assert_unharmed(before, snapshot(rundir), "start on an existing run directory")


def test_restart_without_run_directory(ck):
    keep = ck.runs / "keep.txt"
    keep.write_text("unrelated\n")
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, PROGS / "counter", "3", "0", timeout=60)
    assert_refused(r, "restart with no run directory",
                   ["run director", "no such", "not found", "exist", "nothing", "checkpoint"])
    assert os.listdir(ck.runs) == ["keep.txt"], f"restart created {os.listdir(ck.runs)}"


def test_restart_without_checkpoint(ck):
    prog = c_prog("counter", 3, 0)
    rundir = finished_run(ck, prog)
    before = snapshot(rundir)
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    assert_refused(r, "restart with no checkpoint", ["checkpoint"])
    assert r.stdout == "", f"nothing may run: stdout {r.stdout!r}"
    assert_unharmed(before, snapshot(rundir), "restart with no checkpoint")


def test_restart_of_a_finished_run(ck):
    """A program that ended by itself is not run again by a plain restart
    (a requeued job's restart line would repeat its work and output): one
    line, a non-zero status, nothing changed; naming the generation runs it
    again from there."""
    prog = c_prog("counter", 30, 20)
    run = ck.start(prog)
    run.wait_lines(5)
    rundir = ck.rundir(proc=run)
    ck.checkpoint(rundir)
    run.finish()
    assert (rundir / "finished").exists(), "no finished file after the program ended"
    before = snapshot(rundir)
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    assert_refused(r, "restart of a finished run", ["--generation"])
    assert r.stdout == "", f"nothing may run: stdout {r.stdout!r}"
    assert_unharmed(before, snapshot(rundir), "restart of a finished run")
    r = ck.cmd("restart", "--interval", "0", "--generation", "1", "--dir", ck.runs, *prog.argv,
               timeout=T_RUN)
    assert r.returncode == 0 and "done steps=" in r.stdout, \
        f"restart --generation 1: status {r.returncode}, stdout {r.stdout[-300:]!r}, stderr {r.stderr!r}"


# ------------------------------------------------------- damaged images

PROG = ("counter", 80, 20)


def checkpointed_run(ck):
    """start -> 5 lines -> checkpoint -> SIGKILL; returns (prog, rundir, first output)."""
    prog = c_prog(*PROG)
    run = ck.start(prog)
    run.wait_lines(5)
    rundir = ck.rundir(proc=run)
    ck.checkpoint(rundir)
    ck.crash(run)
    return prog, rundir, run.output()


def restart_refused_then_repaired(ck, damage, what, words):
    """Damages the latest image, checks the restart is refused and harms
    nothing, then puts the image back and checks the restart works."""
    prog, rundir, first = checkpointed_run(ck)
    ref = ck.reference(prog)
    images = find_images(rundir)
    originals = {p: p.read_bytes() for p in images}
    for p in images:
        damage(p)
    before = snapshot(rundir)
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    ck.assert_gone(f"after the refused restart ({what})")
    err = assert_refused(r, what, words)
    assert r.stdout == "", f"{what}: the program must not run: stdout {r.stdout!r}"
    after = snapshot(rundir)
    for snap in (before, after):
        snap.pop("lock")  # names its last holder: a restorer may have run
    assert_unharmed(before, after, f"restart from an image with {what}")
    # repaired, the same run directory restarts fine; a generation whose
    # page data the restorer found damaged was marked so, and the mark
    # goes with the repair
    for p, data in originals.items():
        p.write_bytes(data)
        (p.parent / "damaged").unlink(missing_ok=True)
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("restart after repairing the image", out, 5)])
    assert rc == ref_rc
    return err


def test_truncated_image(ck):
    def truncate(p):
        with open(p, "r+b") as f:
            f.truncate(p.stat().st_size // 2)
    restart_refused_then_repaired(ck, truncate, "a truncated image", CORRUPT_WORDS)


def test_truncated_image_header(ck):
    def truncate(p):
        with open(p, "r+b") as f:
            f.truncate(100)
    restart_refused_then_repaired(ck, truncate, "an image cut inside its header", CORRUPT_WORDS)


@pytest.mark.parametrize("where", ["middle", "header", "last"])
def test_flipped_byte(ck, where):
    def flip(p):
        data = bytearray(p.read_bytes())
        off = {"middle": len(data) // 2, "header": 40, "last": len(data) - 1}[where]
        data[off] ^= 0x10
        p.write_bytes(bytes(data))
    restart_refused_then_repaired(ck, flip, f"a flipped byte ({where})", CORRUPT_WORDS)


def test_other_format_version(ck):
    """format_version is the uint32 at offset 8 of the header; patched
    without fixing any checksum. The error should say "version"; a
    checksum error is accepted (with a warning)."""
    def bump(p):
        data = bytearray(p.read_bytes())
        (v,) = struct.unpack_from("<I", data, 8)
        struct.pack_into("<I", data, 8, v + 1)
        p.write_bytes(bytes(data))
    err = restart_refused_then_repaired(ck, bump, "another format version", ("version",) + CORRUPT_WORDS)
    if "version" not in err.lower():
        warnings.warn(f"image of another format version refused, but the error does not say "
                      f"'version': {err!r}")
