"""The built wheel works installed as it is (not editable), from any folder: its configs ship inside
the package, a bad override fails in one line, and a 2-step run finishes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_installed_elsewhere_runs_from_an_empty_folder(tmp_path, model_cache):
    dist, site, empty = tmp_path / "dist", tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(ROOT)], check=True, cwd=tmp_path, capture_output=True)
    wheel = next(dist.glob("prefopt-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    # the wheel's prefopt, not this checkout's (PYTHONPATH comes before the editable install's finder)
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PREFOPT_CACHE": str(model_cache)}

    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=empty, env=env,
                              timeout=300)

    where = run("-c", "import prefopt.paths as p; print(p.PACKAGE); print(sorted(x.name for x in (p.PACKAGE / 'conf').iterdir()))")
    assert where.stdout.splitlines()[0] == str(site / "prefopt"), where.stdout + where.stderr
    assert "config.yaml" in where.stdout and "objective" in where.stdout
    bad = run("-m", "prefopt.train", "objective=nope")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "prefopt: config error: objective=nope: no such option (available: dpo, gapo, hgdpo, ipa, sft)"]
    done = run("-m", "prefopt.train", "objective=dpo", "logger=none", "trainer.max_steps=2", "trainer.rounds=1", "trainer.batch_size=4",
               "data.num_samples=32", "data.sample_steps=4", "eval.num_samples=8", "eval.steps=4", "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(line.startswith("prefopt: dpo β=500 | lr 2e-04 | 2 steps") for line in done.stdout.splitlines())
    assert (empty / "run" / "summary.json").is_file() and (empty / "run" / "final").is_dir()
    assert not (empty / "conf").exists()
