"""ckpt as installed by `make install PREFIX=...`, and as an unprivileged
user (ckpttest, created when missing) in a directory it owns. The rest of
the suite runs as whoever runs it: root in CI."""
import os

import pytest

from conftest import PYTHON, Ckpt, Prog, c_prog, snapshot, assert_unharmed


def test_installed_copy(installed, tmp_path, rng):
    """The installed ckpt finds its agent and restorer relative to itself."""
    c = Ckpt(tmp_path, rng, ckpt=installed / "bin" / "ckpt")
    c.cycle(c_prog("counter", 60, 40))


def user_prog(uck, name, *args):
    share = uck.share
    if name.endswith(".py"):
        script = str(share / "py" / name)
        a = [str(x) for x in args]
        return Prog(name, [script, *a], [PYTHON, script, *a], ["--python", PYTHON])
    argv = [str(share / "progs" / name), *map(str, args)]
    return Prog(name, argv, list(argv))


@pytest.mark.parametrize("spec", [("counter", 60, 40), ("threads", 64, 40), ("counter.py", 60, 40)],
                         ids=lambda s: s[0])
def test_restart_as_unprivileged_user(user_ck, spec):
    user_ck.cycle(user_prog(user_ck, *spec))
    owner = os.stat(user_ck.rundir()).st_uid
    assert owner == user_ck.user.uid, f"the run directory belongs to uid {owner}, not to {user_ck.user.name}"


def test_refusal_as_unprivileged_user(user_ck):
    prog = user_prog(user_ck, "counter", 3, 0)
    r = user_ck.cmd("start", "--interval", "0", "--dir", user_ck.runs, *prog.argv, timeout=120)
    assert r.returncode == 0, f"ckpt start as {user_ck.user.name}: status {r.returncode}, {r.stderr!r}"
    rundir = user_ck.rundir()
    before = snapshot(rundir)
    r = user_ck.cmd("start", "--interval", "0", "--dir", user_ck.runs, *prog.argv, timeout=60)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "exist" in r.stderr, \
        f"start on an existing run directory as {user_ck.user.name}: status {r.returncode}, {r.stderr!r}"
    assert_unharmed(before, snapshot(rundir), "start on an existing run directory")
