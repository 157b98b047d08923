"""Resumable sweeps: one parquet part per finished item, written atomically.

A ``RunStore`` is a folder. Each finished item (one image under one
configuration) is written as its own parquet file named by a hash of
(experiment, model, config, item), first to a temporary name unique to the
writer and then renamed, so an interrupted sweep leaves only whole parts
behind and a re-run with the same arguments skips what is done.

Every part carries a SHA-256 digest of its rows (and of the files it names,
such as heatmap masks) in its parquet metadata, and is verified in full
before it is reused: a part whose footer parses but whose pages (or named
files) are damaged, or which has no digest, is moved aside to
``quarantine/`` with a warning and its item is recomputed. No finished work
is lost silently, and none is trusted blindly.

A sweep holds the store's lock (``store.lock()``, a ``filelock`` on
``run.lock``): a second sweep on the same store stops at once with
``StoreBusyError`` rather than computing the same parts twice. The lock is
the operating system's, so a killed run leaves no stale lock behind.

>>> store = RunStore("runs/fractions")                       # doctest: +SKIP
>>> with store.lock():                                       # doctest: +SKIP
...     for item in items:
...         key = store.key("fractions", model, cfg, item)
...         if not store.has(key):
...             store.put(key, compute(item))                # a DataFrame
>>> df = store.load()                                        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path

import pandas as pd

from .integrity import (DIGEST_KEY, DamagedFileError, file_sha256, stale_temporaries, table_digest,
                        write_atomic)

FILES_KEY = "vlmscope.files"  # {path relative to the store root: sha256} of files a part names


class DamagedPartWarning(UserWarning):
    """A part file could not be verified and was quarantined; its item will be recomputed."""


class StoreBusyError(RuntimeError):
    """Another run holds this store's lock."""


def _canon(obj) -> str:
    if is_dataclass(obj):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, default=str)


