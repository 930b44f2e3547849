"""Every ``python -m prefopt.<command>`` line README.md shows composes: run with ``--cfg job`` (Hydra
composes the config and prints it), it exits 0, so a documented command cannot silently break."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_HYDRA = {"prefopt.report"}  # argparse: takes a folder


def single_job(arguments: list[str]) -> list[str]:
    """A sweep's first job (``--cfg`` composes one job): ``-m`` dropped, ``key=a,b`` -> ``key=a``."""
    if "-m" not in arguments and "--multirun" not in arguments:
        return arguments
    return [a.split(",")[0] if "=" in a and "[" not in a else a for a in arguments if a not in ("-m", "--multirun")]


def readme_commands() -> list[tuple[str, list[str]]]:
    """(module, arguments) of each distinct command line in the README (comments and shell after ``&&`` cut)."""
    found = []
    for line in README.read_text(encoding="utf-8").splitlines():
        for match in re.finditer(r"python -m (prefopt\.[a-z_]+)([^`#&|]*)", line):
            command = (match.group(1), shlex.split(match.group(2)))
            if command not in found:
                found.append(command)
    return found


def test_the_readme_shows_the_commands_a_user_needs():
    modules = {module for module, _ in readme_commands()}
    assert {"prefopt.train", "prefopt.generate", "prefopt.score", "prefopt.curate"} <= modules
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("module, arguments", readme_commands(), ids=lambda value: " ".join(value)
                         if isinstance(value, list) else value)
def test_readme_command_composes(tmp_path, module, arguments):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    flags = ["--help"] if module in NOT_HYDRA else ["--cfg", "job"]
    done = subprocess.run([sys.executable, "-m", module, *single_job(arguments), *flags], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
