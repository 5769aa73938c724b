"""Never lose a checkpoint (issue 5, docs/reliability.md): `ckpt verify`,
restart's fallback to an older generation, --keep, checkpoint failures
(a full file system, a read-only images directory, the program killed
while its image is written), damaged images, a second ckpt on the same
run directory, permissions.

Every scenario ends the same way: `ckpt verify` passes on what remains and
`ckpt restart` resumes the program with output identical to an
uninterrupted run (check_chain). CKPT_LONG_TESTS=1 adds the long variants
(a loop over many kill points)."""
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (PROGS, T_CHECKPOINT, T_RUN, Bg, assert_unharmed, c_prog, check_chain,
                      restart_context, snapshot, tail, text_of)
from test_cli import program_pids

LONG = os.environ.get("CKPT_LONG_TESTS") == "1"
# Fault injection aimed at the bytes of a second image needs it as large as
# the first: an incremental one is written too quickly to be hit.
FULL_IMAGES = ["--full-every", "1"]


# ----------------------------------------------------------------- helpers

def one_line_error(r, what):
    err = r.stderr.strip()
    assert r.returncode != 0, f"{what}: exit status 0\nstdout {r.stdout!r}\nstderr {r.stderr!r}"
    assert err and len(err.splitlines()) == 1, f"{what}: expected a one-line error, got {err!r}"
    return err


def verify(ck, rundir, *args):
    return ck.cmd("verify", rundir, *args, timeout=120)


def assert_verify_ok(ck, rundir, what):
    r = verify(ck, rundir)
    assert r.returncode == 0, (f"ckpt verify fails {what} (status {r.returncode})\n"
                               f"stdout:\n{r.stdout}\nstderr: {r.stderr}")
    assert "DAMAGED" not in r.stdout
    return r.stdout


def generations(rundir):
    """Complete and partial generation directories, by name."""
    d = Path(rundir) / "images"
    return sorted(p.name for p in d.iterdir() if p.name.startswith("gen-"))


def ancestors(rundir, gen):
    """The generations gen's incremental images refer to (manifest parent
    chain)."""
    out = []
    while True:
        m = (Path(rundir) / "images" / f"gen-{gen:06d}" / "manifest").read_text()
        p = re.search(r"^parent=(\d+)$", m, re.M)
        if not p:
            return out
        gen = int(p.group(1))
        out.append(gen)


def two_generations(ck, prog):
    """start -> K1 lines -> checkpoint 1 -> K2 more -> checkpoint 2 -> a
    few lines -> SIGKILL of the group. Returns (rundir, first output,
    lines seen at checkpoint 1, lines seen at checkpoint 2)."""
    run = ck.start(prog)
    run.wait_lines(ck.rng.randint(3, 10))
    rundir = ck.rundir(proc=run)
    seen1 = run.lines()
    assert ck.checkpoint(rundir) == 1
    run.wait_lines(run.lines() + ck.rng.randint(4, 10))
    seen2 = run.lines()
    assert ck.checkpoint(rundir) == 2
    run.wait_lines(run.lines() + 2)
    ck.crash(run)
    return rundir, run.output(), seen1, seen2


def restart_and_compare(ck, prog, ref, first, min_start, rundir, before=None, label="restart"):
    """Restart to completion; the output must continue the first run
    exactly, from a line >= min_start (and < before when given: it came
    from an older checkpoint)."""
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), (label, out, min_start)],
                    context=restart_context(rc, bg, rundir))
    if before is not None:
        assert s[1] < before, (f"{label} resumed at line {s[1] + 1}: that is the damaged or newer "
                               f"checkpoint (taken after {before} lines), not the older one")
    assert rc == ref_rc, f"{label} exited with status {rc}, the uninterrupted program with {ref_rc}"
    return out, bg


# ---------------------------------------------------- image surgery (python)

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


SEC_NAMES = {1: "PROCESS", 2: "THREADS", 3: "SIGACTIONS", 4: "AREAS", 5: "STRINGS", 6: "FDS",
             7: "FD_DATA", 8: "PAGES"}


def sections(data):
    """{name: (table index, offset, length)} from the image's section table
    (docs/image-format.md: table offset at header byte 152, count at 160)."""
    table, count = struct.unpack_from("<QI", data, 152)
    out = {}
    for i in range(count):
        typ, cnt, off, length, crc, _ = struct.unpack_from("<IIQQII", data, table + 32 * i)
        out[SEC_NAMES.get(typ, str(typ))] = (i, off, length)
    return out


def refresh_table_crc(data):
    """Recompute the section table's and the header's checksums, so that
    only the deeper checks can notice what was changed."""
    table, count = struct.unpack_from("<QI", data, 152)
    struct.pack_into("<I", data, 164, crc32c(bytes(data[table:table + 32 * count])))
    struct.pack_into("<I", data, 316, 0)
    struct.pack_into("<I", data, 316, crc32c(bytes(data[:320])))


CHUNK_MAGICS = {b"CHNK", b"CHNZ", b"CHNR"}


def chunk_bodies(data, off, length):
    """(offset, length) of the body of every page chunk with data in PAGES
    (at off, length bytes), never the padding between chunks, which no
    restart reads (docs/image-format.md: a raw chunk's data follows its
    24-byte header, 4096-aligned; a compressed one has an 8-byte length
    field, then its frame)."""
    pos, end, bodies = off, off + length, []
    while pos < end:
        while pos < end and bytes(data[pos:pos + 4]) not in CHUNK_MAGICS:
            pos += 1
        if pos >= end:
            break
        magic, _, _, npages, _ = struct.unpack_from("<IIQII", data, pos)
        kind = bytes(data[pos:pos + 4])
        if kind == b"CHNK":
            body, blen = pos + 24, npages * 4096
        elif kind == b"CHNZ":
            body, blen = pos + 32, struct.unpack_from("<I", data, pos + 24)[0]
        else:
            body, blen = pos + 24, 0
        if blen:
            bodies.append((body, blen))
        pos = body + blen
    return bodies


