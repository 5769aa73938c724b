#!/usr/bin/python3
"""Checkpoint/restart benchmark for ckpt: see bench/README.md.

For every case (a C program holding N MiB, a Python process with torch
holding 256 MiB) and every variant of ckpt's options that this build has,
it runs RUNS times: start the program under `ckpt start --interval 0`, take a
full checkpoint, let 1% of the pages change, take a second checkpoint, kill
the process group, then measure in the same run the disk's own figures (dd
conv=fsync writing as many bytes as the image holds, a cold read of the
image) and `ckpt restart` to the program's next output line. It prints the
medians next to the targets of the performance issue and writes the same
report to bench/results/<date>.txt.
"""
import argparse
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CKPT = Path(os.environ.get("CKPT") or ROOT / "build/bin/ckpt")
HOLD = ROOT / "build/bench/hold"
MEMCOST = ROOT / "build/bench/memcost"
HOLD_TORCH = ROOT / "bench/hold_torch.py"
PYTHON = "/usr/bin/python3"
MiB = 1 << 20
GiB = 1 << 30

# Variants: (name, options given to ckpt start, option that must appear in
# `ckpt start --help` for the variant to exist).
VARIANTS = {
    "default": ([], None),
    "no-cow": (["--no-cow"], "--no-cow"),
    "compress-none": (["--compress", "none"], "--compress"),
    "compress-fast": (["--compress", "fast"], "--compress"),
    "compress-max": (["--compress", "max"], "--compress"),
}

CKPT_LINE = re.compile(r"checkpoint generation (\d+): (.*)")

live_groups = set()


class Fail(Exception):
    pass


# ------------------------------------------------------------------ helpers

def now():
    return time.monotonic()   # CLOCK_MONOTONIC, as the programs' t= stamps


def can_drop_caches():
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches(enabled):
    os.sync()
    if enabled:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def files_under(path):
    """A generation's own files: its images and manifest, not files/ (hard
    links to the program's files, which cost no space and are no image)."""
    out = []
    for dirpath, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d != "files"]
        out += [os.path.join(dirpath, n) for n in sorted(names)]
    return out


def du_bytes(paths):
    """Allocated bytes (what du reports) and apparent bytes of the files."""
    alloc = apparent = 0
    for p in paths:
        st = os.lstat(p)
        alloc += st.st_blocks * 512
        apparent += st.st_size
    return alloc, apparent


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    live_groups.discard(pgid)


class Lines:
    """Reads a child's stdout in a thread, timestamping every line."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []            # (time read, text)
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for raw in self.proc.stdout:
            t = now()
            with self.cond:
                self.lines.append((t, raw.decode(errors="replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pred, timeout, start=0):
        """Index of the first line from `start` on that satisfies pred."""
        deadline = now() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i][1]):
                        return i
                    i += 1
                if self.eof:
                    raise Fail("the program's output ended (it exited) before the expected line")
                left = deadline - now()
                if left <= 0:
                    raise Fail(f"no expected output line within {timeout:.0f} s")
                self.cond.wait(left)

    def snapshot(self):
        with self.cond:
            return list(self.lines)


def step_of(text):
    m = re.match(r"step (\d+) ", text)
    return int(m.group(1)) if m else None


def parse_exec_log(rundir, gen):
    """pause (ms), bytes and total (ms) of generation `gen` from execution.log."""
    text = (Path(rundir) / "execution.log").read_text(errors="replace")
    for line in text.splitlines():
        m = CKPT_LINE.search(line)
        if not m or int(m.group(1)) != gen:
            continue
        rest = m.group(2)
        if "failed" in rest:
            raise Fail(f"execution.log: {line.strip()}")
        out = {}
        b = re.search(r"(\d+) bytes", rest)
        p = re.search(r"pause (\d+(?:\.\d+)?) (ms|us|s)\b", rest)
        t = re.search(r"(\d+(?:\.\d+)?) ms total", rest)
        if b:
            out["bytes_log"] = int(b.group(1))
        if p:
            out["pause_ms"] = float(p.group(1)) * {"ms": 1, "us": 0.001, "s": 1000}[p.group(2)]
        if t:
            out["total_log_ms"] = float(t.group(1))
        return out
    raise Fail(f"execution.log has no line for checkpoint generation {gen}")


def stamp(text):
    m = re.search(r" t=(\d+(?:\.\d+)?)$", text)
    return float(m.group(1)) / 1000 if m else None


def without_stamp(text):
    return re.sub(r" t=\S+$", "", text)


def output_gap(lines, t0, t1):
    """Longest time between two steps of the program around [t0, t1], from
    the program's own clock stamps (the same CLOCK_MONOTONIC as ours)."""
    ts = sorted(stamp(text) for _, text in lines if stamp(text) is not None)
    before = [t for t in ts if t < t0]
    window = ([before[-1]] if before else []) + [t for t in ts if t0 <= t <= t1 + 1.0]
    gaps = [b - a for a, b in zip(window, window[1:])]
    return max(gaps) * 1000 if gaps else None


