"""``python -m prefopt.validate data=files data.path=<manifest> [objective=dpo]``: read and check
every row of the training data the way ``prefopt.train`` will (same config, same cache), print one
line per bad row and a summary; exit status 1 when a row is bad, 2 on a config error.

Training runs the same check at start-up; its result is cached (prefopt/data/files.py), so a
validated dataset starts without decoding again.
"""

from __future__ import annotations

import sys

from prefopt.cli import command


def validate(config) -> None:
    from prefopt.data.files import read_manifest

    paired = config.objective.paired
    if config.data.name != "files":
        print(f"data={config.data.name} is made in memory and checked as it is built: no files to validate")
        return
    _, report = read_manifest(config.data, paired)
    for problem in report.problems:
        print(problem)
    print(f"{report.manifest}: {report.rows} rows, {len(report.kept)} valid, {len(report.problems)} bad"
          f"{' (paired)' if paired else ''}")
    if report.problems or not report.kept:
        sys.exit(1)


main = command("config", validate)

if __name__ == "__main__":
    main()
