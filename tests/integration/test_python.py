"""Python programs under Debian's /usr/bin/python3: checkpoint at a random
step, SIGKILL everything, restart, compare with an uninterrupted run."""
import os
import subprocess
import time

import pytest

from conftest import PYDIR, Prog, check_chain, py_prog, require_python_modules, restart_context

# script, steps, per-step sleep (ms), modules it needs
SCRIPTS = [
    ("counter", 80, 40, ()),
    ("numpy_matrix", 40, 60, ("numpy",)),        # OpenBLAS thread pool (2 threads)
    ("subprocess_uname", 40, 60, ()),            # children before and after the restart
    ("torch_train", 40, 60, ("torch",)),         # torch CPU training, 2 threads
    ("inotify_ctypes", 60, 40, ()),              # inotify through ctypes, libc loaded by name
]


@pytest.mark.parametrize("spec", SCRIPTS, ids=lambda s: s[0])
def test_restart(ck, spec):
    name, steps, sleep, mods = spec
    require_python_modules(*mods)
    ck.cycle(py_prog(name, steps, sleep), k_range=(3, steps // 3))


def test_torch_shared_tensor(ck):
    """A tensor in shared memory (a deleted /dev/shm file torch maps and
    keeps open) larger than what a checkpoint saves of a deleted file
    through its descriptor: it comes back with its mapping, and the
    descriptor opens the same memory."""
    require_python_modules("torch")
    ck.cycle(py_prog("torch_shared", 40, 60, 136), k_range=(3, 12))


def test_stdin_file_read_on(ck):
    """A file given as stdin, read with buffering: the restart, given the
    same file, reads on from where the program was; from the file's start
    it would read lines again once the restored buffer is used up."""
    data = ck.work / "stdin.txt"
    data.write_text("".join(f"{i:04d} {'abcdefgh'[i % 8] * (200 + i * 37 % 900)}\n"
                            for i in range(80)))
    prog = py_prog("stdin_lines", 40)
    prog.stdin = str(data)
    ck.cycle(prog, k_range=(3, 40))


def test_file_read_append(ck):
    """Reads one file, appends to another; --stop-after-checkpoint keeps the
    files as they were at the checkpoint. The output file must end up
    byte-identical to the uninterrupted run's."""
    inp = ck.work / "input.txt"
    inp.write_text("".join(f"{i:05d} {'xyz' * (i % 7)}\n" for i in range(80)))
    out_ckpt, out_ref = ck.work / "out-ckpt.txt", ck.work / "out-ref.txt"
    prog = py_prog("file_rw", 60, 40, inp, out_ckpt)
    prog.ref_argv = [*prog.ref_argv[:-1], str(out_ref)]
    prog.outputs = [(out_ckpt, out_ref)]
    ck.stop_cycle(prog)
    assert out_ckpt.read_bytes() == out_ref.read_bytes(), "the appended file differs from the uninterrupted run's"


def test_sqlite_written_in_place(ck):
    """A SQLite database, written in place: the rows and updates written
    after the checkpoint must be gone after the restart (its content is
    saved with the image and written back), or the counts differ."""
    prog = py_prog("sqlite_rw", 60, 40, ck.work / "ckpt.db")
    prog.ref_argv = [*prog.ref_argv[:-1], str(ck.work / "ref.db")]
    ck.cycle(prog, more_lines=4)


def test_inotify_events_never_read(ck):
    """A program that never reads its inotify events: the checkpoint lets
    it run on for them a moment, then is taken all the same, naming the
    events a restart will not have, and the program runs on undisturbed."""
    # long enough to outlast the second of settling, however loaded
    rundir = ck.checkpoint_and_finish(py_prog("inotify_ctypes", 120, 40, "unread"),
                                      k_range=(2, 8))
    ex = (rundir / "execution.log").read_text()
    assert "inotify events wait to be read" in ex and "events not read yet" in ex, ex[-2000:]


def test_outputs_removed_after_the_checkpoint(ck):
    """Output files the program writes and removes three steps later: it
    runs on past the checkpoint and removes files it had then; the
    restart puts them back (they were kept with the checkpoint), or the
    restarted program's os.remove fails."""
    work, ref = ck.dirs("out-ckpt", "out-ref")
    prog = py_prog("rotate_outputs", 50, 40, work)
    prog.ref_argv = [*prog.ref_argv[:-1], str(ref)]
    rundir = ck.cycle(prog, k_range=(5, 25), more_lines=6)
    ex = (rundir / "execution.log").read_text()
    assert "deleted after the checkpoint; made again" in ex, ex[-2000:]
    assert sorted(p.name for p in work.iterdir()) == sorted(p.name for p in ref.iterdir())


def test_outputs_followed_among_many_scratch_files(ck):
    """The same with 300 scratch files made and removed at every step
    before the outputs: more than 6000 by the checkpoint (steps 20-30),
    more than ckpt's list of files made holds at a time; the ones gone
    make room, or the outputs are no longer kept and the restarted
    program's os.remove fails."""
    work, ref = ck.dirs("out-ckpt", "out-ref")
    prog = py_prog("rotate_outputs", 45, 30, work, 300)
    prog.ref_argv = [*prog.ref_argv[:-2], str(ref), "300"]
    rundir = ck.cycle(prog, k_range=(21, 31), more_lines=6)
    ex = (rundir / "execution.log").read_text()
    assert "deleted after the checkpoint; made again" in ex, ex[-2000:]
    assert "more than" not in ex, ex[-2000:]
    assert sorted(p.name for p in work.iterdir()) == sorted(p.name for p in ref.iterdir())


def test_files_kept_across_checkpoints(ck):
    """Files made at the start in a directory of their own, removed with
    it after the second of two checkpoints: the second keeps them from the
    first's links (not from their paths, in the pause), and the restart
    from it puts them back, directory and all."""
    work, ref = ck.dirs("late-ckpt", "late-ref")
    prog = py_prog("late_delete", 60, 40, work, 30)
    prog.ref_argv = [*prog.ref_argv[:-2], str(ref), "30"]
    ref_run = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(5)
    rundir = ck.rundir(proc=run)
    ck.checkpoint(rundir)
    run.wait_lines(run.lines() + 8)
    seen = run.lines()
    ck.checkpoint(rundir)
    run.wait_lines(34)
    ck.crash(run)
    first = run.output()
    out, rc, rbg = ck.restart(prog)
    expected, _ = ref_run.result()
    check_chain(expected, [("first run (ckpt start)", first, 0),
                           (f"restarted run (second checkpoint after {seen} lines)", out, seen)],
                context=restart_context(rc, rbg, rundir))
    gen2 = sorted(p.name for p in (rundir / "images" / "gen-000002" / "files").iterdir())
    assert len(gen2) >= 5, gen2
    ex = (rundir / "execution.log").read_text()
    assert "and the directories it was in" in ex, ex[-2000:]


def build_library(lib, version, user):
    """lib: a new file (the old one removed first, as a linker does)."""
    src = lib.with_suffix(".c")
    src.write_text(f"int value(int x) {{ return x * 3 + {version}; }}\n")
    lib.unlink(missing_ok=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    if user:
        os.chown(lib, user.uid, user.gid)


def test_library_rebuilt_after_the_checkpoint(ck):
    """A shared library of the user's own, rebuilt at its path between the
    crash and the restart: the restart maps the one the program had from
    the checkpoint's link (before, it refused: the library changed)."""
    lib = ck.work / "libvalue.so"
    build_library(lib, 1, ck.user)
    prog = py_prog("libuse", 40, 50, lib)
    rundir = ck.cycle(prog, before_restart=lambda: build_library(lib, 100, ck.user))
    ex = (rundir / "execution.log").read_text()
    assert "was replaced since the checkpoint: mapped from the file kept" in ex, ex[-2000:]


def test_file_renamed_away_after_the_checkpoint(ck):
    """A temporary file open at the checkpoint and renamed over its final
    name afterwards (an atomic save): the restart finds another file or
    none at its path, and makes it again with its content at the
    checkpoint; the program then reads back what the uninterrupted run
    read, or its lines differ."""
    prog = py_prog("atomic_save", 50, 60, ck.work / "ckpt-state")
    prog.ref_argv = [*prog.ref_argv[:-1], str(ck.work / "ref-state")]
    rundir = ck.cycle(prog, k_range=(3, 12), more_lines=3)
    ex = (rundir / "execution.log").read_text()
    assert "state.json.tmp: " in ex and "made again" in ex, ex[-2000:]


def _appending(spec, ck):
    # a name with a space and a "%": the journal encodes it
    out_ckpt, out_ref = ck.work / "out 50%-ckpt.txt", ck.work / "out 50%-ref.txt"
    name, *extra = spec.split()
    if name.endswith(".py"):
        prog = py_prog(name[:-3], 40, 60, out_ckpt, *extra)
    else:
        script = str(PYDIR / name)
        argv = [script, "40", "60", str(out_ckpt), *extra]
        prog = Prog(name, argv, list(argv))
    at = prog.ref_argv.index(str(out_ckpt))
    prog.ref_argv = [*prog.ref_argv[:at], str(out_ref), *prog.ref_argv[at + 1:]]
    return prog, out_ckpt, out_ref


@pytest.mark.parametrize("spec", ["append_loop.sh", "append_reopen.py", "append_reopen.py seek"])
def test_closed_file_appended_after_the_checkpoint(ck, spec):
    """A file opened for appending and closed at every step (a shell
    loop's >>, Python's open(f, "a"), or write-only with a seek to its
    end, as Fortran appends) is closed at the checkpoint: the restart still
    cuts back what was appended after it, or those lines come twice, in
    the file and in what the program prints."""
    prog, out_ckpt, out_ref = _appending(spec, ck)
    rundir = ck.cycle(prog, k_range=(3, 15), more_lines=4)
    assert out_ckpt.read_bytes() == out_ref.read_bytes(), "the appended file differs from the uninterrupted run's"
    ex = (rundir / "execution.log").read_text()
    assert f"{out_ckpt}: cut back from" in ex, ex[-2000:]


def test_shared_writable_file_mapping_comes_back(ck):
    """A file mapped shared and writable holds the program's state: the
    restart puts it back as it was at the checkpoint (the killed run wrote
    on into it), and nothing in execution.log says it could not."""
    prog = py_prog("mmap_shared", 40, 40, ck.work / "ckpt.map")
    prog.ref_argv = [*prog.ref_argv[:-1], str(ck.work / "ref.map")]
    rundir = ck.cycle(prog, more_lines=4)
    ex = (rundir / "execution.log").read_text()
    assert "stays after a restart" not in ex, ex[-2000:]


def test_monotonic_clock_goes_on_from_the_checkpoint(ck):
    """Restarted 3 s after the crash, the program's monotonic clock goes on
    from where it was stopped: no step sees it jump (a node that booted
    later would otherwise put it days back, and deadlines taken from it
    days away)."""
    prog = py_prog("monotonic", 60, 40)
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog, k_range=(3, 20))
    time.sleep(3)
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), (f"restart (checkpoint after {seen} lines)", out, seen)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc, f"ckpt restart exited with status {rc}\n{bg.report()}"


def test_stop_after_checkpoint(ck):
    ck.stop_cycle(py_prog("counter", 60, 40))
