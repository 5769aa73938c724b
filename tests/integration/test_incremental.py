"""Incremental checkpoints (--full-every N): a generation stores only the
pages that changed since the one before and refers to it for the rest.
Restart follows the chain down to a full image, --keep keeps what the kept
generations refer to, and verification and fallback treat a generation
whose parent is damaged as damaged."""
import os
import re
from pathlib import Path

import pytest

from conftest import (T_RUN, Bg, assert_unharmed, c_prog, check_chain, restart_context, snapshot,
                      tail, text_of)
from test_reliability import (ancestors, assert_verify_ok, damage_image, generations,
                              one_line_error, verify)


def kernel_tracks_writes():
    """userfaultfd asynchronous write-protection and PAGEMAP_SCAN: Linux 6.7."""
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    return (major, minor) >= (6, 7)


def manifest(rundir, gen):
    text = (Path(rundir) / "images" / f"gen-{gen:06d}" / "manifest").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def checkpoints(ck, run, rundir, n):
    """n checkpoints at random points; returns the lines seen at each."""
    seen = []
    for _ in range(n):
        run.wait_lines(run.lines() + ck.rng.randint(2, 6))
        seen.append(run.lines())
        ck.checkpoint(rundir)
    return seen


def chain_then_crash(ck, prog, opts, n, first=(2, 8), more=0):
    """start with opts -> n checkpoints at random points -> `more` lines
    -> SIGKILL of the group. Returns (rundir, first output, lines seen at
    each checkpoint)."""
    run = ck.start(prog, opts=opts)
    run.wait_lines(ck.rng.randint(*first))
    rundir = ck.rundir(proc=run)
    seen = checkpoints(ck, run, rundir, n)
    if more:
        run.wait_lines(run.lines() + more)
    ck.crash(run)
    return rundir, run.output(), seen


def restart_resumes_newest(ck, prog, ref, rundir, first, seen):
    """ckpt restart after chain_then_crash: from the newest generation,
    the run goes on exactly as the uninterrupted one, with its status."""
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    n = len(seen)
    check_chain(expected,
                [("first run", first, 0), (f"restart from generation {n}", out, seen[-1])],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc


def test_chain_restart_exact(ck):
    """--full-every 3: generations 1 (full), 2 and 3 (incremental), 4
    (full), 5 (incremental). The memory changes in every way (pages
    rewritten, remapped, zeroed, written back); restart from the newest
    incremental resumes exactly; the incremental images are a small part
    of a full one."""
    prog = c_prog("incr_mem", 400, 40, 24)
    ref = ck.reference(prog)
    rundir, first, seen = chain_then_crash(ck, prog, ["--full-every", "3", "--keep", "5"], 5,
                                           more=2)

    parents = {g: manifest(rundir, g).get("parent") for g in range(1, 6)}
    assert parents == {1: None, 2: "1", 3: "2", 4: None, 5: "4"}, parents
    # in pages, not bytes: --compress auto stores a chunk raw or compressed
    # as the disk keeps up, so a full image may be compressed and an
    # incremental one not
    stored = {g: int(manifest(rundir, g)["pages_stored"]) for g in range(1, 6)}
    for g in (2, 3, 5):
        assert stored[g] * 3 < stored[1], f"incremental generation {g} is not small: {stored}"
        m = manifest(rundir, g)
        assert int(m["pages_referred"]) > 2 * int(m["pages_stored"]), m
    ex = text_of(rundir / "execution.log")
    assert re.search(r"checkpoint generation 5: \d+ bytes \(incremental on generation 4: "
                     r"\d+ pages stored, \d+ unchanged referred to, \d+ of them known unchanged "
                     r"without reading\)", ex), tail(ex)
    # write tracking was armed at the first checkpoint: from the second
    # on, unchanged pages are known so without being read
    if kernel_tracks_writes():
        for g in (2, 3, 5):
            m = manifest(rundir, g)
            assert int(m["pages_proven"]) > 0, (g, m)
    else:
        print(f"NOTE: kernel {os.uname().release} lacks PAGEMAP_SCAN: every page was hashed")
    assert_verify_ok(ck, rundir, "after a chain of checkpoints")
    st = ck.cmd("status", rundir).stdout
    assert re.search(r"kind: +incremental on generation 4 \(depth 1\): \d+ pages stored", st), st
    assert re.search(r"on disk: +5 generations, [\d.]+ MiB", st) and "program paused:" in st, st

    restart_resumes_newest(ck, prog, ref, rundir, first, seen)


def test_chain_private_file_mapping(ck):
    """Pages written in private mappings of a file (four neighbouring
    mappings, as a library's segments lie) are found and saved by every
    generation, full or incremental, and come back over the file's own
    pages: the restart from the newest incremental goes on exactly."""
    prog = c_prog("private_map", 300, 40)
    ref = ck.reference(prog)
    rundir, first, seen = chain_then_crash(ck, prog, ["--full-every", "4"], 4, more=2)
    assert manifest(rundir, 4).get("parent") == "3", manifest(rundir, 4)
    restart_resumes_newest(ck, prog, ref, rundir, first, seen)


def evict(paths):
    """Drop the files from the page cache (written back first), as on a
    node that has not read them: the restorer then reads their raw chunks
    with O_DIRECT (image/direct.c), the others through the cache."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def test_chain_restart_from_cold_images(ck):
    """A full and an incremental generation of 48 MiB of random data (raw
    chunks) and a compressed rest, out of the page cache at restart: the
    restart resumes exactly."""
    prog = c_prog("bigmem", 60, 40, 48, 2000)
    ref = ck.reference(prog)
    rundir, first, seen = chain_then_crash(ck, prog, ["--full-every", "3"], 2, first=(3, 10))
    assert manifest(rundir, 2).get("parent") == "1"
    evict(rundir.glob("images/gen-*[0-9]/*.img"))
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", first, 0), ("restart from cold images", out, seen[1])],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc


def resident_fraction(path):
    """The part of the file's pages in the page cache (mincore)."""
    import ctypes
    import mmap
    size = os.path.getsize(path)
    pages = (size + 4095) // 4096
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)  # writable for ctypes, untouched
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        vec = ctypes.create_string_buffer(pages)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        assert libc.mincore(ctypes.c_void_p(addr), size, vec) == 0, os.strerror(ctypes.get_errno())
        n = sum(b & 1 for b in vec.raw)
        del addr
    finally:
        try:
            m.close()
        except BufferError:
            pass
    return n / pages


