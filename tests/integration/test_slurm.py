"""ckpt run under a real single-node Slurm (slurmctld, slurmd and munged
from Debian's slurm-wlm), configured and started here and stopped at the
end (tests/integration/slurm_cluster.py). Skipped, loudly, where Slurm
cannot be installed or started (not root, no packages).

Slurm checks time limits every 30 s and a requeued job starts again about
6 s later with these settings, so the time-limit test takes 3 to 4
minutes; the others well under one."""

import re
import time

import pytest

import slurm_cluster
from conftest import CKPT, c_prog, check_chain, tail, text_of


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = slurm_cluster.why_unavailable()
    if why:
        pytest.skip(f"SKIPPED LOUDLY: no Slurm tests: {why}")
    c = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except Exception as e:  # a broken Slurm set-up is a failure, not a skip
        c.stop()
        pytest.fail(f"could not start Slurm: {e}")
    print(f"\nSlurm started in {c.start_s:.2f} s ({c.base})")
    yield c
    c.stop()


def job_script(ck, name, sbatch, run_opts, prog, extra=""):
    path = ck.work / f"{name}.sh"
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={ck.work}/{name}-%j.out",
             "#SBATCH --open-mode=append", *[f"#SBATCH {s}" for s in sbatch], extra,
             f"exec {CKPT} run --dir {ck.runs} {' '.join(run_opts)} -- {' '.join(prog.argv)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(what, cond, timeout, cluster=None, job=None):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            info = f"; job {job}: {cluster.job(job)}" if cluster and job else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{info}")
        time.sleep(0.2)


def run_dir_of(ck, job_id, prog):
    return ck.runs / f"job{job_id}_{prog.name}_{'_'.join(prog.argv[1:])}"


