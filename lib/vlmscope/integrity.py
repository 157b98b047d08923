"""Content digests, per-writer temporary names and checked safetensors files.

Everything a run keeps for reuse (parquet parts, the ablation mean vector,
heatmap mask files) carries a SHA-256 digest of its content and is verified
in full before it is reused: a damaged file is never trusted because its
header still parses. Temporary files are named per writer (host, process id
and a random suffix), so two writers never share one, and a clean-up removes
only its own temporaries or those of a process that provably no longer runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import socket
from pathlib import Path

DIGEST_KEY = "vlmscope.sha256"


class DamagedFileError(ValueError):
    """A stored file is unreadable, lacks its digest, or its content does not match the digest."""


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------ temporary names
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TMP = re.compile(r"^\.(?P<stem>.+)\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)-(?P<rand>[0-9a-f]{8})\.tmp$")


def temporary_path(final: str | os.PathLike) -> Path:
    """A temporary name beside ``final``, unique to this writer: ``.NAME.HOST-PID-RANDOM.tmp``."""
    final = Path(final)
    return final.parent / f".{final.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) writes nothing any more
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporaries in ``folder`` left by this process or by a process that no longer runs.

    Another live writer's temporaries, another machine's, and files not named
    by ``temporary_path`` are never listed.
    """
    out = []
    for p in sorted(Path(folder).glob(".*.tmp")):
        m = _TMP.match(p.name)
        if m is None or m["host"] != _HOST:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or not pid_alive(pid):
            out.append(p)
    return out


def write_atomic(final: str | os.PathLike, write) -> Path:
    """``write(tmp_path)`` then rename onto ``final``; the temporary is removed on failure."""
    final = Path(final)
    tmp = temporary_path(final)
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


# ---------------------------------------------------------- table digests
def _canon_value(v):
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_canon_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _canon_value(x) for k, x in v.items()}
    return v


def table_digest(table) -> str:
    """SHA-256 of a pyarrow table's column names and values (not of its file layout)."""
    h = hashlib.sha256()
    h.update(json.dumps([table.num_rows, table.column_names]).encode())
    for name in table.column_names:
        col = table.column(name)
        h.update(json.dumps([str(col.type), [_canon_value(v) for v in col.to_pylist()]],
                            default=str).encode())
    return h.hexdigest()


# ------------------------------------------------------- checked safetensors
def tensors_digest(tensors: dict, metadata: dict) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes, and the other metadata."""
    import torch

    h = hashlib.sha256()
    h.update(json.dumps(sorted((k, v) for k, v in metadata.items() if k != DIGEST_KEY)).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checked(path: str | os.PathLike, tensors: dict, metadata: dict | None = None) -> Path:
    """Save ``tensors`` to safetensors with a content digest, through a per-writer temporary."""
    from safetensors.torch import save_file

    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta[DIGEST_KEY] = tensors_digest(tensors, meta)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_checked(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a file written by ``save_checked``, verified in full.

    Raises ``DamagedFileError`` (naming the file and what is wrong) when it is
    unreadable, has no digest, or its content does not match its digest.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - any unreadable file is damaged
        raise DamagedFileError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
    want = meta.get(DIGEST_KEY)
    if want is None:
        raise DamagedFileError(f"{path} has no content digest (written by an older version)")
    if tensors_digest(tensors, meta) != want:
        raise DamagedFileError(f"{path} does not match its content digest (the file is damaged)")
    return tensors, meta