def page_data_byte(data, off, length):
    """The offset of a byte of page data near the middle of PAGES (at off,
    length bytes): inside the body of the chunk there (chunk_bodies)."""
    bodies = chunk_bodies(data, off, length)
    assert bodies, "no page chunk with data in PAGES"
    mid = off + length // 2
    body, blen = min(bodies, key=lambda b: abs(b[0] - mid))
    return body + blen // 2


def damage_image(path, kind):
    """Damages one image in place; returns the words the error must name."""
    data = bytearray(path.read_bytes())
    secs = sections(data)
    if kind == "flip-pages":
        _, off, length = secs["PAGES"]
        data[page_data_byte(data, off, length)] ^= 0x01
        words = ("PAGES",)
    elif kind == "flip-every-chunk":
        # a byte of every chunk: whichever pages a restart reads, it meets
        # a damaged chunk (where chunks lie depends on what was compressed)
        _, off, length = secs["PAGES"]
        for body, blen in chunk_bodies(data, off, length):
            data[body + blen // 2] ^= 0x01
        words = ("PAGES",)
    elif kind == "flip-threads":
        _, off, length = secs["THREADS"]
        data[off + length // 2] ^= 0x40
        words = ("THREADS",)
    elif kind == "flip-header":
        data[40] ^= 0x10
        words = ("header",)
    elif kind == "truncate":
        _, off, length = secs["PAGES"]
        del data[off + length // 2:]
        words = ("truncated", "header says")
    elif kind == "swap-sections":
        # Swap the types of the THREADS and AREAS entries: each section's
        # own checksum still matches its bytes, the table's checksum is
        # made to match, so only the record checks can find it.
        table, _ = struct.unpack_from("<QI", data, 152)
        it, _, _ = secs["THREADS"]
        ia, _, _ = secs["AREAS"]
        struct.pack_into("<I", data, table + 32 * it, 4)
        struct.pack_into("<I", data, table + 32 * ia, 2)
        refresh_table_crc(data)
        words = ("THREADS", "AREAS")
    else:
        raise ValueError(kind)
    path.write_bytes(bytes(data))
    return words


# --------------------------------------------------------- verify / restart

DAMAGE = ["flip-pages", "flip-threads", "flip-header", "truncate", "swap-sections"]


def test_damaged_latest_generation_falls_back(ck):
    """Two generations; the newest is damaged in each way of DAMAGE in
    turn (from its pristine bytes): verify names the image and section,
    restart --generation of it is refused and harms nothing, plain restart
    says so, falls back to the older generation, writes both facts to
    execution.log and resumes from it (judged on its first lines, then
    killed). Damaged page data are found by the restorer as it reads them
    (a plain restart reads them once): the generation is then marked
    damaged and the restart goes on from the older one; other damage is
    found before anything starts and marks nothing. The last one runs to
    the end: its output completes the uninterrupted run exactly."""
    prog = c_prog("counter", 90, 30)
    ref = ck.reference(prog)
    rundir, first, seen1, seen2 = two_generations(ck, prog)
    out = assert_verify_ok(ck, rundir, "right after two checkpoints")
    assert re.search(r"generation 2 \(latest\): OK", out) and "generation 1: OK" in out, out
    img = rundir / "images" / "gen-000002" / "2.img"
    pristine = img.read_bytes()
    segments = [("first run", first, 0)]
    mark = rundir / "images" / "gen-000002" / "damaged"
    for n, kind in enumerate(DAMAGE):
        img.write_bytes(pristine)
        mark.unlink(missing_ok=True)  # repaired
        words = damage_image(img, kind)
        before = snapshot(rundir)

        r = verify(ck, rundir)
        err = one_line_error(r, f"ckpt verify of a {kind} image")
        assert r.returncode == 1
        assert re.search(r"generation 2 \(latest\): DAMAGED", r.stdout), r.stdout
        detail = next((ln for ln in r.stdout.splitlines() if ln.startswith("  2.img:")), "")
        assert any(w.lower() in detail.lower() for w in words), \
            f"{kind}: verify's detail line should name {words}: {r.stdout!r}"
        assert "generation 1: OK" in r.stdout, r.stdout
        assert "restart would use generation 1" in err, err

        r = ck.cmd("restart", "--interval", "0", "--generation", "2", "--dir", ck.runs, *prog.argv,
                   timeout=60)
        err = one_line_error(r, f"restart --generation of a damaged generation ({kind})")
        assert r.returncode == 2 and any(w.lower() in err.lower() for w in words), err
        assert r.stdout == ""
        ck.assert_gone("after the refused restart")
        assert_unharmed(before, snapshot(rundir), f"verify and a refused restart ({kind})")

        last = n == len(DAMAGE) - 1
        bg = ck.restart_bg(prog)
        if last:
            rc = bg.finish(T_RUN)
            ck.assert_gone("after the last restart")
        else:
            bg.wait_lines(3)
            ck.crash(bg)
        msg = bg.stderr()
        assert "generation 2 is damaged" in msg and any(w.lower() in msg.lower() for w in words), \
            f"{kind}: {msg!r}"
        ex = text_of(rundir / "execution.log")
        assert len(re.findall(r"generation 2 is damaged, not using it: "
                              r"(damaged: found at \S+ by a restart: )?2\.img: ", ex)) == n + 1, tail(ex)
        if kind == "flip-pages":
            assert "PAGES" in text_of(mark), text_of(mark)
            # the restorer's own line is in application.log; on the
            # terminal only the line that says what restart does about it
            assert "PAGES: page chunk" in msg and "ckpt-restore" not in msg, msg
            assert "ckpt-restore: page chunk" in text_of(rundir / "application.log")
            assert "the generation is marked damaged and an older one is tried" in ex, tail(ex)
        else:
            assert not mark.exists(), f"{kind}: found before the restart began, yet marked"
        assert ex.count("falling back to generation 1") == n + 1, tail(ex)
        assert len(re.findall(r"restart from generation 1 \(", ex)) == n + 1, tail(ex)
        # the damaged generation is kept for inspection, unchanged
        assert img.read_bytes() == before["images/gen-000002/2.img"], f"{kind}: the image was changed"
        segments.append((f"restart with generation 2 damaged ({kind})", bg.output(), seen1))
    expected, ref_rc = ref.result()
    starts = check_chain(expected, segments, context=restart_context(rc, bg, rundir))
    assert len(set(starts[1:])) == 1 and starts[1] < seen2, \
        f"every restart should resume at generation 1's line (before {seen2}): {starts[1:]}"
    assert rc == ref_rc


def test_all_generations_damaged_refuses(ck):
    """Every generation's page data damaged: the restorer finds it in each
    in turn (a plain restart reads the pages once, as it restores them),
    each is marked damaged, and the restart ends with one line saying that
    none is left. Nothing of the program runs; no image changes."""
    prog = c_prog("counter", 60, 30)
    rundir, first, seen1, seen2 = two_generations(ck, prog)
    for g in ("gen-000001", "gen-000002"):
        damage_image(rundir / "images" / g / "2.img", "flip-pages")
    before = snapshot(rundir)
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    # the flipped byte is in page data or in a chunk header, as it falls
    assert lines[0].startswith("ckpt: generation 2 is damaged") and "PAGES: page chunk" in lines[0] \
        and lines[0].endswith("falling back to an older one"), r.stderr
    err = lines[1]
    assert err.startswith("ckpt: cannot restart") and "all 2 generations are damaged" in err \
        and "PAGES" in err, err
    assert r.stdout == ""
    ck.assert_gone("after the refused restart")
    after = snapshot(rundir)
    for snap in (before, after):
        snap.pop("lock")  # names the last holder: each attempt held it
    assert_unharmed(before, after, "a refused restart")
    for g in ("gen-000001", "gen-000002"):
        assert "PAGES" in text_of(rundir / "images" / g / "damaged"), g
    r = verify(ck, rundir)
    assert r.returncode == 1 and r.stdout.count("DAMAGED") == 2, r.stdout
    # a second restart passes over both without starting anything
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    err = one_line_error(r, "restart with every generation marked damaged")
    assert "all 2 generations are damaged" in err, err
    ck.assert_gone("after the second refused restart")


def test_restart_chosen_generation_and_keep(ck):
    """--keep 3 at start is saved; old generations go only after a newer
    one is complete; restart --generation 1 resumes from the first
    checkpoint; --keep 1 at restart replaces the saved value. (Full
    images only: test_incremental checks what --keep keeps of chains.)"""
    prog = c_prog("counter", 100, 30)
    ref = ck.reference(prog)
    run = ck.start(prog, opts=["--keep", "3", "--full-every", "1"])
    run.wait_lines(ck.rng.randint(3, 8))
    rundir = ck.rundir(proc=run)
    seen = []
    for i in range(5):
        seen.append(run.lines())
        assert ck.checkpoint(rundir) == i + 1
        kept = [g for g in generations(rundir) if not g.endswith(".partial")]
        assert kept == [f"gen-{g:06d}" for g in range(max(1, i - 1), i + 2)], kept
        run.wait_lines(run.lines() + 2)
    assert "keep=3" in text_of(rundir / "config")
    ck.crash(run)
    first = run.output()
    assert_verify_ok(ck, rundir, "after five checkpoints")
    r = ck.cmd("restart", "--interval", "0", "--generation", "1", "--dir", ck.runs, *prog.argv,
               timeout=60)
    err = one_line_error(r, "restart --generation of a removed generation")
    assert "no complete generation 1" in err and "3, 4, 5" in err, err

    bg = Bg(ck.argv("restart", prog, 0, ["--generation", "3", "--keep", "1", "--full-every", "1"]),
            ck.work, ck.env, "restart-gen3", ck.user)
    bg.wait_lines(3)
    assert ck.checkpoint(rundir) == 6
    kept = [g for g in generations(rundir) if not g.endswith(".partial")]
    assert kept == ["gen-000006"], f"--keep 1 should leave only the new generation: {kept}"
    rc = bg.finish(T_RUN)
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("restart --generation 3", bg.output(), seen[2])])
    assert s[1] < seen[3], f"restart --generation 3 resumed at line {s[1] + 1}, after checkpoint 4"
    assert rc == ref_rc
    ex = text_of(rundir / "execution.log")
    assert "restart from generation 3" in ex, tail(ex)


# ------------------------------------------------------ checkpoint failures

def require_root(what):
    if os.geteuid() != 0:
        pytest.skip(f"SKIPPED LOUDLY: {what} needs root (mount); run make check as root")


class Mount:
    """A mount made by the test, undone at the end."""

    def __init__(self):
        self.points = []

    def run(self, *argv):
        r = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            pytest.skip(f"SKIPPED LOUDLY: {' '.join(map(str, argv))} failed: {r.stderr.strip()}")

    def tmpfs(self, where, size):
        where.mkdir(parents=True, exist_ok=True)
        self.run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", where)
        self.points.append(where)

    def bind_ro(self, where):
        self.run("mount", "--bind", where, where)
        self.points.append(where)
        self.run("mount", "-o", "remount,bind,ro", where, where)

    def undo(self, where=None):
        for p in list(reversed(self.points)):
            if where is None or p == where:
                subprocess.run(["umount", "-l", str(p)], capture_output=True, timeout=60)
                self.points.remove(p)


@pytest.fixture
def mounts():
    m = Mount()
    yield m
    Bg.kill_all()
    m.undo()


def checkpoint_fails(ck, rundir, what, words):
    r = ck.cmd("checkpoint", rundir, timeout=T_CHECKPOINT)
    err = one_line_error(r, what)
    assert any(w.lower() in err.lower() for w in words), f"{what}: {err!r} should mention {words}"
    assert not [g for g in generations(rundir) if g.endswith(".partial")], \
        f"{what}: a partial generation was left behind: {generations(rundir)}"
    return err


def test_enospc_during_checkpoint(ck, mounts):
    """The run directory on a small tmpfs, filled up after the first
    checkpoint: the next one fails with ENOSPC, the partial generation is
    removed, execution.log has the byte counts, the program runs on; once
    there is room the next checkpoint works and restart resumes from it."""
    require_root("a small tmpfs")
    small = ck.base / "small"
    mounts.tmpfs(small, "24m")
    prog = c_prog("bigmem", 160, 30, 6)
    ref = ck.reference(prog)
    run = ck.start(prog, dir=small, opts=FULL_IMAGES)
    run.wait_lines(ck.rng.randint(3, 8))
    rundir = ck.rundir(within=small, proc=run)
    assert ck.checkpoint(rundir) == 1
    size = (rundir / "images" / "gen-000001" / "2.img").stat().st_size
    # leave room for the logs, not for another image
    st = os.statvfs(small)
    filler = small / "filler"
    with open(filler, "wb") as f:
        f.write(b"\xff" * max(0, st.f_bavail * st.f_frsize - size // 2))
    lines = run.lines()
    err = checkpoint_fails(ck, rundir, "a checkpoint on a full file system", ("space", "ENOSPC", "28"))
    run.wait_lines(lines + 3)  # the program runs on
    ex = text_of(rundir / "execution.log")
    m = re.search(r"checkpoint generation 2 failed: .*\(errno 28, No space left on device\) at byte "
                  r"(\d+);.* (\d+) bytes are free", ex)
    assert m, f"execution.log should give the error and the byte counts:\n{tail(ex)}\n(ckpt said {err})"
    assert 0 < int(m.group(1)) <= size and int(m.group(2)) < size, m.group(0)
    assert_verify_ok(ck, rundir, "after a checkpoint failed for ENOSPC")

    filler.unlink()
    seen = run.lines()
    assert ck.checkpoint(rundir) == 3
    run.wait_lines(run.lines() + 2)
    ck.crash(run)
    first = run.output()
    assert_verify_ok(ck, rundir, "after the retried checkpoint")
    out, rc, bg = ck.restart(prog, dir=small)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("restart after ENOSPC", out, seen)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc


def read_only_cycle(ck, prog, rundir_in, make_ro, make_rw, words):
    """A checkpoint, then the images become read-only: the checkpoint
    fails with a message naming the reason, nothing is left behind, the
    program runs on; writable again, checkpoints work and restart resumes
    from the last one exactly."""
    ref = ck.reference(prog)
    run = ck.start(prog, dir=rundir_in)
    run.wait_lines(ck.rng.randint(3, 8))
    rundir = ck.rundir(within=rundir_in, proc=run)
    assert ck.checkpoint(rundir) == 1
    make_ro(rundir)
    lines = run.lines()
    checkpoint_fails(ck, rundir, "a checkpoint into read-only images", words)
    run.wait_lines(lines + 3)
    assert_verify_ok(ck, rundir, "while the images are read-only")
    make_rw(rundir)
    seen = run.lines()
    assert ck.checkpoint(rundir) >= 2
    run.wait_lines(run.lines() + 2)
    ck.crash(run)
    first = run.output()
    assert_verify_ok(ck, rundir, "after the retried checkpoint")
    out, rc, bg = ck.restart(prog, dir=rundir_in)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("restart after read-only images", out, seen)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc
    return rundir


def test_read_only_images_directory_mid_run(user_ck):
    """As an unprivileged user, images/ loses its write permission."""
    from test_users import user_prog
    prog = user_prog(user_ck, "counter", 120, 30)
    rundir = read_only_cycle(user_ck, prog, user_ck.runs, lambda d: os.chmod(d / "images", 0o500),
                             lambda d: os.chmod(d / "images", 0o700), ("permission denied",))
    ex = text_of(rundir / "execution.log")
    assert "Permission denied" in ex, tail(ex)


def kill_during_checkpoint(ck, prog, delay=None):
    """One checkpoint done; then a checkpoint is requested and the program
    is killed (SIGKILL, the program only) while its image is being
    written (delay None: as soon as the image file exists; else after
    delay seconds, wherever that falls). Afterwards: no partial
    generation, verify passes, restart resumes from the last complete
    generation exactly."""
    ref = ck.reference(prog)
    run = ck.start(prog, opts=FULL_IMAGES)
    run.wait_lines(ck.rng.randint(3, 8))
    rundir = ck.rundir(proc=run)
    assert ck.checkpoint(rundir) == 1
    run.wait_lines(run.lines() + 3)
    seen = run.lines()
    pids = program_pids(ck.tag, PROGS / prog.argv[0].rsplit("/", 1)[-1])
    assert len(pids) == 1, f"cannot find the program's process: {pids}"
    cp = Bg([ck.ckpt, "checkpoint", rundir], ck.work, ck.env, "checkpoint-killed")
    partial = rundir / "images" / "gen-000002.partial"
    hit = False
    t0 = time.monotonic()
    if delay is None:
        while time.monotonic() - t0 < 30 and cp.proc.poll() is None:
            tmp = list(partial.glob("*.img.tmp")) if partial.exists() else []
            if tmp and tmp[0].exists() and tmp[0].stat().st_size > 0:
                hit = True
                break
            time.sleep(0.001)
    else:
        time.sleep(delay)
        hit = partial.exists()
    os.kill(pids[0], signal.SIGKILL)
    rc_cp = cp.finish(T_CHECKPOINT)
    status = run.finish(T_RUN)
    ck.assert_gone("after the program was killed")
    left = generations(rundir)
    assert not [g for g in left if g.endswith(".partial")], f"partial generation left behind: {left}"
    if delay is None:
        assert hit, "the image was never seen being written; the test could not hit the window"
        assert rc_cp != 0 and cp.stderr().strip(), f"ckpt checkpoint: status {rc_cp}, {cp.stderr()!r}"
        assert left == ["gen-000001"], left
        assert status == 128 + signal.SIGKILL, f"ckpt start exited with {status}, expected 137"
        ex = text_of(rundir / "execution.log")
        assert re.search(r"checkpoint generation 2 failed", ex), tail(ex)
    assert_verify_ok(ck, rundir, "after the program was killed during a checkpoint")
    first = run.output()
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("restart", out, 0)],
                    context=restart_context(rc, bg, rundir))
    if left == ["gen-000001"]:
        assert s[1] < seen + 1, f"resumed at line {s[1] + 1}, after checkpoint 1 ({seen} lines)"
    assert rc == ref_rc
    return hit, rc_cp


def test_kill_program_while_image_is_written(ck):
    kill_during_checkpoint(ck, c_prog("bigmem", 200, 30, 96))


@pytest.mark.skipif(not LONG, reason="long variant: CKPT_LONG_TESTS=1")
@pytest.mark.parametrize("i", range(12))
def test_kill_program_at_many_points(ck, i):
    """A kill at i/12 of the way through a ~1 s checkpoint window."""
    hit, rc = kill_during_checkpoint(ck, c_prog("bigmem", 300, 30, 192), delay=i * 0.12)
    print(f"kill after {i * 0.12:.2f} s: partial generation seen {hit}, ckpt checkpoint status {rc}")


# ----------------------------------------------------- locks, permissions

def test_second_ckpt_on_same_run_directory(ck):
    """While a run is supervised: start and restart of the same command
    line are refused, naming the reason, and change nothing."""
    prog = c_prog("counter", 80, 30)
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(3)
    rundir = ck.rundir(proc=run)
    assert ck.checkpoint(rundir) == 1
    before = snapshot(rundir / "images")
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    err = one_line_error(r, "a second ckpt start")
    assert "exists" in err and "running" in err, err
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    err = one_line_error(r, "a restart while the run is supervised")
    assert r.returncode == 2 and "in use by another ckpt" in err and str(run.proc.pid) in err, err
    assert_unharmed(before, snapshot(rundir / "images"), "a second ckpt")
    rc = run.finish()
    expected, ref_rc = ref.result()
    assert run.output() == expected and rc == ref_rc


def test_permissions(ck):
    """Run directory 0700, images 0600, socket 0600; restart refuses an
    image another user owns or can write, and falls back past it."""
    prog = c_prog("counter", 80, 30)
    ref = ck.reference(prog)
    rundir, first, seen1, seen2 = two_generations(ck, prog)
    mode = lambda p: stat.S_IMODE(os.lstat(p).st_mode)
    assert mode(rundir) == 0o700, oct(mode(rundir))
    assert mode(rundir / "images") == 0o700
    for img in rundir.glob("images/gen-*/*"):
        # files/: links to the program's own files, which keep their modes
        want = 0o700 if img.name == "files" else 0o600
        assert mode(img) == want, f"{img} has mode {oct(mode(img))}"
    for name in ("config", "token", "lock"):
        assert mode(rundir / name) & 0o077 == 0, f"{name} has mode {oct(mode(rundir / name))}"
    sock = rundir / "ctl.sock"  # left behind by the SIGKILL
    if sock.exists():
        assert mode(sock) & 0o077 == 0, f"ctl.sock has mode {oct(mode(sock))}"
    img = rundir / "images" / "gen-000002" / "2.img"
    os.chmod(img, 0o666)
    r = verify(ck, rundir)
    assert r.returncode == 1 and "writable by other users" in r.stdout, r.stdout
    os.chmod(img, 0o600)
    if os.geteuid() == 0:
        os.chown(img, 65534, 65534)
        r = verify(ck, rundir)
        assert r.returncode == 1 and "owned by uid 65534" in r.stdout, r.stdout
        before = snapshot(rundir)
        r = ck.cmd("restart", "--interval", "0", "--generation", "2", "--dir", ck.runs, *prog.argv,
                   timeout=60)
        err = one_line_error(r, "restart from an image of another user")
        assert "owned by uid 65534" in err, err
        assert_unharmed(before, snapshot(rundir), "a refused restart")
        out, bg = restart_and_compare(ck, prog, ref, first, seen1, rundir, before=seen2,
                                      label="restart past another user's image")
        assert "owned by uid 65534" in bg.stderr()


# ------------------------------------------------------- supervisor death

@pytest.mark.parametrize("then", ["finish", "restart"])
def test_supervisor_killed(ck, then):
    """SIGKILL of the supervisor only: the program runs on, its output
    still reaches application.log (and ckpt's stdout); checkpoint and
    restart refuse with a clear message while it lives. Then either it
    finishes (its whole output, exactly, is in application.log) or it is
    ended as execution.log says and restart resumes from the checkpoint."""
    prog = c_prog("counter", 70, 40)
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(ck.rng.randint(3, 10))
    rundir = ck.rundir(proc=run)
    seen = run.lines()
    assert ck.checkpoint(rundir) == 1
    os.kill(run.proc.pid, signal.SIGKILL)  # the supervisor alone
    run.proc.wait(timeout=10)
    lines = text_of(rundir / "application.log").count("\n")
    deadline = time.monotonic() + 30
    while text_of(rundir / "application.log").count("\n") < lines + 3:
        assert time.monotonic() < deadline, "the program's output stopped reaching application.log"
        time.sleep(0.05)
    ex = text_of(rundir / "execution.log")
    m = re.search(r"the supervisor is gone .*host pid (\d+)\)", ex)
    assert m, f"execution.log should say the supervisor is gone:\n{tail(ex)}"
    r = ck.cmd("checkpoint", rundir)
    err = one_line_error(r, "ckpt checkpoint without a supervisor")
    assert "gone" in err and "unsupervised" in err, err
    before = snapshot(rundir / "images")
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    err = one_line_error(r, "ckpt restart while the old program runs")
    assert r.returncode == 2 and "still running" in err, err
    assert_unharmed(before, snapshot(rundir / "images"), "a refused restart")
    expected, ref_rc = ref.result()
    if then == "finish":
        deadline = time.monotonic() + T_RUN
        while tagged_program(ck, prog):
            assert time.monotonic() < deadline, "the unsupervised program did not finish"
            time.sleep(0.1)
        ck.assert_gone("after the unsupervised program finished")
        assert text_of(rundir / "application.log") == expected, \
            f"application.log differs from the uninterrupted output:\n{tail(text_of(rundir / 'application.log'))}"
        assert run.output() == expected, "ckpt's stdout did not get the rest of the output"
        ex = text_of(rundir / "execution.log")
        assert re.search(r"exit: the program \(pid \d+\) exited with status 0 while unsupervised", ex), tail(ex)
        assert_verify_ok(ck, rundir, "after the unsupervised run")
    else:
        os.kill(int(m.group(1)), signal.SIGKILL)  # what execution.log says to do
        ck.assert_gone("after killing the namespace's init")
        first = run.output()
        restart_and_compare(ck, prog, ref, first, seen, rundir, label="restart after the supervisor died")


def test_restart_waits_for_a_killed_program_to_exit(ck):
    """A restart right after kill -9 of the old run (a requeued job) can
    find the run directory still locked: a killed process keeps its files,
    and the lock, until the kernel has torn down its memory, well after
    it stopped running. The restart waits for that, a few seconds at most,
    instead of calling the program still running. The stand-in: a process
    whose main thread has exited keeps the lock 3 s longer."""
    prog = c_prog("counter", 70, 40)
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog, (3, 10))
    holder = Bg([PROGS / "lock_in_exit", rundir / "lock", 3000], ck.work, ck.env, "holder",
                user=ck.user)
    assert holder.finish() == 0, holder.report()
    exiting = int(holder.output().split()[1])
    deadline = time.monotonic() + T_CHECKPOINT
    # its main thread gone (or, on a machine stalled for seconds, all of it)
    while (status := text_of(f"/proc/{exiting}/status")) and "State:\tZ" not in status:
        assert time.monotonic() < deadline, f"the holder's main thread did not exit\n{holder.report()}"
        time.sleep(0.01)
    restart_and_compare(ck, prog, ref, first, seen, rundir, label="restart while the lock was let go")


