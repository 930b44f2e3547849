"""The embedded benchmarks, each whole in one place: its renderer, detector, reward, data builders,
evaluator and (in ``prefopt/assets``) its shipped base model. Nothing in the training loop, the core
or the objectives imports them: configs name their data builders (``data.builder``) and evaluators
(``eval.evaluator``), and ``conf/data/<benchmark>.yaml`` brings the benchmark's settings.

- ``synthhands``: 16-px hands whose finger count is exact (``data=synth``, ``eval=synthhands``);
- ``synthhands_anim``: clips of a hand following a driving motion (``data=synth_anim``, ``eval=synthhands_anim``).
"""
