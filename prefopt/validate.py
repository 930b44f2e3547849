"""``python -m prefopt.validate data=files data.path=<manifest | shards | folder> [objective=dpo]``: read
and check every row of the training data the way ``prefopt.train`` will (same reading, same
checks), streaming in bounded memory, decoding in ``trainer.num_workers`` DataLoader workers; print
one line per bad row and a summary; exit status 1 when a row is bad, 2 on a config error.
"""

from __future__ import annotations

import sys

from prefopt.cli import command


def validate(config) -> None:
    from prefopt.config import data_builder
    from prefopt.data.cache import Settings, Single, check, prompt_ids
    from prefopt.data.files import stage_config
    from prefopt.data.sources import open_source

    paired = config.objective.paired
    if not getattr(data_builder(config.data), "streams", False):
        print(f"data={config.data.name} is made in memory and checked as it is built: no files to validate")
        return
    bad = False
    for stage in sorted(config.data.stages) or [None]:
        cfg = stage_config(config.data, stage)
        source = open_source(cfg.path, cfg.columns)
        counts = check(source, Settings(cfg.image_size, cfg.num_frames, paired, "check"), Single(),
                       config.trainer.num_workers)
        for problem in counts["problems"]:
            print(problem)
        ties = f", {counts['ties']} ties dropped" if counts["ties"] else ""
        print(f"{cfg.path}: {counts['rows']} rows, {counts['kept']} valid, {counts['bad']} bad{ties}"
              f"{' (paired)' if paired else ''}; prompts: {len(prompt_ids(source))} distinct")
        bad = bad or bool(counts["problems"]) or not counts["kept"]
    if bad:
        sys.exit(1)


main = command("config", validate)

if __name__ == "__main__":
    main()
