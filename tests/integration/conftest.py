"""Helpers for the ckpt integration tests.

Every scenario runs a deterministic program (tests/progs, tests/py) under
`ckpt start --interval 0 --dir DIR` in the background, in its own process
group, waits until the program has printed K lines (K random), asks for a
checkpoint with `ckpt checkpoint RUNDIR`, lets the program run a little
more, kills the whole process group with SIGKILL (a stand-in for a node
failure), runs `ckpt restart` with the same command line to completion and
compares everything with an uninterrupted run of the same program:

  * the first run's stdout is a prefix of the uninterrupted output;
  * the restarted run's stdout is exactly the tail of it, starting at a
    line at or after the point where the checkpoint was requested;
  * the two overlap or touch: no line is missing between them;
  * the exit statuses match;
  * application.log grew by exactly the restarted output.

Assumptions about ckpt, taken from its specification: the program's stdout
reaches the stdout of `ckpt start`/`ckpt restart` unchanged, and ckpt's own
messages go to stderr; everything ckpt starts stays in the process group of
`ckpt start`; with --dir DIR the run directory is the only new entry in DIR.

Environment: CKPT_BIN overrides build/bin/ckpt; CKPT_TEST_SEED fixes the
random checkpoint points (the seed in use is printed in the header).
"""

import concurrent.futures
import hashlib
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CKPT = Path(os.environ.get("CKPT_BIN", str(ROOT / "build" / "bin" / "ckpt")))
PROGS = ROOT / "build" / "tests"
PYDIR = ROOT / "tests" / "py"
PROG_SRC = ROOT / "tests" / "progs"
PYTHON = "/usr/bin/python3"
TEST_USER = "ckpttest"

SEED = int(os.environ.get("CKPT_TEST_SEED", str(time.time_ns() % 1_000_000)))
SESSION_TAG = f"ckpt-test-{os.getpid()}"

# Timeouts, in seconds. Nothing in this suite waits without one.
T_QUICK = 30        # a command that should return at once (errors, status)
T_CHECKPOINT = 60   # `ckpt checkpoint`
T_LINES = 60        # waiting for a program to print its next lines
T_RUN = 180         # a whole run, e.g. a restart to completion
T_TEST = 360        # a whole test
T_GONE = 10         # processes to vanish after SIGKILL of their group

# Test modules run in this order; with -x the cheapest failures come first.
MODULE_ORDER = ["test_cli", "test_bad_input", "test_c_programs", "test_python",
                "test_multi", "test_users", "test_robustness"]


def pytest_report_header(config):
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    return [f"ckpt: {CKPT}  running as {who}",
            f"ckpt tests: random seed {SEED} (CKPT_TEST_SEED={SEED} repeats this run's checkpoint points)"]


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        mod = item.module.__name__.rsplit(".", 1)[-1]
        return MODULE_ORDER.index(mod) if mod in MODULE_ORDER else len(MODULE_ORDER)
    items.sort(key=rank)  # stable: keeps the order inside a module


# ---------------------------------------------------------------- processes

def base_env(tag, home=None, extra=None):
    """A small, predictable environment: Debian's python3 first in PATH."""
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin",
        "HOME": home or os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "OPENBLAS_NUM_THREADS": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Marks every process of a test, so that stragglers can be found.
        "CKPT_TEST_TAG": tag,
    }
    if extra:
        env.update(extra)
    return env


def tagged_pids(tag):
    """Live processes whose environment carries CKPT_TEST_TAG=tag (or,
    with a trailing '*', a tag starting with it)."""
    prefix = tag.endswith("*")
    needle = ("CKPT_TEST_TAG=" + tag.rstrip("*")).encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:
            continue
        if any(e == needle or (prefix and e.startswith(needle)) for e in entries):
            found.append(int(d))
    return found


def describe_pid(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/status") as f:
            state = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("State:")), "?")
        return f"pid {pid} [{state}] {cmd}"
    except OSError:
        return f"pid {pid} (gone)"


def tagged_tags():
    """Tags of this session found on live processes."""
    needle = ("CKPT_TEST_TAG=" + SESSION_TAG + "-").encode()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    for e in f.read().split(b"\0"):
                        if e.startswith(needle):
                            yield e.split(b"=", 1)[1].decode()
            except OSError:
                pass