class RunStore:
    """A folder of parquet parts, one per finished item."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for p in (self.root, self.root / "parts"):
            if p.exists() and not p.is_dir():
                raise NotADirectoryError(f"the run store needs a folder at {p}, but a file is there")
        self.parts = self.root / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self._checked: set[str] | None = None

    @staticmethod
    def key(*parts) -> str:
        """A stable hash of experiment, model, configuration and item identifiers."""
        return hashlib.sha256("\x1f".join(_canon(p) for p in parts).encode()).hexdigest()[:24]

    def _path(self, key: str) -> Path:
        return self.parts / f"{key}.parquet"

    # ------------------------------------------------------------------ lock
    @contextmanager
    def lock(self, timeout: float = 0):
        """Hold the store's lock inside the block; ``StoreBusyError`` if another run holds it.

        ``timeout``: seconds to wait for the other run (0: stop at once).
        """
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / "run.lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise StoreBusyError(
                f"another run is using the store {self.root} (it holds {self.root / 'run.lock'}); "
                "wait for it to finish, or pass another --out") from None
        try:
            yield self
        finally:
            lock.release()

    # ---------------------------------------------------------------- verify
    def read(self, key: str) -> pd.DataFrame:
        """One part, verified in full (rows and named files); ``DamagedFileError`` if not."""
        import pyarrow.parquet as pq

        path = self._path(key)
        try:
            with open(path, "rb") as f:
                if f.read(4) != b"PAR1":
                    raise DamagedFileError("its header is not a parquet header")
            table = pq.read_table(path)
            meta = table.schema.metadata or {}
            want = meta.get(DIGEST_KEY.encode())
            if want is None:
                raise DamagedFileError("it has no content digest (written by an older version)")
            files = meta.get(FILES_KEY.encode(), b"{}").decode()
            named = json.loads(files)
            ok = _part_digest(table, files) == want.decode()
            frame = table.to_pandas()
        except DamagedFileError:
            raise
        except Exception as e:  # noqa: BLE001 - any unreadable file is damaged
            raise DamagedFileError(f"unreadable ({type(e).__name__}: {e})") from None
        if not ok:
            raise DamagedFileError("its rows do not match its content digest")
        for rel, digest in named.items():
            f = self.root / rel
            if not f.is_file():
                raise DamagedFileError(f"the file it names, {rel}, is missing")
            if file_sha256(f) != digest:
                raise DamagedFileError(f"the file it names, {rel}, does not match its digest")
        return frame

    def done(self) -> set[str]:
        """Keys of verified parts; damaged parts are quarantined (with a warning)."""
        if self._checked is None:
            ok = set()
            for p in sorted(self.parts.glob("*.parquet")):
                try:
                    self.read(p.stem)
                    ok.add(p.stem)
                except DamagedFileError as e:
                    self._quarantine(p, e)
            self._checked = ok
        return self._checked

    def has(self, key: str) -> bool:
        return key in self.done()

    def put(self, key: str, frame: pd.DataFrame, files=(), **meta) -> Path:
        """Write one finished item atomically. ``meta`` values become constant columns.

        ``files``: paths (inside the store) the part depends on, e.g. a heatmap's
        mask file; their digests go into the part, so a damaged or missing file
        makes the part damaged too.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        frame = frame.copy()
        for k, v in meta.items():
            frame[k] = v
        frame["_key"] = key
        named = {Path(f).resolve().relative_to(self.root.resolve()).as_posix(): file_sha256(f)
                 for f in files}
        files_json = json.dumps(named, sort_keys=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        # round-trip once so the digest is of exactly what a reader will see
        import io

        buf = io.BytesIO()
        pq.write_table(table, buf)
        back = pq.read_table(io.BytesIO(buf.getvalue()))
        table = table.replace_schema_metadata({
            **(table.schema.metadata or {}),
            DIGEST_KEY.encode(): _part_digest(back, files_json).encode(),
            FILES_KEY.encode(): files_json.encode()})
        final = write_atomic(self._path(key), lambda tmp: pq.write_table(table, tmp))
        self.done().add(key)
        return final

    def load(self, keys=None) -> pd.DataFrame:
        """Finished items (all, or those of ``keys``) as one DataFrame (empty if none).

        Every part is verified again as it is read; one damaged since it was
        checked is quarantined and left out (``done()`` no longer lists it).
        """
        wanted = sorted(self.done() if keys is None else set(keys) & self.done())
        frames = []
        self.loaded: set[str] = set()  # keys whose parts this load read (some may hold no rows)
        for k in wanted:
            try:
                frames.append(self.read(k))
                self.loaded.add(k)
            except DamagedFileError as e:
                self._quarantine(self._path(k), e)
                self.done().discard(k)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _quarantine(self, path: Path, err: Exception):
        q = self.root / "quarantine"
        q.mkdir(exist_ok=True)
        target = q / path.name
        path.replace(target)
        warnings.warn(f"damaged part {path.name} ({err}) moved to {target}; "
                      "its item will be recomputed", DamagedPartWarning, stacklevel=3)

    def clean_temporaries(self) -> int:
        """Remove temporaries of this process or of dead writers; return how many.

        A live writer's temporary (another run writing into the same folder) is
        left alone.
        """
        n = 0
        for folder in (self.parts, self.root, self.root / "masks"):
            for p in stale_temporaries(folder) if folder.is_dir() else ():
                p.unlink(missing_ok=True)
                n += 1
        return n


def _part_digest(table, files_json: str) -> str:
    """Digest of a part's rows, its schema metadata (pandas' among it) and the files it names."""
    meta = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
            for k, v in (table.schema.metadata or {}).items()
            if k not in (DIGEST_KEY.encode(), FILES_KEY.encode())}
    bare = table.replace_schema_metadata(None)
    return hashlib.sha256((table_digest(bare) + json.dumps(sorted(meta.items())) + files_json)
                          .encode()).hexdigest()
