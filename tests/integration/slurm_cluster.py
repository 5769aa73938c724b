"""A real single-node Slurm (slurmctld, slurmd, munged from Debian's
slurm-wlm), configured and started in a directory of the test's own and
stopped afterwards. Settings and timings: /work/shared/notes/slurm-facts.md
(summarized in docs/slurm.md, "Testing").

Everything lives under one directory: munge key and socket, slurm.conf,
state, spool, logs and pid files; the daemons listen on free ports of
127.0.0.1, so a Slurm installed on the machine is not disturbed. Every
client (sbatch, squeue, scontrol, scancel and the jobs) needs SLURM_CONF,
which `env` carries.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"


def why_unavailable():
    """None when a Slurm can be started here, else the reason."""
    if os.geteuid() != 0:
        return "slurmd and munged need root here (run make check as root; tests/deps.sh installs slurm)"
    missing = [d for d in DAEMONS if not shutil.which(d, path=SBIN)]
    if missing:
        return (f"Slurm is not installed (missing {', '.join(missing)}); as root, tests/deps.sh "
                f"installs slurmctld slurmd slurm-client munge")
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv, env, timeout=30, check=True):
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed with status {r.returncode}: "
                           f"{r.stderr.strip() or r.stdout.strip()}")
    return r


class Cluster:
    def __init__(self, base):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.conf = self.base / "slurm.conf"
        self.munge_dir = self.base / "munge"
        self.socket = self.munge_dir / "munge.socket"
        # No CKPT_TEST_TAG: the per-test clean-up must not kill the daemons.
        self.env = {"PATH": SBIN, "SLURM_CONF": str(self.conf), "LANG": "C.UTF-8", "HOME": "/root"}
        self.node = None

    def path(self, name):
        return str(self.base / name)

    def start(self):
        t0 = time.monotonic()
        self.munge_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.munge_dir, 0o755)  # the socket's directory must be reachable
        key_dir = self.base / "munge-key"
        key_dir.mkdir(mode=0o700, exist_ok=True)
        key = key_dir / "munge.key"
        if not key.exists():
            _run(["mungekey", "--create", f"--keyfile={key}"], self.env)
        os.chmod(key, 0o600)
        _run(["munged", "--force", f"--socket={self.socket}", f"--key-file={key}",
              f"--pid-file={self.path('munged.pid')}", f"--log-file={self.path('munged.log')}",
              f"--seed-file={self.path('munged.seed')}"], self.env)
        for d in ("state", "spool"):
            (self.base / d).mkdir(exist_ok=True)
        node_line = _run(["slurmd", "-C"], self.env).stdout.splitlines()[0]
        self.node = node_line.split()[0].split("=", 1)[1]
        host = socket.gethostname().split(".")[0]
        ctl_port, d_port = _free_port(), _free_port()
        self.conf.write_text(f"""# written by tests/integration/slurm_cluster.py
ClusterName=ckpttest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket},cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MinJobAge=300
KillWait=5
OverTimeLimit=0
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
StateSaveLocation={self.path('state')}
SlurmdSpoolDir={self.path('spool')}
SlurmctldPidFile={self.path('slurmctld.pid')}
SlurmdPidFile={self.path('slurmd.pid')}
SlurmctldLogFile={self.path('slurmctld.log')}
SlurmdLogFile={self.path('slurmd.log')}
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES PriorityTier=1 MaxTime=INFINITE State=UP
PartitionName=high Nodes={self.node} PriorityTier=10 MaxTime=INFINITE State=UP
""")
        _run(["slurmctld", "-c"], self.env)  # -c: no state from an earlier run
        _run(["slurmd"], self.env)
        deadline = time.monotonic() + 60
        while True:
            r = _run(["sinfo", "-h", "-o", "%T"], self.env, check=False)
            if r.returncode == 0 and r.stdout.strip() == "idle":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Slurm did not become idle within 60 s (sinfo: {r.stdout.strip()!r} "
                                   f"{r.stderr.strip()!r}); see {self.base}/slurmctld.log and slurmd.log")
            time.sleep(0.1)
        self.start_s = time.monotonic() - t0

    def stop(self):
        """Cancel every job, wait for the queue to empty, then stop the
        daemons by their pid files (slurmd, slurmctld, munged)."""
        _run(["scancel", "--full", "-u", "root"], self.env, check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = _run(["squeue", "-h"], self.env, check=False)
            if r.returncode != 0 or not r.stdout.strip():
                break
            time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            pidfile = self.base / f"{name}.pid"
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # clients
    def cmd(self, *argv, env=None, timeout=30, check=True):
        return _run([str(a) for a in argv], dict(self.env, **(env or {})), timeout=timeout, check=check)

    def sbatch(self, script, cwd, env):
        """Submits script (a path); returns the job id."""
        r = subprocess.run(["sbatch", "--parsable", str(script)], cwd=cwd, env=dict(env, **self.env),
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"sbatch {script} failed: {r.stderr.strip()}")
        return r.stdout.strip().split(";")[0]

    def job(self, job_id):
        """`scontrol show job -o ID` as a dict ({} once it is gone)."""
        r = self.cmd("scontrol", "show", "job", "-o", job_id, check=False)
        if r.returncode != 0:
            return {}
        out = {}
        for word in r.stdout.split():
            if "=" in word:
                k, v = word.split("=", 1)
                out.setdefault(k, v)
        return out

    def state(self, job_id):
        return self.job(job_id).get("JobState", "GONE")

    def wait_state(self, job_id, states, timeout):
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(job_id)
            if st in states:
                return st
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)