def kill_tagged(tag):
    for pid in tagged_pids(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def text_of(path):
    try:
        return Path(path).read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""


def tail(text, n=15):
    lines = text.rstrip("\n").splitlines()
    return "\n".join(lines[-n:]) if lines else "(empty)"


class Bg:
    """A command (ckpt start/restart) running in the background in a new
    session and process group, stdout and stderr going to files."""

    registry = []

    def __init__(self, argv, cwd, env, name, user=None, stdin=None):
        self.argv = [str(a) for a in argv]
        self.name = name
        self.out_path = Path(cwd) / f"{name}.stdout"
        self.err_path = Path(cwd) / f"{name}.stderr"
        kw = {}
        if user:
            kw = dict(user=user.uid, group=user.gid, extra_groups=[])
        with open(self.out_path, "wb") as o, open(self.err_path, "wb") as e, \
                open(stdin or os.devnull, "rb") as i:
            if user:
                os.chown(self.out_path, user.uid, user.gid)
                os.chown(self.err_path, user.uid, user.gid)
            self.proc = subprocess.Popen(self.argv, cwd=cwd, env=env, stdin=i,
                                         stdout=o, stderr=e, start_new_session=True, **kw)
        self.pgid = self.proc.pid
        self.started = time.monotonic()
        Bg.registry.append(self)

    def output(self):
        return text_of(self.out_path)

    def stderr(self):
        return text_of(self.err_path)

    def lines(self):
        return self.output().count("\n")

    def what(self):
        return f"`{' '.join(self.argv)}` ({self.name})"

    def report(self):
        return (f"{self.what()}\n--- its stdout (last lines):\n{tail(self.output())}"
                f"\n--- its stderr:\n{tail(self.stderr())}")

    def wait_lines(self, n, timeout=T_LINES):
        """Waits until the program has printed at least n lines."""
        deadline = time.monotonic() + timeout
        while True:
            have = self.lines()
            if have >= n:
                return have
            rc = self.proc.poll()
            if rc is not None:
                have = self.lines()
                if have >= n:
                    return have
                pytest.fail(f"{self.what()} exited with status {rc} after {have} lines, "
                            f"before the {n} lines the test waits for\n{self.report()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.what()} printed {have} lines in {timeout} s, "
                            f"the test waits for {n}\n{self.report()}")
            time.sleep(0.02)

    def finish(self, timeout=T_RUN):
        """Waits for the command to exit on its own; returns its status."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.what()} did not finish within {timeout} s (killed)\n{self.report()}")

    def kill(self):
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=T_GONE)
        except subprocess.TimeoutExpired:
            pass

    @classmethod
    def kill_all(cls):
        for bg in cls.registry:
            bg.kill()
        cls.registry.clear()


@dataclass
class User:
    name: str
    uid: int
    gid: int


def run_cmd(argv, env, cwd=None, timeout=T_QUICK, user=None, what=None):
    """Runs a command to completion with a timeout; returns CompletedProcess."""
    argv = [str(a) for a in argv]
    kw = {}
    if user:
        kw = dict(user=user.uid, group=user.gid, extra_groups=[])
    try:
        return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=timeout, start_new_session=True, **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what or ' '.join(argv)} hung: no exit within {timeout} s\n"
                    f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}")


# ------------------------------------------------------------------ programs

@dataclass
class Prog:
    """A test program: what follows ckpt's options, what runs it directly
    for the uninterrupted reference, and options ckpt needs for it."""
    name: str
    argv: list
    ref_argv: list
    opts: list = field(default_factory=list)
    # files the program writes: (path in the ckpt run, path in the reference run)
    outputs: list = field(default_factory=list)
    # a file given as stdin to every run (start, restart, reference); else /dev/null
    stdin: str = None

    def __str__(self):
        return self.name


def c_prog(name, *args):
    path = PROGS / name
    argv = [str(path), *map(str, args)]
    return Prog(name, argv, list(argv))


def py_prog(name, *args):
    script = str(PYDIR / f"{name}.py")
    args = [str(a) for a in args]
    return Prog(f"{name}.py", [script, *args], [PYTHON, script, *args], ["--python", PYTHON])


def require_python_modules(*mods):
    """Skips (loudly, with the reason) when /usr/bin/python3 lacks a module."""
    for m in mods:
        r = subprocess.run([PYTHON, "-c", f"import {m}"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(f"SKIPPED LOUDLY: {PYTHON} cannot import {m} ({last}); "
                        f"install python3-{m} (tests/deps.sh does as root)")


_ref_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
_ref_cache = {}


def _run_reference(argv, env, cwd, stdin=None):
    try:
        with open(stdin or os.devnull, "rb") as i:
            r = subprocess.run(argv, env=env, cwd=cwd, stdin=i, capture_output=True,
                               timeout=T_RUN, start_new_session=True)
    except subprocess.TimeoutExpired:
        return None, None, f"`{' '.join(argv)}` ran more than {T_RUN} s"
    return r.stdout.decode(errors="replace"), r.returncode, r.stderr.decode(errors="replace")


class Reference:
    """The uninterrupted run of a program, run directly (no ckpt), in the
    background while the test does its work; cached per command line."""

    def __init__(self, prog, env, cwd):
        self.key = (tuple(prog.ref_argv), prog.stdin)
        # its own tag: a test's clean-up must not kill a cached reference run
        env = dict(env, CKPT_TEST_TAG=f"{SESSION_TAG}-reference")
        if self.key not in _ref_cache or prog.outputs:
            _ref_cache[self.key] = _ref_pool.submit(_run_reference, prog.ref_argv, env, cwd,
                                                    prog.stdin)
        self.future = _ref_cache[self.key]
        self.prog = prog

    def result(self):
        out, rc, err = self.future.result(timeout=T_RUN + 30)
        if out is None or not out.endswith("\n") or "done" not in out.rsplit("\n", 2)[-2]:
            _ref_cache.pop(self.key, None)
        if out is None:
            pytest.fail(f"uninterrupted reference run failed: {err}")
        if not out.endswith("\n") or "done" not in out.rsplit("\n", 2)[-2]:
            pytest.fail(f"uninterrupted reference run of {self.prog} did not print its final line "
                        f"(status {rc})\nstdout:\n{tail(out)}\nstderr:\n{tail(err)}")
        return out, rc


# --------------------------------------------------------------- comparison

def _first_diff(got_lines, ref_lines, ref_start):
    for i, line in enumerate(got_lines):
        j = ref_start + i
        want = ref_lines[j] if j < len(ref_lines) else "(end of output)"
        if line != want:
            return (f"line {i + 1} of it is {line.rstrip()!r}\n"
                    f"    uninterrupted line {j + 1} is {want.rstrip()!r}")
    if ref_start + len(got_lines) < len(ref_lines):
        return (f"it stops after {len(got_lines)} lines, the uninterrupted output goes on with "
                f"{ref_lines[ref_start + len(got_lines)].rstrip()!r}")
    return "?"


def _locate(ref_lines, seg_lines):
    """Where seg_lines would start in ref_lines, judged by its first line
    (every line of the test programs names its step, so lines are unique)."""
    if not seg_lines:
        return None
    try:
        return ref_lines.index(seg_lines[0])
    except ValueError:
        return None


def check_chain(reference, segments, stopped_exactly=False, context=""):
    """Checks that output segments, in order, tile the reference output.

    segments: [(label, text, min_start_line)]; the first starts at line 0,
    each next one is the output of a restart, which must start at a line
    that is >= min_start_line (where its checkpoint was requested), >= where
    the previous restart started, and <= the end of the previous segment
    (no gap); the last must end where the reference ends. Returns the start
    line of each segment. stopped_exactly: the first segment must end
    exactly where the second starts (--stop-after-checkpoint).
    """
    ref_lines = reference.splitlines(keepends=True)
    starts = []
    prev_start, prev_end = 0, 0
    ctx = f"(random seed {SEED})" + (f"\n{context}" if context else "")
    for i, (label, text, min_start) in enumerate(segments):
        seg_lines = text.splitlines(keepends=True)
        last = i == len(segments) - 1
        if i == 0:
            start = 0
            if not reference.startswith(text):
                pytest.fail(f"{label}: its output is not a prefix of the uninterrupted output: "
                            f"{_first_diff(seg_lines, ref_lines, 0)} {ctx}")
        else:
            if not text:
                pytest.fail(f"{label}: printed nothing; the uninterrupted output has "
                            f"{len(ref_lines)} lines {ctx}")
            if last:
                start = len(ref_lines) - len(seg_lines)
                ok = reference.endswith(text) and start >= 0 and "".join(ref_lines[start:]) == text
            else:
                # a restart that was killed in turn: judge its complete lines
                text = text[:text.rfind("\n") + 1]
                seg_lines = text.splitlines(keepends=True)
                start = _locate(ref_lines, seg_lines)
                ok = start is not None and "".join(ref_lines[start:start + len(seg_lines)]) == text
            if not ok:
                where = _locate(ref_lines, seg_lines)
                if where is None:
                    pytest.fail(f"{label}: its first line {seg_lines[0].rstrip()!r} is not a line of "
                                f"the uninterrupted output {ctx}\n{label} output:\n{tail(text)}")
                why = _first_diff(seg_lines, ref_lines, where)
                pytest.fail(f"{label}: resumed at uninterrupted line {where + 1} but diverges: {why} {ctx}")
            if start < min_start:
                pytest.fail(f"{label}: resumed at line {start + 1}, but the checkpoint was taken only "
                            f"after {min_start} lines had been printed: it restarted from an earlier "
                            f"state (from scratch, or an older checkpoint) {ctx}")
            if start < prev_start:
                pytest.fail(f"{label}: resumed at line {start + 1}, before the previous restart "
                            f"(line {prev_start + 1}) {ctx}")
            if start > prev_end:
                pytest.fail(f"{label}: resumed at line {start + 1}, but the run before it only got to "
                            f"line {prev_end}: lines {prev_end + 1}..{start} are missing (a gap) {ctx}")
            if stopped_exactly and i == 1 and start != prev_end:
                pytest.fail(f"{label}: resumed at line {start + 1}, but with --stop-after-checkpoint "
                            f"the first run should have stopped right there; it printed {prev_end} "
                            f"lines {ctx}")
        starts.append(start)
        prev_start = start
        prev_end = start + text.count("\n")
    return starts


def restart_context(rc, bg, rundir):
    """What a failure message needs to tell about a restart."""
    return (f"ckpt restart exited with status {rc}: {bg.what()}\n--- its stderr:\n{tail(bg.stderr())}"
            f"\n--- execution.log:\n{tail(text_of(Path(rundir) / 'execution.log'), 8)}")


# ------------------------------------------------------------ run directory

def snapshot(path):
    """{relative path: bytes} of every regular file under path; symlinks
    by their target."""
    snap = {}
    base = Path(path)
    if not base.exists():
        return snap
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(base))
            if p.is_symlink():
                snap[rel] = b"symlink:" + os.readlink(p).encode()
            elif n in filenames and p.is_file():
                try:
                    snap[rel] = p.read_bytes()
                except OSError as e:
                    snap[rel] = f"unreadable: {e}".encode()
    return snap


def assert_unharmed(before, after, what):
    """Nothing that existed was removed or changed; *.log files may only
    have grown (a refused command may log that it refused)."""
    problems = []
    for rel, data in before.items():
        if rel not in after:
            problems.append(f"{rel} was removed")
        elif rel.endswith(".log"):
            if not after[rel].startswith(data):
                problems.append(f"{rel} was rewritten (not only appended to)")
        elif after[rel] != data:
            problems.append(f"{rel} changed (sha256 {hashlib.sha256(data).hexdigest()[:12]} -> "
                            f"{hashlib.sha256(after[rel]).hexdigest()[:12]})")
    if problems:
        pytest.fail(f"{what} harmed the run directory: " + "; ".join(problems))


def find_images(rundir):
    """The image files of the latest checkpoint of a run directory."""
    rundir = Path(rundir)
    latest = sorted((rundir / "images" / "latest").glob("*.img"))
    if latest:
        return latest
    found = sorted(p for p in rundir.rglob("*.img") if p.is_file())
    if not found:
        pytest.fail(f"no checkpoint image (*.img) under {rundir}: {sorted(snapshot(rundir))}")
    newest = max(p.stat().st_mtime for p in found)
    return [p for p in found if p.stat().st_mtime == newest]


def parse_generation(stdout):
    m = re.search(r"gen\w*\W{0,3}(\d+)", stdout, re.I) or re.search(r"\b(\d+)\b", stdout)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------- the harness

class Ckpt:
    """One test's ckpt: a work directory (cwd, captured outputs, files the
    programs use) and a --dir for run directories, optionally as another
    user, with a ckpt binary (build tree or an installed copy)."""

    _count = 0

    def __init__(self, base, rng, user=None, ckpt=None):
        Ckpt._count += 1
        self.tag = f"{SESSION_TAG}-{Ckpt._count}"
        self.base = Path(base)
        self.work = self.base / "work"
        self.runs = self.base / "runs"
        self.user = user
        self.ckpt = str(ckpt or CKPT)
        self.rng = rng
        for d in (self.work, self.runs):
            d.mkdir(parents=True, exist_ok=True)
            if user:
                os.chown(d, user.uid, user.gid)
        if user:
            os.chown(self.base, user.uid, user.gid)
        self.env = base_env(self.tag, home=str(self.work) if user else None)
        self.n = 0

    # commands
    def argv(self, cmd, prog, interval=0, opts=(), dir=None):
        a = [self.ckpt, cmd]
        if interval is not None:
            a += ["--interval", str(interval)]
        a += ["--dir", str(dir or self.runs), *opts, *prog.opts, *prog.argv]
        return a

    def _name(self, what):
        self.n += 1
        return f"{self.n:02d}-{what}"

    def start(self, prog, interval=0, opts=(), dir=None):
        return Bg(self.argv("start", prog, interval, opts, dir), self.work, self.env,
                  self._name("start"), self.user, prog.stdin)

    def restart_bg(self, prog, interval=0, dir=None, opts=()):
        return Bg(self.argv("restart", prog, interval, opts, dir), self.work, self.env,
                  self._name("restart"), self.user, prog.stdin)

    def restart(self, prog, interval=0, dir=None, timeout=T_RUN, opts=()):
        """Runs `ckpt restart` to completion; returns (stdout, status, Bg)."""
        bg = self.restart_bg(prog, interval, dir, opts)
        rc = bg.finish(timeout)
        self.assert_gone(f"after {bg.what()} exited")
        return bg.output(), rc, bg

    def cmd(self, *args, timeout=T_QUICK):
        return run_cmd([self.ckpt, *args], self.env, cwd=self.work, timeout=timeout, user=self.user,
                       what=f"ckpt {' '.join(map(str, args))}")

    def checkpoint(self, rundir):
        """`ckpt checkpoint RUNDIR`: must succeed and print a generation."""
        r = self.cmd("checkpoint", rundir, timeout=T_CHECKPOINT)
        if r.returncode != 0:
            pytest.fail(f"ckpt checkpoint {rundir} failed with status {r.returncode}\n"
                        f"stdout: {r.stdout!r}\nstderr: {r.stderr!r}\n"
                        f"execution.log:\n{tail(text_of(Path(rundir) / 'execution.log'))}")
        gen = parse_generation(r.stdout)
        assert gen is not None, f"ckpt checkpoint printed no generation number: stdout {r.stdout!r}"
        return gen

    def rundir(self, within=None, timeout=T_QUICK, proc=None):
        """The one run directory in --dir (waits for it to appear)."""
        d = Path(within or self.runs)
        deadline = time.monotonic() + timeout
        while True:
            entries = [p for p in d.iterdir() if p.is_dir()]
            if len(entries) == 1:
                return entries[0]
            if len(entries) > 1:
                pytest.fail(f"expected one run directory in {d}, found {[p.name for p in entries]}")
            if proc is not None and proc.proc.poll() is not None:
                pytest.fail(f"no run directory in {d}; {proc.what()} exited with status "
                            f"{proc.proc.returncode}\n{proc.report()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no run directory appeared in {d} within {timeout} s")
            time.sleep(0.02)

    def reference(self, prog):
        return Reference(prog, self.env, self.work)

    def dirs(self, *names):
        """New directories in the work directory, the test user's if any."""
        made = [self.work / n for n in names]
        for d in made:
            d.mkdir()
            if self.user:
                os.chown(d, self.user.uid, self.user.gid)
        return made

    # failure simulation
    def assert_gone(self, when):
        """No process of this test may outlive the group: everything ckpt
        starts must stay in the process group of ckpt start."""
        deadline = time.monotonic() + T_GONE
        while True:
            left = tagged_pids(self.tag)
            if not left:
                return
            if time.monotonic() > deadline:
                info = "; ".join(describe_pid(p) for p in left)
                kill_tagged(self.tag)
                pytest.fail(f"processes still alive {when}: {info} (they escaped the process group "
                            f"of ckpt, or ignore SIGKILL)")
            time.sleep(0.05)

    def crash(self, bg):
        """SIGKILL to the whole process group of bg: a node failure."""
        bg.kill()
        self.assert_gone(f"{T_GONE} s after SIGKILL of the process group of {bg.what()}")

    def checkpoint_and_finish(self, prog, k_range=(3, 15)):
        """start -> K lines -> checkpoint -> the program runs on to its end:
        its output and exit status must be exactly an uninterrupted run's.
        Returns the run directory."""
        ref = self.reference(prog)
        run = self.start(prog)
        run.wait_lines(self.rng.randint(*k_range))
        rundir = self.rundir(proc=run)
        gen = self.checkpoint(rundir)
        rc = run.finish()
        expected, ref_rc = ref.result()
        check_chain(expected, [(f"run with a checkpoint at generation {gen}", run.output(), 0)])
        assert run.output() == expected, f"output incomplete\n{run.report()}"
        assert rc == ref_rc, f"exit status {rc}, the uninterrupted run's {ref_rc}\n{run.report()}"
        return rundir

    def checkpoint_then_crash(self, prog, k_range=(3, 10)):
        """start -> K lines -> checkpoint -> 2 more lines -> SIGKILL of the
        group. Returns (rundir, first output, lines seen at the checkpoint)."""
        run = self.start(prog)
        run.wait_lines(self.rng.randint(*k_range))
        rundir = self.rundir(proc=run)
        seen = run.lines()
        self.checkpoint(rundir)
        run.wait_lines(run.lines() + 2)
        self.crash(run)
        return rundir, run.output(), seen

    def twice_then_restart(self, prog):
        """Two checkpoints, SIGKILL, restart: it resumes from the second
        (latest) one, exactly."""
        ref = self.reference(prog)
        run = self.start(prog)
        run.wait_lines(self.rng.randint(3, 12))
        rundir = self.rundir(proc=run)
        gen1 = self.checkpoint(rundir)
        run.wait_lines(run.lines() + self.rng.randint(3, 12))
        seen = run.lines()
        gen2 = self.checkpoint(rundir)
        assert gen2 > gen1, f"second checkpoint has generation {gen2}, the first {gen1}"
        run.wait_lines(run.lines() + 2)
        self.crash(run)
        first = run.output()
        out, rc, bg = self.restart(prog)
        expected, ref_rc = ref.result()
        check_chain(expected, [("first run", first, 0),
                               (f"restart (latest checkpoint after {seen} lines)", out, seen)],
                    context=restart_context(rc, bg, rundir))
        assert rc == ref_rc, (f"ckpt restart exited with status {rc}, the uninterrupted program "
                              f"with {ref_rc}")

    # the standard scenario
    def cycle(self, prog, k_range=(3, 20), more_lines=2, final_check=None, opts=(),
              before_restart=None):
        """start -> wait K lines -> checkpoint -> run on -> SIGKILL ->
        (before_restart(), what changes while the program is down) -> restart."""
        ref = self.reference(prog)
        run = self.start(prog, opts=opts)
        k = self.rng.randint(*k_range)
        run.wait_lines(k)
        rundir = self.rundir(proc=run)
        seen = run.lines()
        self.checkpoint(rundir)
        if more_lines:
            run.wait_lines(run.lines() + more_lines)
        time.sleep(self.rng.uniform(0, 0.2))
        if run.proc.poll() is not None:
            pytest.fail(f"the program finished before the test could kill it (status "
                        f"{run.proc.returncode}); give it more steps\n{run.report()}")
        self.crash(run)
        first = run.output()
        log_before = text_of(rundir / "application.log")
        if before_restart:
            before_restart()
        out, rc, rbg = self.restart(prog)
        expected, ref_rc = ref.result()
        check_chain(expected, [("first run (ckpt start)", first, 0),
                               (f"restarted run (ckpt restart, checkpoint after {seen} lines)", out, seen)],
                    context=restart_context(rc, rbg, rundir))
        assert rc == ref_rc, (f"ckpt restart exited with status {rc}, the uninterrupted program "
                              f"with {ref_rc}\n{rbg.report()}")
        self.check_logs(rundir, log_before, out, rbg.stderr())
        return rundir

    def stop_cycle(self, prog, interval=0, k_range=(3, 20)):
        """start --stop-after-checkpoint -> (wait K lines -> checkpoint, or
        with an interval, the first periodic checkpoint) -> the program
        stops by itself -> restart. The first run must end exactly where
        the restart resumes: nothing runs after the checkpoint."""
        ref = self.reference(prog)
        run = self.start(prog, interval=interval, opts=["--stop-after-checkpoint"])
        seen = 1
        if not interval:
            run.wait_lines(self.rng.randint(*k_range))
            rundir = self.rundir(proc=run)
            seen = run.lines()
            self.checkpoint(rundir)
        else:
            run.wait_lines(1)
        run.finish(T_RUN)
        rundir = self.rundir()
        self.crash(run)
        first = run.output()
        log_before = text_of(rundir / "application.log")
        out, rc, rbg = self.restart(prog)
        expected, ref_rc = ref.result()
        check_chain(expected, [("first run (ckpt start --stop-after-checkpoint)", first, 0),
                               ("restarted run (ckpt restart)", out, seen)], stopped_exactly=True,
                    context=restart_context(rc, rbg, rundir))
        assert rc == ref_rc, (f"ckpt restart exited with status {rc}, the uninterrupted program "
                              f"with {ref_rc}\n{rbg.report()}")
        self.check_logs(rundir, log_before, out, rbg.stderr())
        return rundir

    def check_logs(self, rundir, log_before, restart_out, restart_err=""):
        """application.log grew by the restarted program's output (its
        stdout, interleaved with whatever it wrote to stderr, which reaches
        the stderr of ckpt restart)."""
        log_after = text_of(rundir / "application.log")
        ok = log_after == log_before + restart_out
        if not ok and log_after.startswith(log_before):
            out_lines = restart_out.splitlines(keepends=True)
            err_lines = set(restart_err.splitlines(keepends=True))
            i = 0
            ok = True
            for line in log_after[len(log_before):].splitlines(keepends=True):
                if i < len(out_lines) and line == out_lines[i]:
                    i += 1
                elif line not in err_lines:
                    ok = False
            ok = ok and i == len(out_lines)
        assert ok, (
            "application.log should have grown by exactly the restarted program's output "
            f"(appended across restarts)\nbefore restart it had {log_before.count(chr(10))} lines, "
            f"the restart printed {restart_out.count(chr(10))}, now it has {log_after.count(chr(10))}:"
            f"\n{tail(log_after)}")
        ex = text_of(rundir / "execution.log")
        assert re.search(r"restart", ex, re.I), f"execution.log does not mention the restart:\n{tail(ex)}"
        # the restart worked: nothing may call it failed, and a program
        # that then exited by itself is recorded as finished (ckpt run
        # must not run it again)
        assert not re.search(r"restart from generation \d+ failed", ex), (
            f"execution.log calls a restart that worked failed:\n{tail(ex)}")
        assert re.search(r"restored from generation \d+: pid \d+ \(.*\) is running again, "
                         r"\d+\.\d\d s after the restorer started", ex), (
            f"execution.log does not say when the restored program ran again:\n{tail(ex)}")
        if "exited with status" in ex.splitlines()[-1]:
            assert (rundir / "finished").exists(), (
                f"the restarted program exited by itself but the run is not marked "
                f"finished:\n{tail(ex)}")


