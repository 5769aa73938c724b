"""Process trees: a program whose state lives in several processes.

Each program forks children and keeps part of its state in them or
between them: fork with pipes between parent and child (Python and C), a
three-stage pipeline with bytes queued in both pipes, a Unix socketpair
with messages queued both ways, connections (Unix and TCP) caught before
the server accepted them, an epoll loop over a pipe fed by a child
plus a timerfd, a counter in MAP_SHARED memory guarded by process-shared
semaphores, a multiprocessing Array that spawned children get by
descriptor, zombies that stay unreaped for most of the run (one killed by
a signal) next to a sleeping child killed at the end, children that keep
being created, exec'ing and exiting so that a checkpoint catches one in
the act, Python's subprocess/platform children, and a bash script running
a Python and a C program one after the other, children waited for
through pidfds (plain, and asyncio's child watcher). Every scenario checkpoints
at a random line, SIGKILLs the whole process group, restarts and compares
with an uninterrupted run (conftest.Ckpt.cycle): losing a process, a
zombie, a byte queued in a pipe or socket, or a write to shared memory
changes the output. Beyond the standard cycle: two checkpoints in one run,
a checkpoint of a restarted tree, a checkpoint that must not disturb a
tree that runs on, and --stop-after-checkpoint stopping every process.
"""
import re

import pytest

from conftest import (PYDIR, Prog, c_prog, check_chain, py_prog, require_python_modules,
                      restart_context, text_of)


def sh_prog(name, *args):
    """A #! script in tests/py, run as given (not through --python)."""
    script = str(PYDIR / name)
    argv = [script, *map(str, args)]
    return Prog(name, argv, list(argv))


# id, program, k_range (the line after which the checkpoint is requested)
PROGRAMS = [
    ("fork_pipes.py", lambda: py_prog("fork_pipes", 60, 40), (3, 20)),
    ("mp_pool.py", lambda: py_prog("mp_pool", 50, 30), (3, 20)),
    ("mp_queue.py", lambda: py_prog("mp_queue", 50, 40), (3, 20)),
    # the checkpoint finds a queue whose locks the next children open by name
    ("spawn_queue.py-spawn", lambda: py_prog("spawn_queue", 12, 200, "spawn"), (2, 8)),
    ("spawn_queue.py-forkserver",
     lambda: py_prog("spawn_queue", 12, 200, "forkserver"), (2, 8)),
    ("locks.py", lambda: py_prog("locks", 60, 40), (3, 20)),
    # an Array the program maps and its spawned children get by descriptor
    ("shared_arena.py", lambda: py_prog("shared_arena", 40, 40), (3, 20)),
    ("tcp_pair.py", lambda: py_prog("tcp_pair", 60, 40), (3, 20)),
    # most of the time, half a request waits in the client's socket (Nagle)
    ("tcp_pair.py-split", lambda: py_prog("tcp_pair", 60, 30, "split"), (3, 20)),
    # a stream from another process, ahead by a full buffer: the reader
    # runs on until the sender's bytes have room
    ("tcp_stream.py-fork", lambda: py_prog("tcp_stream", 100, 25, "fork"), (3, 20)),
    ("fifo_pair.py", lambda: py_prog("fifo_pair", 60, 40), (3, 20)),
    # the checkpoint catches a connection the server has not accepted yet
    ("pending_connect.py-unix", lambda: py_prog("pending_connect", 40, 60, "unix"), (3, 20)),
    ("pending_connect.py-tcp", lambda: py_prog("pending_connect", 40, 60, "tcp"), (3, 20)),
    # ... one that already holds the client's request: the checkpoint lets
    # the program run on until the server has accepted it
    ("pending_connect.py-unix-ask",
     lambda: py_prog("pending_connect", 40, 60, "unix", "ask"), (3, 20)),
    # ... and answers with a descriptor (SCM_RIGHTS), which the checkpoint
    # may catch in flight
    ("pending_connect.py-unix-fd",
     lambda: py_prog("pending_connect", 40, 60, "unix", "fd"), (3, 20)),
    ("shared_offset.py", lambda: py_prog("shared_offset", 60, 40), (3, 20)),
    # the child is stopped from line 16 to line 45
    ("stopped_child.py", lambda: py_prog("stopped_child", 60, 40), (18, 40)),
    # the first program exits (status 3) after 20 lines; the daemon goes on
    ("daemon.py-first", lambda: py_prog("daemon", 60, 40), (3, 15)),
    ("daemon.py-alone", lambda: py_prog("daemon", 60, 40), (24, 50)),
    ("subprocess_work.py", lambda: py_prog("subprocess_work", 60, 40), (3, 25)),
    ("pipeline3", lambda: c_prog("pipeline3", 60, 40), (3, 20)),
    ("full_pipe", lambda: c_prog("full_pipe", 60, 40), (3, 20)),
    ("shm_counter", lambda: c_prog("shm_counter", 60, 40), (3, 20)),
    ("posix_shm", lambda: c_prog("posix_shm", 60, 40), (3, 20)),
    # zombies 60: children 0-4 forked in steps 0-4, zombies until step 42
    ("zombies-unreaped", lambda: c_prog("zombies", 60, 40), (3, 35)),
    # zombies 80 50: reaped at step 56 (lines 57-62), the sleeper killed at
    # step 72: a checkpoint with the zombies gone and the sleeper alive
    ("zombies-reaped", lambda: c_prog("zombies", 80, 50), (63, 68)),
    ("fork_exit_during", lambda: c_prog("fork_exit_during", 80, 40), (3, 20)),
    ("fork_exec_during", lambda: c_prog("fork_exec_during", 50, 40), (3, 20)),
    ("socketpair_tree", lambda: c_prog("socketpair_tree", 60, 40), (3, 20)),
    # an answer left at a connection whose other end has closed
    ("peer_closed.py", lambda: py_prog("peer_closed", 60, 40), (3, 20)),
    ("epoll_tree", lambda: c_prog("epoll_tree", 60, 40), (3, 20)),
    # children waited for through pidfds, and one already waited for
    ("pidfd_wait.py", lambda: py_prog("pidfd_wait", 60, 40), (3, 20)),
    # ... by asyncio's pidfd child watcher, in its epoll set
    ("pidfd_wait.py-asyncio", lambda: py_prog("pidfd_wait", 60, 40, "asyncio"), (3, 20)),
    # 40 lines of counter.py (lines 1-41), then counter (lines 43-83): the
    # checkpoint finds bash waiting for python3 or for counter
    ("run_both.sh", lambda: sh_prog("run_both.sh", 40, 40), (3, 60)),
]


