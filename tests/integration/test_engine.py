"""Engine refusals that must not hurt the program: a thread that never
reaches its safe point, a child process alive at checkpoint time. Each
checkpoint fails with a message naming the culprit, within a bounded time,
and the program's output stays exactly that of an uninterrupted run."""
import time

import pytest

from conftest import c_prog, py_prog, tail, text_of


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
    """A child running at checkpoint time is part of the checkpoint and
    runs again after the restart (process trees: test_tree.py)."""
    ck.cycle(py_prog("child_alive", 30, 60), k_range=(3, 12))


def image_bytes(rundir):
    return sum(p.stat().st_size for p in (rundir / "images").glob("gen-*[0-9]/*.img"))


@pytest.mark.parametrize("opts", [("--compress", "none"), ("--compress", "max"), ("--no-cow",),
                                  ("--no-cow", "--compress", "none")],
                         ids=lambda o: "".join(o).replace("--", "_"))
def test_image_options(ck, opts):
    """Every way of writing an image restarts exactly: raw or compressed
    chunks, from a copy-on-write snapshot or with the program stopped."""
    ck.cycle(c_prog("malloc_heavy", 60, 40), opts=list(opts))


def test_compression_shrinks_images(ck):
    """The same compressible program: a compressed image is smaller than a
    raw one, and both restart (malloc_heavy fills memory with patterns)."""
    sizes = {}
    for mode in ("none", "fast"):
        prog = c_prog("malloc_heavy", 40, 20)
        (ck.runs / mode).mkdir()
        run = ck.start(prog, opts=["--compress", mode], dir=ck.runs / mode)
        run.wait_lines(5)
        rundir = ck.rundir(within=ck.runs / mode, proc=run)
        ck.checkpoint(rundir)
        sizes[mode] = image_bytes(rundir)
        run.finish()
    assert sizes["fast"] < sizes["none"] * 0.8, f"compression did not pay: {sizes}"


def test_deleted_temporary_file(ck):
    """tempfile.TemporaryFile (open, already unlinked) keeps its content and
    offset across a restart."""
    ck.cycle(py_prog("tempfile_rw", 60, 40))


def test_deleted_mapped_file(ck):
    """A file mapped privately, then deleted: pages the program had not
    touched at the checkpoint come back with the file's bytes (the image
    holds them), and the page past the end of the file, which cannot be
    read, does not break the checkpoint."""
    ck.cycle(c_prog("deleted_map", 60, 40), k_range=(3, 20))


@pytest.mark.parametrize("name", ["pipe_reader", "malloc_heavy"])
def test_without_namespaces(ck, name):
    """Where user namespaces are disabled (forced here with
    CKPT_NO_NAMESPACES=1) the program restarts with new pid and tids, glibc's
    cached thread ids rewritten, and execution.log says so."""
    ck.env = dict(ck.env, CKPT_NO_NAMESPACES="1")
    rundir = ck.cycle(c_prog(name, 60, 40))
    log = text_of(rundir / "execution.log")
    assert log.count("WITHOUT its own namespaces") >= 2, tail(log)


def test_asyncio_event_loop(ck):
    """epoll sets, eventfd counters and the loop's socketpair come back."""
    ck.cycle(py_prog("asyncio_tick", 60, 40))


def test_pending_signals(ck):
    """Signals pending at checkpoint time (one for the thread, one for the
    process) are still pending after a restart and handled once unblocked."""
    ck.cycle(c_prog("pending", 40, 40), k_range=(3, 25))


def test_tcp_listener(ck):
    """A listening TCP socket listens again on its port after a restart."""
    ck.cycle(py_prog("tcp_server", 60, 40))


def test_timerfd_and_signalfd(ck):
    """A periodic timerfd keeps firing and a signalfd keeps receiving."""
    ck.cycle(py_prog("timers", 60, 40))
