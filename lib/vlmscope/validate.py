"""Arguments checked before any model loads: counts, seeds and output folders.

Each check raises ``ValueError`` naming the argument as the user typed it
(``--n``, ``--seed``, ``--out``), so a mistake costs nothing and reads as a
sentence, never as a traceback after minutes of loading.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def check_count(value, flag: str, minimum: int = 1) -> int:
    """``value`` as an integer >= ``minimum``; else a ``ValueError`` naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{flag} must be a whole number >= {minimum}, not {value!r}")
    if value < minimum:
        raise ValueError(f"{flag} must be >= {minimum}, not {value}")
    return value


def check_seed(value, flag: str = "--seed") -> int:
    """A seed: an integer >= 0 (numpy's seeds are non-negative)."""
    return check_count(value, flag, minimum=0)


def check_out_dir(out, flag: str = "--out", inside: tuple[str, ...] = ()) -> Path:
    """A folder that exists or can be created, and can be written to.

    ``inside``: sub-folders the run will create (``("fractions", "parts")``); a
    file standing where one of them must go is an error too. The folders are
    created; nothing else is left behind.
    """
    path = Path(out).expanduser()
    for parent in [*reversed(path.parents), path]:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{flag} {out}: {parent} is a file, not a folder")
    sub = path
    for name in inside:
        sub = sub / name
        if sub.exists() and not sub.is_dir():
            raise ValueError(f"{flag} {out}: {sub} is a file, but the run needs a folder there")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{flag} {out}: cannot create the folder ({e.strerror or e})") from None
    probe = path / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{flag} {out}: cannot write there ({e.strerror or e})") from None
    return path


def check_run_arguments(n, seed, out, experiment: str | None = None) -> None:
    """``run ...``'s arguments: ``--n`` >= 1, ``--seed`` >= 0, ``--out`` a writable folder."""
    check_count(n, "--n")
    check_seed(seed)
    check_out_dir(out, inside=(experiment, "parts") if experiment else ())