# ----------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def _per_test_deadline(request):
    """No test may hang: fail it after T_TEST seconds."""
    def on_alarm(signum, frame):
        pytest.fail(f"test ran longer than {T_TEST} s (deadline of the suite)")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(T_TEST)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    Bg.kill_all()
    for tag in set(tagged_tags()):
        if not tag.endswith("-reference"):
            kill_tagged(tag)


@pytest.fixture(scope="session", autouse=True)
def _built():
    missing = [p for p in (CKPT, PROGS / "counter") if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"not built: {', '.join(map(str, missing))} (run `make all` first)", pytrace=False)
    yield
    kill_tagged(SESSION_TAG + "-*")
    _ref_pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def rng(request):
    return random.Random(f"{SEED}/{request.node.nodeid}")


@pytest.fixture
def ck(tmp_path, rng):
    return Ckpt(tmp_path, rng)


@pytest.fixture(scope="session")
def static_binary(tmp_path_factory):
    """counter.c linked statically: ckpt must refuse it."""
    out = tmp_path_factory.mktemp("static") / "counter_static"
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        pytest.skip("SKIPPED LOUDLY: no C compiler to build the static test binary")
    r = subprocess.run([gcc, "-static", "-O2", "-o", str(out), str(PROG_SRC / "counter.c")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot link a static binary (libc6-dev's libc.a missing?): "
                    f"{r.stderr.strip()[-300:]}")
    return out


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """ckpt installed with `make install PREFIX=...` into a world-readable
    directory (the checkout itself may not be readable by other users).
    With CKPT_BIN set, that binary is copied instead. Returns the prefix."""
    prefix = Path(tempfile.mkdtemp(prefix="ckpt-prefix-", dir="/tmp"))
    os.chmod(prefix, 0o755)
    if "CKPT_BIN" in os.environ:
        (prefix / "bin").mkdir()
        shutil.copy2(CKPT, prefix / "bin" / "ckpt")
        libdir = CKPT.parent.parent / "lib" / "ckpt"
        if libdir.is_dir():
            shutil.copytree(libdir, prefix / "lib" / "ckpt")
    else:
        r = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "install",
                            f"PREFIX={prefix}"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.fail(f"make install PREFIX={prefix} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    # the test programs, for other users
    share = prefix / "share" / "ckpt-tests"
    (share / "progs").mkdir(parents=True)
    (share / "py").mkdir()
    for p in PROGS.iterdir():
        if p.is_file() and os.access(p, os.X_OK):
            shutil.copy2(p, share / "progs" / p.name)
    for p in PYDIR.glob("*.py"):
        shutil.copy2(p, share / "py" / p.name)
    for dirpath, dirnames, filenames in os.walk(prefix):
        for n in dirnames:
            os.chmod(os.path.join(dirpath, n), 0o755)
        for n in filenames:
            p = os.path.join(dirpath, n)
            os.chmod(p, 0o755 if os.access(p, os.X_OK) else 0o644)
    yield prefix
    shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="session")
def test_user():
    """The unprivileged user ckpttest (created when missing)."""
    if os.geteuid() != 0:
        pytest.skip(f"SKIPPED LOUDLY: not root, so the tests cannot switch to user {TEST_USER}; "
                    f"the rest of the suite already ran unprivileged (as uid {os.geteuid()}). "
                    f"Run `make check` as root to cover both.")
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        r = subprocess.run(["useradd", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", TEST_USER],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            pytest.fail(f"useradd {TEST_USER} failed: {r.stderr.strip()}")
        pw = pwd.getpwnam(TEST_USER)
    return User(TEST_USER, pw.pw_uid, pw.pw_gid)


@pytest.fixture
def user_ck(test_user, installed, rng):
    """A Ckpt running everything as ckpttest in a directory it owns, with
    the installed copy of ckpt."""
    base = Path(tempfile.mkdtemp(prefix="ckpt-user-", dir="/tmp"))
    os.chmod(base, 0o755)
    c = Ckpt(base, rng, user=test_user, ckpt=installed / "bin" / "ckpt")
    c.share = installed / "share" / "ckpt-tests"
    yield c
    Bg.kill_all()
    kill_tagged(c.tag)
    shutil.rmtree(base, ignore_errors=True)


def warn(msg):
    warnings.warn(msg)