@pytest.mark.parametrize("spec", PROGRAMS, ids=lambda s: s[0])
def test_restart(ck, spec):
    _, make, k_range = spec
    ck.cycle(make(), k_range=k_range)


def test_subshells_reach_the_supervisor(ck):
    """bash forks a subshell per command substitution and closes and dup2s
    descriptors in it at once: the agent of each must still reach the
    supervisor (its connection used to be made by its thread beside bash,
    whose closes took its descriptors: 'cannot reach the coordinator')."""
    rundir = ck.cycle(sh_prog("subshells.sh", 36, 30), k_range=(3, 20))
    log = (rundir / "application.log").read_text(errors="replace")
    assert "cannot reach the coordinator" not in log, log[-2000:]


def test_waiting_connection_with_bytes_sent(ck):
    """A client that sent its question on a connection the server does not
    accept for 2 s: the bytes sit in the queued connection, where no
    checkpoint reaches them, longer than the checkpoint lets the program
    run on for them (1 s). execution.log and the restart must say so, and
    the client must get an unconnected socket (an error it sees), never a
    connection that lost them silently (both sides would wait for ever)."""
    # steps to spare after the checkpoint and the two lines the crash waits
    # for: a run that ends first cannot be crashed
    prog = py_prog("pending_connect", 6, 2000, "unix", "ask")
    rundir, first, seen = ck.checkpoint_then_crash(prog, k_range=(1, 2))
    log = text_of(rundir / "execution.log")
    assert "a connection not accepted yet holds bytes sent on it, still after" in log, log
    out, rc, bg = ck.restart(prog, timeout=60)
    err = bg.stderr()
    assert "held bytes it had sent" in err, (
        f"the restart did not name the connection whose sent bytes were lost\n{bg.report()}")
    assert "Invalid argument" in err and rc != 0, (
        f"the client did not get an error on its unconnected socket (status {rc})\n{bg.report()}")


def test_tcp_stream_faster_than_its_reader_is_named(ck):
    """Bytes a TCP sender holds because the receiver's buffer is full do
    not move while the receiver is stopped, and nothing can read them out
    of the sender's socket: the checkpoint must name them in execution.log
    (docs/design.md, known limits) instead of losing them silently."""
    prog = py_prog("tcp_stream", 400, 100)
    run = ck.start(prog)
    run.wait_lines(3)
    rundir = ck.rundir(proc=run)
    ck.checkpoint(rundir)
    ck.crash(run)
    log = text_of(rundir / "execution.log")
    assert re.search(r"fd \d+: \d+ bytes sent on a TCP connection to a socket of this host "
                     r"wait for room in its receive buffer", log), log[-2000:]