def tagged_program(ck, prog):
    return program_pids(ck.tag, prog.argv[0])


# ------------------------------------------------------------- resources

def test_restart_checks_memory_limits(ck):
    """Restarts under an RLIMIT_AS, then an RLIMIT_DATA, smaller than the
    program's memory are refused before anything is torn down, naming the
    limit; without them the same checkpoint restarts exactly."""
    if not shutil.which("prlimit"):
        pytest.skip("SKIPPED LOUDLY: prlimit (util-linux) is missing")
    prog = c_prog("bigmem", 120, 30, 96)
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog, (3, 8))
    before = snapshot(rundir / "images")
    for limit, name in (("--as", "RLIMIT_AS"), ("--data", "RLIMIT_DATA")):
        r = subprocess.run(["prlimit", f"{limit}={64 << 20}", ck.ckpt, "restart", "--interval", "0",
                            "--dir", str(ck.runs), *prog.argv], env=ck.env, cwd=ck.work,
                           capture_output=True, text=True, timeout=120, start_new_session=True)
        ck.assert_gone("after the refused restart")
        assert r.returncode != 0 and name in r.stderr, f"status {r.returncode}, stderr {r.stderr!r}"
        assert r.stdout == "", f"the program must not run: {r.stdout!r}"
        assert_unharmed(before, snapshot(rundir / "images"), f"a restart refused for {name}")
    restart_and_compare(ck, prog, ref, first, seen, rundir, label="restart without the limits")


