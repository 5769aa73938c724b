"""C programs: checkpoint at a random step, SIGKILL everything, restart,
and compare with an uninterrupted run (see conftest.Ckpt.cycle)."""
import os

import pytest

from conftest import T_RUN, c_prog, run_cmd, text_of

# name, steps, per-step sleep (ms), extra arguments
PROGRAMS = [
    ("counter", 80, 40),             # single thread
    ("threads", 80, 40),             # 8 threads, mutex + condition variable
    ("pipe_reader", 80, 40),         # a thread blocked in read() on a pipe
    ("fpu", 80, 40),                 # AVX/x87 registers live across the checkpoint
    ("malloc_heavy", 60, 40),        # brk and mmap, patterns checked
    ("clock", 60, 40),               # clock_gettime/gettimeofday after restart
    ("counter", 60, 40, 5),          # exit status passes through a restart
    ("affinity", 60, 40),            # threads bound to CPUs, one with a raised nice value
    ("inotify_watch", 60, 40),       # inotify watches (one number skipped), events read late
]


def test_checkpoint_then_run_on(ck):
    """A checkpoint without a failure leaves the program undisturbed."""
    ck.checkpoint_and_finish(c_prog("threads", 40, 20))


@pytest.mark.parametrize("spec", PROGRAMS, ids=lambda s: "-".join(map(str, s)))
def test_restart(ck, spec):
    ck.cycle(c_prog(*spec))


def input_file(ck):
    p = ck.work / "input.txt"
    p.write_text("".join(f"input line {i:04d}: {'abcdefghij' * (i % 5)}\n" for i in range(60)))
    return p


def file_prog(ck):
    inp = input_file(ck)
    out_ckpt, out_ref = ck.work / "out-ckpt.txt", ck.work / "out-ref.txt"
    prog = c_prog("file_append", 80, 40, out_ckpt, inp)
    prog.ref_argv = [*prog.argv[:3], str(out_ref), str(inp)]
    prog.outputs = [(out_ckpt, out_ref)]
    return prog


def test_file_append_periodic_checkpoint(ck):
    """Appends to a file: --interval 1 --stop-after-checkpoint, so the file
    is as it was at the checkpoint when the program is restarted. The file
    must end up byte-identical to the uninterrupted run's."""
    prog = file_prog(ck)
    ck.stop_cycle(prog, interval=1)
    for got, want in prog.outputs:
        assert got.read_bytes() == want.read_bytes(), f"{got} differs from the uninterrupted run's {want}"


def test_file_append_checkpoint_on_demand(ck):
    prog = file_prog(ck)
    ck.stop_cycle(prog)
    for got, want in prog.outputs:
        assert got.read_bytes() == want.read_bytes(), f"{got} differs from the uninterrupted run's {want}"


def test_file_append_cut_back(ck):
    """Appends to a file and runs on past the checkpoint before it is
    killed: the restart cuts the file back to its checkpoint size (the
    program writes those lines again), says so in execution.log, and the
    file ends up byte-identical to the uninterrupted run's."""
    prog = file_prog(ck)
    rundir = ck.cycle(prog, more_lines=4)
    for got, want in prog.outputs:
        assert got.read_bytes() == want.read_bytes(), f"{got} differs from the uninterrupted run's {want}"
    ex = (rundir / "execution.log").read_text()
    assert "out-ckpt.txt: cut back from" in ex, ex[-2000:]


def test_temporary_files_deleted_after_the_checkpoint(ck):
    """Temporary files (mkstemp) written, closed, read back and deleted a
    few steps later, as a merging sort does; the program runs on past the
    checkpoint and deletes files it had then: the restart puts them back
    from the checkpoint's links, or the restarted program cannot open them
    (and execution.log says so)."""
    work, ref = ck.dirs("tmp-ckpt", "tmp-ref")
    prog = c_prog("temp_merge", 50, 40, work)
    prog.ref_argv = [*prog.argv[:3], str(ref)]
    rundir = ck.cycle(prog, k_range=(5, 25), more_lines=6)
    ex = (rundir / "execution.log").read_text()
    assert "deleted after the checkpoint; made again" in ex, ex[-2000:]


def test_shared_file_mapping_comes_back(ck):
    """A file mapped shared and writable, its descriptor closed, holds the
    program's state; the program runs on past the checkpoint, writing into
    it: the restart writes the file back as it was at the checkpoint, or
    the restarted program reads what the killed run wrote."""
    rundir = ck.cycle(c_prog("shared_file_map", 60, 40), more_lines=5)
    ex = (rundir / "execution.log").read_text()
    assert "stays after a restart" not in ex, ex[-2000:]


def test_shared_file_mapping_too_large_is_named(ck):
    """Over 64 MiB, a file mapped shared and writable is not saved: the
    checkpoint names it in execution.log, and the program runs on unharmed."""
    rundir = ck.checkpoint_and_finish(c_prog("shared_file_map", 12, 40, 16640), k_range=(2, 5))
    ex = text_of(rundir / "execution.log")
    assert "is mapped shared and writable and too large to save" in ex, ex[-2000:]


def test_affinity_on_fewer_cpus(ck):
    """Restarted where it may use only the last of its CPUs (taskset, as a
    job restarted under another binding): the thread bound to that CPU is
    bound to it again, the one bound to a CPU it may not use runs on those
    it may, and execution.log says so; the program runs to its end."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"SKIPPED LOUDLY: needs two CPUs to bind threads apart, this process may use {cpus}")
    prog = c_prog("affinity", 40, 40)
    rundir, first, seen = ck.checkpoint_then_crash(prog)
    r = run_cmd(["taskset", "-c", str(cpus[-1]), *ck.argv("restart", prog)], ck.env, cwd=ck.work,
                timeout=T_RUN)
    assert r.returncode == 0, f"restart: status {r.returncode}\n{r.stderr}"
    line = r.stdout.splitlines()[0]
    assert f"w0 {cpus[-1]} nice 0 w1 {cpus[-1]} nice 0 w2 {cpus[-1]} nice 3" in line, line
    ex = text_of(rundir / "execution.log")
    assert "was bound to CPUs that this restart may not use" in ex, ex[-2000:]


def test_stop_after_checkpoint(ck):
    """--stop-after-checkpoint: the program stops right at its first
    checkpoint, and the restart resumes exactly there."""
    ck.stop_cycle(c_prog("threads", 64, 40))


def test_signal_timers(ck):
    """Interval timers (SIGALRM, SIGPROF) and POSIX timers (a signal with a
    value, glibc's SIGEV_THREAD, a one-shot one the program waits for, a
    stopped one) come back with the ids the program holds and keep firing."""
    ck.cycle(c_prog("sigtimers", 60, 40))


def test_dontfork_memory_is_saved(ck):
    """1 MiB marked MADV_DONTFORK: the copy-on-write writer (a fork) lacks
    it, which the checkpoint must notice (the writer's memory is smaller
    than the program's) and then write the process without copy-on-write,
    saying so in execution.log. The restart goes on exactly."""
    rundir = ck.cycle(c_prog("dontfork", 60, 40))
    log = text_of(rundir / "execution.log")
    assert "MADV_DONTFORK" in log and "without copy-on-write" in log, log[-2000:]

