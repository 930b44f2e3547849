"""Where prefopt finds its configs and shipped weights, and where it caches what it computes.

``conf/`` sits at the top of the repository; ``prefopt/conf`` links to it, so that the configs ship
inside the package (a wheel or a non-editable install) and are found from any folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefopt.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent
CONF_DIR = str(PACKAGE / "conf")
ASSETS = PACKAGE / "assets"  # shipped weights: ${prefopt.asset:synth_base}


def cache_root() -> Path:
    """``$PREFOPT_CACHE`` (default ``~/.cache/prefopt``): model-made pools, latents, evaluations;
    a one-line error naming PREFOPT_CACHE when it cannot be a folder prefopt writes."""
    root = Path(os.path.expanduser(os.environ.get("PREFOPT_CACHE", "~/.cache/prefopt")))
    check_writable(root, f"PREFOPT_CACHE={root}", "point PREFOPT_CACHE at a folder you can write")
    return root


def check_writable(folder: Path, key: str, remedy: str) -> None:
    """A one-line ConfigError naming ``key`` unless ``folder`` is, or can be made, a folder this
    process writes (nothing is created to find out)."""
    folder = Path(os.path.abspath(folder))
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        what = "is a file" if existing == folder else f"is under {existing}, which is a file"
        raise ConfigError(f"{key}: {folder} {what}, not a folder; {remedy}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {existing} cannot be written (permission denied or a read-only file system); "
                          f"{remedy}")