def test_control_socket_only_for_its_owner(user_ck):
    """root (another uid, allowed through the 0700 directory) connects to
    an unprivileged user's control socket with the right token: the
    supervisor drops it on SO_PEERCRED alone and logs it; the owner's
    requests work."""
    import socket
    from test_users import user_prog
    prog = user_prog(user_ck, "counter", 100, 30)
    run = user_ck.start(prog)
    run.wait_lines(3)
    rundir = user_ck.rundir(proc=run)
    token = (rundir / "token").read_text().strip()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(rundir / "ctl.sock"))
    try:
        s.sendall(f"HELLO proto=1 role=client token={token}\nSTATUS\n".encode())
        got = s.recv(4096)
    except (BrokenPipeError, ConnectionResetError):
        got = b""
    s.close()
    assert not got.startswith(b"OK"), f"another uid got an answer: {got!r}"
    log = text_of(rundir / "coordinator.log")
    assert re.search(r"refused a connection from uid 0 ", log), tail(log)
    r = user_ck.cmd("status", rundir)
    assert r.returncode == 0 and "running" in r.stdout, r.stdout + r.stderr
    run.kill()


# ------------------------------------------------------------------ soak

def _fds_and_rss(pid):
    """(open descriptors, VmRSS in KiB) of a process: the smallest of a few
    samples, so that a checkpoint in flight does not count."""
    best = None
    for _ in range(5):
        n = len(os.listdir(f"/proc/{pid}/fd"))
        rss = next(int(ln.split()[1]) for ln in open(f"/proc/{pid}/status") if ln.startswith("VmRSS:"))
        best = (n, rss) if best is None else (min(best[0], n), min(best[1], rss))
        time.sleep(0.1)
    return best