def test_checkpoint_twice_then_restart(ck):
    """Two checkpoints of a running pipeline; the restart resumes from the
    second (latest) one, with every stage and the queued records."""
    ck.twice_then_restart(c_prog("pipeline3", 80, 40))


def test_checkpoint_restarted_tree_again(ck):
    """start -> checkpoint 1 -> kill -> restart -> checkpoint 2 -> kill ->
    restart: a restored tree (its zombies included) can be checkpointed
    again, and the last restart resumes from checkpoint 2."""
    prog = c_prog("zombies", 80, 40)  # zombies until step 56 (line 57)
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
    assert gen2 > gen1, f"checkpoint of the restarted tree has generation {gen2}, the first had {gen1}"
    second.wait_lines(second.lines() + 2)
    ck.crash(second)
    middle = second.output()

    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("first restart", middle, seen1),
                               ("second restart", out, 0)],
                    context=restart_context(rc, bg, rundir))
    assert s[2] >= s[1] + seen2, (f"the second restart resumed at line {s[2] + 1}, but checkpoint 2 was "
                                  f"taken after line {s[1] + seen2}")
    assert rc == ref_rc, f"ckpt restart exited with status {rc}, the uninterrupted program with {ref_rc}"


def test_checkpoint_then_run_on(ck):
    """A checkpoint taken while children fork, exec and exit leaves the
    tree undisturbed: the run finishes with the uninterrupted output."""
    ck.checkpoint_and_finish(c_prog("fork_exec_during", 40, 40))


@pytest.mark.parametrize("name", ["pipeline3", "shm_counter"])
def test_stop_after_checkpoint(ck, name):
    """--stop-after-checkpoint stops every process of the tree at the
    checkpoint: nothing is printed after it, and the restart resumes at
    exactly that line."""
    ck.stop_cycle(c_prog(name, 60, 40))


def test_exec_with_cleared_environment_keeps_the_agent(ck):
    """Programs exec'd with an emptied environment (execle, execve,
    clearenv + execvp, execl, execvpe, fexecve, execveat, posix_spawn,
    posix_spawnp) still load the agent and know the coordinator, so they
    are part of the computation."""
    run = ck.start(c_prog("exec_env"))
    rc = run.finish()
    out = run.output()
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) >= 9, f"expected a line per way of exec'ing:\n{out}"
    missing = [l for l in lines if "agent=yes ctl=yes" not in l]
    assert not missing and rc == 0, f"children without the agent (status {rc}):\n{out}"


def test_static_binary_in_the_tree_is_named(ck, static_binary):
    """A statically linked program in the tree cannot load the agent: the
    checkpoint fails within seconds, naming it, and the program runs on
    undisturbed (its output stays that of an uninterrupted run)."""
    prog = py_prog("child_alive", 60, 40, static_binary, 100000, 100)
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(3)
    rundir = ck.rundir(proc=run)
    r = ck.cmd("checkpoint", rundir, timeout=60)
    assert r.returncode != 0, f"checkpoint with a static child succeeded: {r.stdout!r}"
    assert "counter_static" in r.stderr and "agent" in r.stderr, r.stderr
    rc = run.finish()
    expected, ref_rc = ref.result()
    assert run.output() == expected and rc == ref_rc, run.report()


def test_supervised_until_the_last_process_ends(ck):
    """By default ckpt runs until every process of the computation has
    ended and exits with the first program's status; --exit-with-main
    ends everything when the first program ends."""
    prog = py_prog("daemon", 30, 20)
    ref = ck.reference(prog)
    expected, ref_rc = ref.result()
    run = ck.start(prog)
    rc = run.finish()
    assert run.output() == expected and rc == ref_rc == 3, run.report()
    run = ck.start(prog, opts=["--exit-with-main"], dir=ck.base / "with-main")
    rc = run.finish()
    first = [l for l in expected.splitlines() if " first " in l]
    out = run.output().splitlines()
    assert rc == 3 and out[:len(first)] == first, run.report()
    assert not any(l.startswith("done") for l in out), \
        f"the daemon ran to its end despite --exit-with-main:\n{run.report()}"


def test_torch_dataloader_workers(ck):
    """A PyTorch DataLoader with two worker processes: batches in flight
    through the workers' queues and shared memory at the checkpoint."""
    require_python_modules("torch")
    ck.cycle(py_prog("torch_loader", 60, 40), k_range=(3, 20))


def test_torch_dataloader_next_epoch(ck):
    """Checkpoint in the first epoch, crash in the second: the first
    epoch's workers ended in between and removed the temporary
    directories their resource sharers listened in. The restored workers
    must listen there again (restart makes the directories), or the main
    process can never fetch a batch."""
    require_python_modules("torch")
    ck.cycle(py_prog("torch_loader", 60, 40, 3), k_range=(3, 12), more_lines=25)