def test_images_left_out_of_page_cache(ck):
    """A checkpoint keeps its image out of the page cache (write-behind,
    docs/reliability.md): once `ckpt checkpoint` returns, little of a
    48 MiB image is cached, and a restart from it resumes exactly."""
    probe = Path(ck.runs).parent / "probe"
    probe.write_bytes(os.urandom(1 << 20))
    evict([probe])
    if resident_fraction(probe) > 0.5:
        pytest.skip(f"SKIPPED: the file system of {probe.parent} keeps files cached after "
                    "POSIX_FADV_DONTNEED (tmpfs?): nothing to measure")
    prog = c_prog("bigmem", 60, 40, 48, 2000)
    ref = ck.reference(prog)
    run = ck.start(prog)
    run.wait_lines(ck.rng.randint(3, 10))
    rundir = ck.rundir(proc=run)
    seen = run.lines()
    ck.checkpoint(rundir)
    image = next(rundir.glob("images/gen-000001/*.img"))
    assert os.path.getsize(image) > 40 << 20
    cached = resident_fraction(image)
    assert cached < 0.2, f"{cached:.0%} of the image is in the page cache after the checkpoint"
    ck.crash(run)
    out, rc, bg = ck.restart(prog)
    expected, ref_rc = ref.result()
    check_chain(expected, [("first run", run.output(), 0), ("restart", out, seen)],
                context=restart_context(rc, bg, rundir))
    assert rc == ref_rc


def test_restart_from_middle_of_chain(ck):
    """restart --generation 3 (incremental on 2, on 1) resumes exactly
    where generation 3 was taken, and the restarted run's first checkpoint
    is full."""
    prog = c_prog("incr_mem", 400, 40, 16)
    ref = ck.reference(prog)
    rundir, first, seen = chain_then_crash(ck, prog, ["--full-every", "4", "--keep", "4"], 4)
    assert manifest(rundir, 3).get("parent") == "2" and manifest(rundir, 4).get("parent") == "3"
    bg = Bg(ck.argv("restart", prog, 0, ["--generation", "3"]), ck.work, ck.env, "restart-gen3")
    bg.wait_lines(3)
    assert ck.checkpoint(rundir) == 5
    assert "parent" not in manifest(rundir, 5), "the first checkpoint after a restart must be full"
    rc = bg.finish(T_RUN)
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("restart --generation 3", bg.output(), seen[2])],
                    context=restart_context(rc, bg, rundir))
    assert s[1] < seen[3], f"restart --generation 3 resumed at line {s[1] + 1}, after checkpoint 4"
    assert rc == ref_rc