# the uninterrupted reference run must stay under T_RUN (180 s)
@pytest.mark.parametrize("seconds", [150] if LONG else [8])
def test_soak_checkpoint_every_second(ck, seconds):
    """Checkpoint every second while the program works; the supervisor and
    the program leak no descriptors or memory, only --keep generations
    remain, and a restart from a random remaining generation resumes
    exactly. CKPT_LONG_TESTS=1 runs it for 2.5 minutes."""
    steps = seconds * 1000 // 20 + 300
    prog = c_prog("counter", steps, 20)
    ref = ck.reference(prog)
    run = ck.start(prog, interval=1)
    run.wait_lines(20)
    rundir = ck.rundir(proc=run)
    # the first checkpoint opens what the agent keeps for the next ones
    # (its write-tracking descriptor): the baseline comes after it
    deadline = time.monotonic() + 30
    while "checkpoint generation 1:" not in text_of(rundir / "execution.log"):
        assert time.monotonic() < deadline, tail(text_of(rundir / "execution.log"))
        time.sleep(0.05)
    pid = program_pids(ck.tag, prog.argv[0])[0]
    sup0, prog0 = _fds_and_rss(run.proc.pid), _fds_and_rss(pid)
    time.sleep(seconds)
    sup1, prog1 = _fds_and_rss(run.proc.pid), _fds_and_rss(pid)
    assert run.proc.poll() is None, f"the program ended before the soak did\n{run.report()}"
    ck.crash(run)
    first = run.output()
    done = [g for g in generations(rundir) if not g.endswith(".partial")]
    # a crash between the completion of the newest generation and the
    # removal of the oldest leaves one more (never fewer); the generations
    # that incremental ones refer to stay with them
    newest = [int(g.split("-")[1]) for g in done[-3:]]
    needed = set(newest) | {p for g in newest for p in ancestors(rundir, g)}
    assert len(done) >= 2 and {int(g.split("-")[1]) for g in done} <= needed, \
        f"--keep 2 (the default) but {done} remain"
    ex = text_of(rundir / "execution.log")
    made = len(re.findall(r"checkpoint generation \d+: \d+ bytes", ex))
    assert made >= seconds // 2, f"only {made} checkpoints in {seconds} s at --interval 1:\n{tail(ex)}"
    assert "failed" not in ex, tail(ex)
    assert sup1[0] <= sup0[0] and prog1[0] <= prog0[0], \
        f"descriptors grew: supervisor {sup0[0]} -> {sup1[0]}, program {prog0[0]} -> {prog1[0]}"
    assert sup1[1] - sup0[1] < 4096, f"supervisor RSS grew from {sup0[1]} to {sup1[1]} KiB"
    assert_verify_ok(ck, rundir, "after the soak")
    gen = int(ck.rng.choice(done).split("-")[1])
    bg = Bg(ck.argv("restart", prog, 0, ["--generation", str(gen)]), ck.work, ck.env, "restart-soak")
    rc = bg.finish(T_RUN)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), (f"restart from generation {gen}", bg.output(), 20)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc
    print(f"soak {seconds} s: {made} checkpoints; supervisor fds {sup0[0]}->{sup1[0]}, rss "
          f"{sup0[1]}->{sup1[1]} KiB; program fds {prog0[0]}->{prog1[0]}; restarted from generation {gen}")