class RandomSource:
    """Random bytes for dd to copy, kept in memory (/dev/shm: drop_caches
    does not evict it), so that dd measures the writing only."""

    def __init__(self, workdir):
        shm = Path("/dev/shm")
        self.in_shm = shm.is_dir() and os.access(shm, os.W_OK)
        base = shm if self.in_shm else Path(workdir)
        self.path = base / f"ckpt-bench-random-{os.getpid()}"
        self.size = 0

    def ensure(self, size):
        if size > self.size:
            size = -(-size // (256 * MiB)) * 256 * MiB
            if self.in_shm:
                st = os.statvfs("/dev/shm")
                if st.f_bavail * st.f_frsize < size - self.size + GiB:
                    self.in_shm = False
                    self.remove()
                    self.path = Path(ARGS.dir) / self.path.name
                    self.size = 0
            with open("/dev/urandom", "rb") as src, open(self.path, "ab") as dst:
                left = size - self.size
                while left > 0:
                    chunk = src.read(min(left, 16 * MiB))
                    dst.write(chunk)
                    left -= len(chunk)
            self.size = size
        if not self.in_shm:  # warm it: the time to read it is not dd's writing
            subprocess.run(["cat", str(self.path)], stdout=subprocess.DEVNULL, check=True)

    def remove(self):
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


# ------------------------------------------------------------------- cases

class Case:
    def __init__(self, kind, mib, step_ms):
        self.kind, self.mib = kind, mib
        args = [str(mib), "--dirty", "--step-ms", str(step_ms)]
        if kind == "hold":
            self.name = f"hold {mib} MiB" if mib < 1024 else f"hold {mib // 1024} GiB"
            self.desc = f"C program holding {mib} MiB: half random, half small integers"
            self.opts, self.argv = [], [str(HOLD), *args]
        else:
            self.name = f"torch {mib} MiB"
            self.desc = f"/usr/bin/python3, torch imported, {mib} MiB of tensors: half torch.rand, half 0.5"
            self.opts, self.argv = ["--python", PYTHON], [str(HOLD_TORCH), *args]
        self.slug = self.name.replace(" ", "-")


def checkpoint(rundir, gen, lines):
    t0 = now()
    r = subprocess.run([str(CKPT), "checkpoint", str(rundir)], capture_output=True, text=True,
                       timeout=1800)
    t1 = now()
    if r.returncode != 0:
        raise Fail(f"ckpt checkpoint (generation {gen}) exited {r.returncode}: "
                   f"{(r.stderr or r.stdout).strip()[-300:]}")
    out = {"wall_s": t1 - t0}
    out.update(parse_exec_log(rundir, gen))
    gendir = Path(rundir) / "images" / f"gen-{gen:06d}"
    if not gendir.is_dir():
        raise Fail(f"{gendir} does not exist after the checkpoint")
    out["image_du"], out["image_bytes"] = du_bytes(files_under(gendir))
    out["gap_ms"] = None
    time.sleep(0.3)                   # a few more output lines after the end
    out["gap_ms"] = output_gap(lines.snapshot(), t0, t1)
    out["t0"], out["t1"] = t0, t1
    return out


def spawn(argv, err, env):
    """A ckpt command in a session of its own (killed as a group), its
    stdout read by Lines, its stderr into the file err."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=env)
    live_groups.add(p.pid)
    return p


def restart_once(d, case, env, opts, lo, original):
    """ckpt restart (with opts) of the run in d, caches dropped, to the
    program's first output line; killed then. Returns (seconds, check)."""
    drop_caches(ARGS.drop_caches)
    name = "restart" + "".join(o.strip("-") for o in opts)
    err = open(d / f"{name}.stderr", "wb")
    argv = [str(CKPT), "restart", "--interval", "0", "--dir", str(d), *opts, *case.opts,
            *case.argv]
    t0 = now()
    p = spawn(argv, err, env)
    try:
        lines = Lines(p)
        try:
            i = lines.wait_for(lambda s: step_of(s) is not None, 600)
        except Fail as e:
            raise Fail(f"{name}: {e}; ckpt restart said: "
                       f"{(d / f'{name}.stderr').read_text()[-300:].strip()}")
        t1, first = lines.snapshot()[i]
        first = without_stamp(first)
    finally:
        kill_group(p.pid)
        p.wait()
        err.close()
    s = step_of(first)
    if s < lo or (s > lo + 1 and original.get(s - 1) is None):
        check = f"{name}: resumed at step {s}, expected {lo} or {lo + 1}"
    elif s in original and original[s] != first:
        check = f"{name}: step {s} differs from the original run: {first!r} != {original[s]!r}"
    else:
        check = "ok" if s in original else "ok (step not reached by the original run)"
    return t1 - t0, check


def run_once(case, variant, idx, feats, src):
    vopts = VARIANTS[variant][0]
    d = Path(ARGS.dir) / f"{case.slug}-{variant}-{idx}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    res = {}
    os.sync()

    err = open(d / "start.stderr", "wb")
    argv = [str(CKPT), "start", "--interval", "0", "--dir", str(d), *vopts, *case.opts, *case.argv]
    p = spawn(argv, err, env)
    try:
        lines = Lines(p)
        try:
            i = lines.wait_for(lambda s: s.startswith("ready"), 600)
            m = re.search(r"rss_kib=(\d+)", lines.snapshot()[i][1])
            res["rss"] = int(m.group(1)) * 1024 if m else case.mib * MiB
            lines.wait_for(lambda s: step_of(s) == 3, 60, i)
        except Fail as e:
            raise Fail(f"{e}; ckpt start said: {(d / 'start.stderr').read_text()[-300:].strip()}")
        rundirs = [x for x in d.iterdir() if x.is_dir()]
        if len(rundirs) != 1:
            raise Fail(f"expected one run directory in {d}, found {len(rundirs)}")
        rundir = rundirs[0]

        res["c1"] = checkpoint(rundir, 1, lines)
        # --dirty rewrites the same 1% of the pages before every step.
        n = len(lines.snapshot())
        lines.wait_for(lambda s: step_of(s) is not None, 30, n)
        time.sleep(0.5)
        res["c2"] = checkpoint(rundir, 2, lines)
        time.sleep(0.2)
        seen = lines.snapshot()
    finally:
        kill_group(p.pid)
        p.wait()
        err.close()
    # Steps printed before the second checkpoint began and after it ended:
    # the restored program must go on from a step between them.
    before = [step_of(t) for ts, t in seen if ts < res["c2"]["t0"] and step_of(t)]
    original = {step_of(t): without_stamp(t) for _, t in seen if step_of(t)}
    lo = before[-1] + 1 if before else 1

    # The machine's own figures, in the same run: dd writing as many bytes
    # as the full image holds, with fsync, to the same directory...
    nbytes = res["c1"]["image_bytes"]
    src.ensure(nbytes)
    os.sync()
    out = d / "dd.out"
    t0 = now()
    subprocess.run(["dd", f"if={src.path}", f"of={out}", "bs=1M", f"count={nbytes}",
                    "iflag=count_bytes", "conv=fsync", "status=none"], check=True)
    res["dd_s"] = now() - t0
    res["dd_bytes"] = nbytes
    out.unlink()

    # ... and a cold read of the image(s) the restart reads.
    gens = sorted((rundir / "images").glob("gen-*"))
    read = files_under(gens[-1]) if not feats["incremental"] else [f for g in gens for f in files_under(g)]
    res["read_bytes"] = du_bytes(read)[1]
    drop_caches(ARGS.drop_caches)
    t0 = now()
    for f in read:
        subprocess.run(["dd", f"if={f}", "of=/dev/null", "bs=1M", "status=none"], check=True)
    res["cold_read_s"] = now() - t0

    # Restart to the program's next output line, caches dropped; then the
    # same with --lazy (the program runs before its memory is read).
    res["restart_s"], res["check"] = restart_once(d, case, env, [], lo, original)
    if feats["lazy"]:
        res["lazy_s"], res["lazy_check"] = restart_once(d, case, env, ["--lazy"], lo, original)
    shutil.rmtree(d, ignore_errors=True)
    return res


# ----------------------------------------------------------------- report

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fs(v):
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def fms(v):
    return "n/a" if v is None else f"{v:.0f} ms"


def fmib(v):
    return "n/a" if v is None else f"{v / MiB:.1f} MiB"


def fr(v):
    return "n/a" if v is None else f"{v:.2f}"


def longest(*values):
    """The largest of the values measured (None: not measured)."""
    known = [v for v in values if v is not None]
    return max(known) if known else None


def verdict(value, limit, less_than=False):
    if value is None:
        return "n/a"
    ok = value < limit if less_than else value <= limit
    return "ok" if ok else "MISS"


def report_case(case, variant, runs, feats, emit):
    title = f"== {case.name} [{variant}] ({case.desc})"
    emit(title)
    good = [r for r in runs if "error" not in r]
    for k, r in enumerate(runs, 1):
        if "error" in r:
            emit(f"   run {k} FAILED: {r['error']}")
    if not good:
        emit("")
        return
    g = lambda *path: med([_get(r, path) for r in good])  # noqa: E731
    rss = g("rss")
    pause_limit = 10 + 20 * rss / GiB if rss else None
    c1, c2 = g("c1", "wall_s"), g("c2", "wall_s")
    dd = g("dd_s")
    ddb = g("dd_bytes")
    held = case.mib * MiB
    ratio_dd = med([r["c1"]["wall_s"] / r["dd_s"] for r in good])
    ratio_held = med([r["c1"]["wall_s"] / (r["dd_s"] * held / r["dd_bytes"]) for r in good])
    ratio_c2 = med([r["c2"]["wall_s"] / r["c1"]["wall_s"] for r in good])
    ratio_rs = med([r["restart_s"] / r["cold_read_s"] for r in good if r["cold_read_s"] > 0])
    second = ("incremental" if feats["incremental"]
              else "2nd, FULL: this build has no incremental checkpoints")
    compressing = feats["compress"] and variant != "compress-none"
    w = 34
    emit(f"   median of {len(good)} run(s); resident at ready: {fmib(rss)}")
    emit(f"   {'':{w}} {'full checkpoint':>16}   {'after 1% changed':>16}   ({second})")
    rows = [
        ("program pause (execution.log)", fms(g("c1", "pause_ms")), fms(g("c2", "pause_ms")),
         "no target without copy-on-write" if variant == "no-cow" else
         f"target <= {pause_limit:.0f} ms (10 ms + 20 ms/GiB resident): "
         f"{verdict(longest(g('c1', 'pause_ms'), g('c2', 'pause_ms')), pause_limit)}"
         if pause_limit else ""),
        ("longest step seen by the program", fms(g("c1", "gap_ms")), fms(g("c2", "gap_ms")),
         f"(its own clock; a step is {ARGS.step_ms} ms + its work when not stopped)"),
        ("checkpoint wall time", fs(c1), fs(c2),
         f"2nd/full {fr(ratio_c2)}, target <= 0.10 (incremental): "
         + (verdict(ratio_c2, 0.10) if feats["incremental"] else "n/a, no incremental")),
        ("bytes written (execution.log)", fmib(g("c1", "bytes_log")), fmib(g("c2", "bytes_log")), ""),
        ("image size (du)", fmib(g("c1", "image_du")), fmib(g("c2", "image_du")),
         (f"target < 400 MiB: {verdict(g('c1', 'image_du'), 400 * MiB, True)}"
          if case.kind == "torch" else "")),
        ("dd conv=fsync, same bytes", fs(dd), "",
         f"{fmib(ddb)} at {ddb / dd / 1e6:.0f} MB/s" if dd else ""),
        ("checkpoint / dd, same bytes", fr(ratio_dd), "",
         f"target <= 1.25 for incompressible data: {verdict(ratio_dd, 1.25)}" if not compressing
         else "(compressed: the 1.25 target applies to [compress-none])"),
        ("checkpoint / dd of held data", fr(ratio_held), "",
         f"dd scaled to {fmib(held)}; target < 1 when compressing: {verdict(ratio_held, 1, True)}"
         if compressing else f"dd scaled to {fmib(held)}"),
        ("cold read of the image", fs(g("cold_read_s")), "",
         f"{fmib(g('read_bytes'))}" + ("" if ARGS.drop_caches else ", caches NOT dropped")),
        ("restart to next output line", "", fs(g("restart_s")), "from the 2nd checkpoint"),
        ("restart / cold read", "", fr(ratio_rs), f"target <= 1.5: {verdict(ratio_rs, 1.5)}"),
    ]
    if feats["lazy"]:
        rows.append(("lazy restart to next output line", "", fs(g("lazy_s")),
                     f"restart --lazy; target < 0.3 s: {verdict(g('lazy_s'), 0.3, True)}"))
    for name, a, b, note in rows:
        emit(f"   {name:{w}} {a:>16}   {b:>16}   {note}".rstrip())
    if not feats["lazy"]:
        emit("   lazy restart: n/a (no lazy restart in this build)")
    checks = [r["check"] for r in good] + [r["lazy_check"] for r in good if "lazy_check" in r]
    bad = [c for c in checks if c != "ok" and not c.startswith("ok ")]
    emit(f"   restored output: {len(checks) - len(bad)}/{len(checks)} runs went on with the same "
         f"output as the original run" + ("".join(f"; {c}" for c in bad)))
    emit("   per run: " + " | ".join(
        f"pause {fms(r['c1'].get('pause_ms'))}/{fms(r['c2'].get('pause_ms'))} "
        f"ckpt {fs(r['c1']['wall_s'])}/{fs(r['c2']['wall_s'])} dd {fs(r['dd_s'])} "
        f"read {fs(r['cold_read_s'])} restart {fs(r['restart_s'])}"
        + (f" lazy {fs(r['lazy_s'])}" if "lazy_s" in r else "") for r in good))
    emit("")


def _get(r, path):
    for k in path:
        r = r.get(k) if isinstance(r, dict) else None
    return r


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine_lines():
    out = []
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = avail = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
        elif line.startswith("MemAvailable:"):
            avail = int(line.split()[1]) * 1024
    df = subprocess.run(["df", "-hT", ARGS.dir], capture_output=True, text=True).stdout.splitlines()
    git = subprocess.run(["git", "-C", str(CKPT.resolve().parent), "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip() or "not in a git tree"
    ver = subprocess.run([str(CKPT), "--version"], capture_output=True, text=True).stdout.strip()
    out.append(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    out.append(f"machine: {os.cpu_count()} CPUs ({cpu}), {mem / GiB:.1f} GiB memory "
               f"({avail / GiB:.1f} available), kernel {os.uname().release}")
    out.append(f"bench dir: {ARGS.dir} on {df[-1].split()[0] if len(df) > 1 else '?'} "
               f"({df[-1].split()[1] if len(df) > 1 else '?'})")
    out.append(f"ckpt: {CKPT} ({ver}), built from {git}")
    out.append(f"load average at start: {loadavg()} (other work on the machine skews the figures)")
    return out


def memory_costs():
    """The machine's own cost of touching memory (bench/memcost.c), which
    bounds a copy-on-write checkpoint (every page read in a fork()ed
    child) and a restart (every page faulted in fresh)."""
    r = subprocess.run([str(MEMCOST), "256"], capture_output=True, text=True)
    got = dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)
    if r.returncode != 0 or not {"fresh", "child_read", "parent_read"} <= got.keys():
        return f"memory costs: memcost failed: {(r.stderr or r.stdout).strip()[-200:]}"
    extra = ""
    if {"populated", "child_sparse_us"} <= got.keys():
        extra = (f"; fresh memory populated by the kernel (MADV_POPULATE_WRITE) {got['populated']}; "
                 f"first read of every 100th page in a fork()ed child {got['child_sparse_us']} us per page")
    return (f"memory costs (bench/memcost, 4 KiB pages, s/GiB): fresh memory faulted in {got['fresh']}, "
            f"first read in a fork()ed child {got['child_read']}, read by the parent {got['parent_read']}"
            f"{extra}")


def detect():
    h = subprocess.run([str(CKPT), "start", "--help"], capture_output=True, text=True)
    hr = subprocess.run([str(CKPT), "restart", "--help"], capture_output=True, text=True)
    text = h.stdout + h.stderr
    return {
        "help": text,
        "incremental": "--full-every" in text,
        "compress": "--compress" in text,
        "lazy": "--lazy" in (hr.stdout + hr.stderr),
    }


def main():
    global ARGS
    avail = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            avail = int(line.split()[1]) * 1024
    default_sizes = "256,1024" + (",4096" if avail >= 12 * GiB else "")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", default_sizes),
                    help=f"MiB held by the C program, comma separated (default here: {default_sizes}; "
                         "4096 only with 12 GiB available)")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    ap.add_argument("--no-torch", action="store_true", default=os.environ.get("BENCH_TORCH") == "0",
                    help="skip the Python/torch case")
    ap.add_argument("--variants", default=os.environ.get("BENCH_VARIANTS", "default,no-cow,compress-none"),
                    help="comma separated, of: " + ", ".join(VARIANTS)
                         + " (each runs only if this ckpt has the option)")
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", str(ROOT / "build/bench/work")),
                    help="where the run directories and dd's file go (the disk under test)")
    ap.add_argument("--step-ms", type=int, default=10, help="the programs' output interval")
    ap.add_argument("--out", default=None, help="report file (default bench/results/DATE.txt)")
    ARGS = ap.parse_args()
    ARGS.drop_caches = can_drop_caches()
    for f in (CKPT, HOLD, MEMCOST):
        if not f.exists():
            sys.exit(f"bench: {f} is missing: run `make all build/bench/hold build/bench/memcost` "
                     "(or bench/run.sh)")

    feats = detect()
    cases = [Case("hold", int(s), ARGS.step_ms) for s in ARGS.sizes.split(",") if s.strip()]
    if not ARGS.no_torch:
        r = subprocess.run([PYTHON, "-c", "import torch"], capture_output=True)
        if r.returncode == 0:
            cases.append(Case("torch", 256, ARGS.step_ms))
        else:
            print("bench: torch does not import in /usr/bin/python3: skipping the torch case")
    wanted = [v.strip() for v in ARGS.variants.split(",") if v.strip()]
    for v in wanted:
        if v not in VARIANTS:
            sys.exit(f"bench: unknown variant {v}")
    have = [v for v in wanted if VARIANTS[v][1] is None or VARIANTS[v][1] in feats["help"]]
    missing = [v for v in wanted if v not in have]

    Path(ARGS.dir).mkdir(parents=True, exist_ok=True)
    ARGS.dir = str(Path(ARGS.dir).resolve())
    day = datetime.date.today().isoformat()
    out_path = Path(ARGS.out) if ARGS.out else ROOT / "bench/results" / f"{day}.txt"
    report = []

    def emit(s=""):
        print(s, flush=True)
        report.append(s)

    for s in machine_lines():
        emit(s)
    emit(f"options in this ckpt: --no-cow {'yes' if '--no-cow' in feats['help'] else 'n/a'}, "
         f"--compress {'yes' if '--compress' in feats['help'] else 'n/a'}, "
         f"incremental (--full-every) {'yes' if feats['incremental'] else 'n/a'}, "
         f"lazy restart {'yes' if feats['lazy'] else 'n/a'}")
    emit(f"variants run: {', '.join(have)}"
         + (f"; n/a in this build: {', '.join(missing)}" if missing else ""))
    emit(memory_costs())
    emit(f"runs per case: {ARGS.runs}; caches dropped before cold reads and restarts: "
         f"{'yes' if ARGS.drop_caches else 'NO (not root): cold figures are warm'}")
    emit("")

    src = RandomSource(ARGS.dir)
    start = time.time()
    try:
        for case in cases:
            for variant in have:
                runs = []
                for k in range(ARGS.runs):
                    print(f"-- {case.name} [{variant}] run {k + 1}/{ARGS.runs} "
                          f"({time.time() - start:.0f} s so far)", flush=True)
                    try:
                        runs.append(run_once(case, variant, k + 1, feats, src))
                    except (Fail, subprocess.SubprocessError, OSError) as e:
                        runs.append({"error": str(e)})
                        print(f"   failed: {e}", flush=True)
                report_case(case, variant, runs, feats, emit)
            for v in missing:
                emit(f"== {case.name} [{v}]: n/a (this ckpt has no {VARIANTS[v][1]})")
                emit("")
    finally:
        for pg in list(live_groups):
            kill_group(pg)
        src.remove()
    emit(f"total time: {time.time() - start:.0f} s; load average at the end: {loadavg()}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(report) + "\n")
    print(f"report written to {out_path}")


if __name__ == "__main__":
    main()