def wait_done(cluster, job, timeout):
    st = cluster.wait_state(job, ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL"), timeout)
    return st


def test_job_outlives_its_time_limit(cluster, ck):
    """--time=1, about 110 s of work (more than two runs of at most 52 s
    each): --before-limit stops it before each limit, --requeue requeues
    it, ckpt run resumes it; it completes with exactly the uninterrupted
    output."""
    prog = c_prog("counter", 110, 1000)
    ref = ck.reference(c_prog("counter", 110, 0))
    script = job_script(ck, "limit", ["--time=1", "--requeue"],
                        ["--interval", "20", "--before-limit", "8", "--requeue"], prog)
    t0 = time.monotonic()
    job = cluster.sbatch(script, ck.work, ck.env)
    st = wait_done(cluster, job, 330)
    took = time.monotonic() - t0
    rundir = run_dir_of(ck, job, prog)
    ex = text_of(rundir / "execution.log")
    assert st == "COMPLETED", (f"job {job} ended {st} after {took:.0f} s\nexecution.log:\n{tail(ex, 30)}"
                               f"\njob output:\n{tail(text_of(ck.work / f'limit-{job}.out'))}")
    expected, _ = ref.result()
    got = text_of(rundir / "application.log")
    check_chain(expected, [("application.log of all runs", got, 0)])
    requeues = ex.count(f"requeued Slurm job {job}")
    assert requeues >= 2, f"expected at least 2 requeues, saw {requeues}:\n{tail(ex, 30)}"
    for n in range(1, requeues + 1):
        assert f"Slurm job {job}, restart count {n}," in ex, f"restart count {n} missing:\n{tail(ex, 30)}"
    assert ex.count("status 85 (stopped after a checkpoint") == requeues, tail(ex, 30)
    assert re.search(r"exit: the program \(pid \d+\) exited with status 0", ex), tail(ex, 30)
    print(f"\njob {job}: 110 s of work with a 1-minute limit completed after {requeues} requeues "
          f"in {took:.0f} s")


def test_scancel_usr1_checkpoints_and_job_continues(cluster, ck):
    prog = c_prog("counter", 40, 200)
    ref = ck.reference(c_prog("counter", 40, 0))
    script = job_script(ck, "usr1", ["--time=5"], ["--interval", "0"], prog)
    job = cluster.sbatch(script, ck.work, ck.env)
    rundir = run_dir_of(ck, job, prog)
    wait_for("5 lines of output", lambda: text_of(rundir / "application.log").count("\n") >= 5, 60,
             cluster, job)
    t0 = time.monotonic()
    cluster.cmd("scancel", "--signal=USR1", "--batch", job)
    wait_for("checkpoint generation 1", lambda: "checkpoint generation 1:" in text_of(rundir / "execution.log"),
             30, cluster, job)
    took = time.monotonic() - t0
    st = wait_done(cluster, job, 90)
    ex = text_of(rundir / "execution.log")
    assert st == "COMPLETED", f"job {job} ended {st}\n{tail(ex)}"
    expected, _ = ref.result()
    assert text_of(rundir / "application.log") == expected, "the job must go on undisturbed"
    assert "received SIGUSR1" in ex and "requeued" not in ex, tail(ex)
    print(f"\nscancel --signal=USR1 to a durable checkpoint: {took:.2f} s")


def test_preempted_job_resumes_from_its_last_checkpoint(cluster, ck):
    prog = c_prog("counter", 120, 100)
    ref = ck.reference(c_prog("counter", 120, 0))
    script = job_script(ck, "preempt", ["--time=5", "--requeue"], ["--interval", "1"], prog)
    job = cluster.sbatch(script, ck.work, ck.env)
    rundir = run_dir_of(ck, job, prog)
    log = rundir / "execution.log"
    gen = lambda: [int(g) for g in re.findall(r"checkpoint generation (\d+):", text_of(log))]
    wait_for("a first checkpoint", gen, 60, cluster, job)
    first_gen = max(gen())
    seen = text_of(rundir / "application.log").count("\n")
    wait_for("a newer checkpoint", lambda: max(gen()) > first_gen, 30, cluster, job)
    t0 = time.monotonic()
    cluster.cmd("scontrol", "requeue", job)
    wait_for("the requeued job to resume", lambda: "restart count 1" in text_of(log), 120, cluster, job)
    gap = time.monotonic() - t0
    st = wait_done(cluster, job, 120)
    ex = text_of(log)
    assert st == "COMPLETED", f"job {job} ended {st}\n{tail(ex, 20)}"
    # Split application.log where each run began (execution.log says).
    offsets = [int(b) for b in re.findall(r"output goes on at byte (\d+) of application", ex)]
    assert len(offsets) == 2, f"expected two runs, execution.log says {offsets}\n{tail(ex, 20)}"
    app = (rundir / "application.log").read_bytes().decode()
    segs = [app[:offsets[1]], app[offsets[1]:]]
    expected, _ = ref.result()
    check_chain(expected, [("run before the preemption", segs[0], 0),
                           ("run after the requeue", segs[1], seen)])
    assert re.search(r"restart from generation (\d+)", ex), tail(ex, 20)
    print(f"\nscontrol requeue -> resumed in {gap:.1f} s")


def test_two_jobs_of_one_user_share_nothing(cluster, ck):
    prog = c_prog("counter", 40, 150)
    ref = ck.reference(c_prog("counter", 40, 0))
    script = job_script(ck, "twin", ["--time=5"], ["--interval", "0"], prog)
    jobs = [cluster.sbatch(script, ck.work, ck.env) for _ in range(2)]
    dirs = [run_dir_of(ck, j, prog) for j in jobs]
    for j in jobs:
        wait_for(f"job {j} to run", lambda: cluster.state(j) == "RUNNING", 60, cluster, j)
    wait_for("output from both", lambda: all(text_of(d / "application.log").count("\n") >= 3 for d in dirs),
             60)
    cluster.cmd("scancel", "--signal=USR1", "--batch", jobs[0])
    wait_for("a checkpoint of the first job", lambda: (dirs[0] / "images" / "latest").exists(), 30)
    for j, d in zip(jobs, dirs):
        st = wait_done(cluster, j, 90)
        assert st == "COMPLETED", f"job {j} ended {st}\n{tail(text_of(d / 'execution.log'))}"
    expected, _ = ref.result()
    for d in dirs:
        assert text_of(d / "application.log") == expected, f"{d.name}: output differs"
    assert (dirs[0] / "token").read_text() != (dirs[1] / "token").read_text()
    assert not (dirs[1] / "images" / "latest").exists(), "the signal to one job checkpointed the other"
    assert sorted(p.name for p in ck.runs.iterdir()) == sorted(d.name for d in dirs)