def test_chain_while_memory_churns(ck):
    """Memory that changes every millisecond, also while each image is
    written and the written pages are protected again: pages written,
    64 KiB moved away and back (splitting what write tracking registered),
    pages zeroed with MADV_DONTNEED. Each incremental generation must
    still hold every change since the one before: restart from the newest
    of a chain of five resumes exactly."""
    prog = c_prog("remap_churn", 150, 0, 16)
    ref = ck.reference(prog)
    rundir, first, seen = chain_then_crash(ck, prog, ["--full-every", "6"], 5, first=(2, 4),
                                           more=2)
    assert manifest(rundir, 5).get("parent") == "4", manifest(rundir, 5)
    restart_resumes_newest(ck, prog, ref, rundir, first, seen)


def test_keep_holds_what_chains_need(ck):
    """--keep 1 --full-every 3: a kept incremental generation keeps its
    parents; once a full one is complete, the old chain goes."""
    prog = c_prog("incr_mem", 400, 30, 8)
    run = ck.start(prog, opts=["--full-every", "3", "--keep", "1"])
    run.wait_lines(3)
    rundir = ck.rundir(proc=run)
    want = {1: [1], 2: [1, 2], 3: [1, 2, 3], 4: [4], 5: [4, 5]}
    for g in range(1, 6):
        run.wait_lines(run.lines() + 2)
        assert ck.checkpoint(rundir) == g
        kept = [int(n.split("-")[1]) for n in generations(rundir) if not n.endswith(".partial")]
        assert kept == want[g], f"after checkpoint {g}: {kept} kept, expected {want[g]}"
    assert ancestors(rundir, 5) == [4]
    ck.crash(run)


def test_damaged_parent_falls_back(ck):
    """--full-every 2 --keep 4: 1 full, 2 on 1, 3 full, 4 on 3. Generation
    3 damaged: verify calls 4 damaged too (naming its parent), restart
    falls back past 4 and 3 to 2, which resumes exactly."""
    prog = c_prog("incr_mem", 300, 40, 8)
    ref = ck.reference(prog)
    rundir, first, seen = chain_then_crash(ck, prog, ["--full-every", "2", "--keep", "4"], 4,
                                           first=(2, 6))
    damage_image(rundir / "images" / "gen-000003" / "2.img", "flip-every-chunk")
    r = verify(ck, rundir)
    one_line_error(r, "verify with a damaged parent")
    assert re.search(r"generation 4 \(latest\): DAMAGED", r.stdout), r.stdout
    assert re.search(r"parent: generation 3, whose pages this one refers to, is damaged", r.stdout), \
        r.stdout
    assert "generation 2: OK" in r.stdout, r.stdout
    out, rc, bg = ck.restart(prog)
    msg = bg.stderr()
    assert "generation 4 is damaged" in msg and "generation 3 is damaged" in msg, msg
    expected, ref_rc = ref.result()
    s = check_chain(expected, [("first run", first, 0), ("restart after fallback", out, seen[1])],
                    context=restart_context(rc, bg, rundir))
    assert s[1] < seen[2], f"resumed at line {s[1] + 1}: not from generation 2"
    assert rc == ref_rc


def test_missing_parent_image_is_refused(ck):
    """A parent generation removed by hand: the incremental generation is
    reported damaged (not restored into a wrong program)."""
    prog = c_prog("incr_mem", 300, 40, 8)
    rundir, _, _ = chain_then_crash(ck, prog, ["--full-every", "5", "--keep", "5"], 2,
                                    first=(3, 3))
    (rundir / "images" / "gen-000001" / "2.img").unlink()
    before = snapshot(rundir)
    r = verify(ck, rundir)
    assert r.returncode == 1 and re.search(r"generation 2 \(latest\): DAMAGED", r.stdout), r.stdout
    r = ck.cmd("restart", "--interval", "0", "--dir", ck.runs, *prog.argv, timeout=60)
    err = one_line_error(r, "restart with the parent image gone")
    assert "damaged" in err, err
    ck.assert_gone("after the refused restart")
    assert_unharmed(before, snapshot(rundir), "verify and a refused restart")


def test_full_every_bad_values(ck):
    prog = c_prog("counter", 5, 10)
    for bad in ("0", "-1", "x", "1001", ""):
        r = ck.cmd("start", "--full-every", bad, "--dir", ck.runs, *prog.argv)
        err = one_line_error(r, f"--full-every {bad!r}")
        assert "--full-every" in err, err
    assert not list(Path(ck.runs).iterdir()), "a refused start left a run directory"