# ------------------------------------------------- the image writer killed

def kill_writer_at(ck, prog, fraction):
    """Copy-on-write checkpoints are written by a short-lived child of the
    program. Kill it (SIGKILL, it alone) once its .tmp image holds
    `fraction` of the previous image's bytes: the checkpoint fails, the
    partial generation goes, the program runs on untouched, the next
    checkpoint works and a restart from it resumes exactly."""
    ref = ck.reference(prog)
    run = ck.start(prog, opts=FULL_IMAGES)
    run.wait_lines(ck.rng.randint(3, 8))
    rundir = ck.rundir(proc=run)
    assert ck.checkpoint(rundir) == 1
    size1 = (rundir / "images" / "gen-000001" / "2.img").stat().st_size
    main = program_pids(ck.tag, prog.argv[0])
    assert len(main) == 1, main
    cp = Bg([ck.ckpt, "checkpoint", rundir], ck.work, ck.env, "checkpoint-writer-killed")
    partial = rundir / "images" / "gen-000002.partial"
    target = int(size1 * fraction)
    victim, at = None, None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline and cp.proc.poll() is None:
        tmp = list(partial.glob("*.img.tmp")) if partial.exists() else []
        try:
            n = tmp[0].stat().st_size if tmp else -1
        except FileNotFoundError:
            n = -1
        if n >= target:
            others = [p for p in program_pids(ck.tag, prog.argv[0]) if p not in main]
            if others:
                victim, at = others[0], n
                os.kill(victim, signal.SIGKILL)
        time.sleep(0.0005)
    if victim is None:
        cp.finish(T_CHECKPOINT)
        pytest.skip(f"SKIPPED LOUDLY: no separate writer process seen at {target} bytes "
                    f"(checkpoint status {cp.proc.returncode}); the writer may not be a child here")
    rc = cp.finish(T_CHECKPOINT)
    assert rc != 0 and cp.stderr().strip(), f"ckpt checkpoint: status {rc}, {cp.stderr()!r}"
    assert run.proc.poll() is None, f"the program died with its writer\n{run.report()}"
    assert generations(rundir) == ["gen-000001"], generations(rundir)
    lines = run.lines()
    run.wait_lines(lines + 3)
    assert_verify_ok(ck, rundir, "after the writer was killed")
    seen = run.lines()
    assert ck.checkpoint(rundir) == 3
    run.wait_lines(run.lines() + 2)
    ck.crash(run)
    first = run.output()
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("restart after the writer was killed", out, seen)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc
    ex = text_of(rundir / "execution.log")
    assert "checkpoint generation 2 failed" in ex, tail(ex)
    return at, size1


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95] if LONG else [0.5])
def test_kill_image_writer(ck, fraction):
    at, size = kill_writer_at(ck, c_prog("bigmem", 240, 30, 96), fraction)
    print(f"writer killed at byte {at} of about {size}")


