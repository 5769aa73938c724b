"""sqlite_rw.py STEPS SLEEP_MS DBFILE: a SQLite database written in place
(pwrite into pages of the file, a journal made and removed per
transaction): each step inserts a row and rewrites earlier ones, then
prints the row count and sums as read back. What the program writes into
the file after a checkpoint must not survive a restart from it: the
restarted run must print what the uninterrupted one prints. The last line
has the integrity check and a digest of the whole table."""
import hashlib
import os
import sqlite3
import sys
import time


def main():
    steps, sleep_ms, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    for leftover in (path, path + "-journal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    con = sqlite3.connect(path)
    con.execute("create table t (i integer primary key, v integer, pad text)")
    con.commit()
    for s in range(steps):
        con.execute("insert into t values (?, ?, ?)", (s, s * s % 97, "x" * (100 + s % 50)))
        con.execute("update t set v = (v * 31 + ?) % 1009 where i % 7 = ?", (s, s % 7))
        con.commit()
        n, total = con.execute("select count(*), sum(v) from t").fetchone()
        print(f"step {s} rows {n} sum {total}", flush=True)
        time.sleep(sleep_ms / 1000)
    h = hashlib.sha256()
    for row in con.execute("select i, v, pad from t order by i"):
        h.update(repr(row).encode())
    check = con.execute("pragma integrity_check").fetchone()[0]
    print(f"done integrity {check} digest {h.hexdigest()[:16]}", flush=True)


main()
