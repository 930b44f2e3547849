"""Where prefopt finds its configs and shipped weights, and where it caches what it computes.

``conf/`` sits at the top of the repository; ``prefopt/conf`` links to it, so that the configs ship
inside the package (a wheel or a non-editable install) and are found from any folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CONF_DIR = str(PACKAGE / "conf")
ASSETS = PACKAGE / "assets"  # shipped weights: ${prefopt.asset:synth_base}


def cache_root() -> Path:
    """``$PREFOPT_CACHE`` (default ``~/.cache/prefopt``): model-made pools, latents, evaluations."""
    return Path(os.path.expanduser(os.environ.get("PREFOPT_CACHE", "~/.cache/prefopt")))