def test_verify_bad_input(ck):
    """One-line errors, exit 2; a run directory without checkpoints is
    reported (exit 1); nothing is changed."""
    prog = c_prog("counter", 3, 0)
    r = ck.cmd("start", "--interval", "0", "--dir", ck.runs, *prog.argv)
    assert r.returncode == 0, r.stderr
    rundir = ck.rundir()
    before = snapshot(rundir)
    for args, word in [((), "missing run directory"), ((rundir, "--bogus"), "--bogus"),
                       ((ck.work,), "not a ckpt run directory"), ((rundir, "--generation", "x"), "'x'"),
                       ((rundir, "--generation"), "needs a value"), ((rundir, rundir), "too many")]:
        r = ck.cmd("verify", *args)
        err = one_line_error(r, f"ckpt verify {args}")
        assert r.returncode == 2 and word in err, (args, r.returncode, err)
    r = ck.cmd("verify", rundir)
    err = one_line_error(r, "ckpt verify without checkpoints")
    assert r.returncode == 1 and "no complete checkpoint" in err, err
    r = ck.cmd("verify", "--help")
    assert r.returncode == 0 and "usage: ckpt verify" in r.stdout
    assert_unharmed(before, snapshot(rundir), "ckpt verify")


def test_two_restarts_at_once(ck):
    """Two `ckpt restart` of one run directory started together: exactly
    one runs the program (to the end, exactly), the other is refused with
    a one-line message naming the first, and nothing is harmed."""
    prog = c_prog("counter", 70, 30)
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog, (3, 10))
    a, b = ck.restart_bg(prog), ck.restart_bg(prog)
    rcs = [a.finish(T_RUN), b.finish(T_RUN)]
    ck.assert_gone("after both restarts")
    refused = [x for x, rc in zip((a, b), rcs) if rc == 2 and "in use by another ckpt" in x.stderr()]
    ran = [x for x in (a, b) if x not in refused]
    assert len(refused) == 1 and len(ran) == 1, \
        f"statuses {rcs}; stderr {a.stderr()!r} / {b.stderr()!r}"
    assert len(refused[0].stderr().strip().splitlines()) == 1 and refused[0].output() == ""
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("the restart that ran", ran[0].output(), seen)])
    assert rcs[(a, b).index(ran[0])] == ref_rc
    assert_verify_ok(ck, rundir, "after two restarts at once")


