"""Resumable sweeps: atomic parts, resume, damaged files quarantined and recomputed."""

import pandas as pd
import pytest

from vlmscope.runs import DamagedPartWarning, RunStore


def test_put_has_load_and_resume(tmp_path):
    s = RunStore(tmp_path)
    k1 = s.key("fractions", "organism", {"n": 1}, 0)
    k2 = s.key("fractions", "organism", {"n": 1}, 1)
    assert k1 != k2 and k1 == RunStore.key("fractions", "organism", {"n": 1}, 0)
    s.put(k1, pd.DataFrame({"layer": [0, 1], "image": [0.2, 0.3]}), item=0)
    assert s.has(k1) and not s.has(k2)
    again = RunStore(tmp_path)  # a new process sees the finished item
    assert again.has(k1) and not again.has(k2)
    df = again.load()
    assert list(df["item"]) == [0, 0] and set(df["_key"]) == {k1}


def test_damaged_part_is_quarantined_and_recomputed(tmp_path):
    s = RunStore(tmp_path)
    good = s.key("a", 0)
    bad = s.key("a", 1)
    s.put(good, pd.DataFrame({"x": [1]}))
    s.put(bad, pd.DataFrame({"x": [2]}))
    path = s.parts / f"{bad}.parquet"
    path.write_bytes(path.read_bytes()[:20])  # truncate: a damaged file
    fresh = RunStore(tmp_path)
    with pytest.warns(DamagedPartWarning, match=bad):
        assert fresh.done() == {good}
    assert (tmp_path / "quarantine" / f"{bad}.parquet").exists()
    assert list(fresh.load()["x"]) == [1]
    fresh.put(bad, pd.DataFrame({"x": [2]}))  # recomputed
    assert sorted(RunStore(tmp_path).load()["x"]) == [1, 2]


def test_temporaries_from_an_interrupted_write_are_ignored_and_cleaned(tmp_path):
    import subprocess
    import sys

    from vlmscope.integrity import _HOST

    s = RunStore(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a writer that has exited: its temporary is provably stale
    (s.parts / f".deadbeef.parquet.{_HOST}-{gone.pid}-0123abcd.tmp").write_bytes(b"half")
    assert s.done() == set() and s.load().empty
    assert s.clean_temporaries() == 1
    assert not list(s.parts.glob(".*.tmp"))