def test_restart_checks_cpu_before_touching_anything(ck):
    """An image that needs a CPU state component this CPU does not enable
    (XCR0 bit 63, reserved: no CPU has it; checksums made to match) is
    refused by restart with one line, before anything in the run
    directory changes (the lock file included); put back, it restarts
    exactly."""
    prog = c_prog("counter", 60, 30)
    ref = ck.reference(prog)
    rundir, first, seen = ck.checkpoint_then_crash(prog, (3, 10))
    img = rundir / "images" / "gen-000001" / "2.img"
    pristine = img.read_bytes()
    data = bytearray(pristine)
    (xcr0,) = struct.unpack_from("<Q", data, 168)
    struct.pack_into("<Q", data, 168, xcr0 | (1 << 63))
    refresh_table_crc(data)
    img.write_bytes(bytes(data))
    assert_verify_ok(ck, rundir, "with an image of another CPU type (intact, just not runnable here)")
    leftover = rundir / "images" / "gen-000007.partial"  # a restart would remove it
    leftover.mkdir()
    (leftover / "2.img.tmp").write_bytes(b"unfinished")
    before = snapshot(rundir)
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    err = one_line_error(r, "restart on a CPU without a saved state component")
    assert r.returncode == 2 and "CPU" in err and "same CPU type" in err, err
    assert r.stdout == ""
    ck.assert_gone("after the refused restart")
    assert_unharmed(before, snapshot(rundir), "a restart refused for the CPU")
    assert snapshot(rundir).keys() == before.keys(), "the refused restart created or removed files"
    img.write_bytes(pristine)
    restart_and_compare(ck, prog, ref, first, seen, rundir, label="restart with the image put back")


def test_reader_gone_still_gives_sigpipe(ck):
    """init holds the program's output pipes too (for supervisor death);
    `ckpt start prog | head -3` must still end the program with SIGPIPE
    as it would end without ckpt, not keep it running."""
    prog = c_prog("counter", 100000, 1)
    cmd = " ".join(f"'{a}'" for a in ck.argv("start", prog)) + " | head -3"
    r = subprocess.run(["bash", "-c", cmd + "; echo status=${PIPESTATUS[0]}"], env=ck.env, cwd=ck.work,
                       capture_output=True, text=True, timeout=60, start_new_session=True)
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and lines[-1] == f"status={128 + signal.SIGPIPE}", (r.stdout, r.stderr)
    ck.assert_gone("after the reader went away")
    ex = text_of(ck.rundir() / "execution.log")
    assert "killed by signal 13" in ex, tail(ex)
