"""No configuration gives a traceback: Hypothesis draws command lines of every command (valid and
invalid values for every key of every config group, group options, unknown keys, and combinations
of them), runs the start-up validation every command runs before anything loads (compose, the typed
config and its checks: prefopt.cli.validate_job), and asserts that each either starts or fails with
an error of the user's input whose one line names a key."""

from __future__ import annotations

import re
import types
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, is_dataclass
from pathlib import Path

from hydra import initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefopt import config as schemas
from prefopt.cli import CONF_DIR, describe, user_error, validate_job
from prefopt.modules.hand_aware import DEFAULTS as HAND_AWARE_DEFAULTS
from prefopt.objectives import REGISTRY

CONFIGURATIONS = 550  # 58 s of one CPU core: Hydra composes each in ~100 ms
GARBAGE = ["abc", "null", "[]", "{}", "''", "-1", "0", "1.5", "1e400", "nan", "inf", "-inf", "true", "[1,x]"]
WORDS = ["no", "fp16", "bf16", "inductor", "aot_eager", "uniform", "logit_normal", "mode", "fail", "skip", "auto",
         "none", "easy", "normal", "hard", "base", "previous_stage", "pow2", "linear", "wandb", "offline", "online",
         "disabled", "ipa", "dpo", "gapo", "hgdpo", "sft", "best_worst", "all", "float32", "bfloat16", "cosine",
         "constant", "UNet2DModel", "DDPMScheduler", "FlowMatchEulerDiscreteScheduler", "renderer", "file"]
# sub-keys of the open dicts (model.config, ...) that the checks read
DICT_KEYS = {"model.config.in_channels": int, "model.config.sample_size": int, "model.config.block_out_channels":
             list[int], "model.config.patch_size": list[int], "model.scheduler_kwargs.shift": float,
             "data.stages.easy": str, "data.columns.caption": str, "eval.options.size": int}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def _number(value: float) -> str:
    return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, "nan" if value != value else repr(value))


def _values(kind) -> st.SearchStrategy[str]:
    """Override values for a field of type ``kind``: typical, edge and wrong ones."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    garbage = st.sampled_from(GARBAGE)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_values(a) for a in args if a is not type(None)], st.just("null"))
    if kind is bool:
        specific = st.sampled_from(["true", "false", "maybe", "1"])
    elif kind is int:
        specific = st.one_of(st.integers(-10, 10**6).map(str), st.sampled_from(["0", "1", "2", "3", "4", "8", "16"]))
    elif kind is float:
        specific = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(_number),
                             st.sampled_from(["0", "0.5", "1", "1e-05", "-0.5", "2.0"]))
    elif kind is str:
        specific = st.one_of(st.sampled_from(WORDS), st.text("abcxyz_/.", min_size=1, max_size=10))
    elif origin is list:
        specific = st.lists(_values(args[0]) if args else st.sampled_from(WORDS), max_size=4).map(
            lambda items: "[" + ",".join(items) + "]")
    elif origin is dict:
        specific = st.sampled_from(["{}", "{a: 1}", "{shift: 2.0}"])
    else:  # Any
        specific = st.sampled_from(["{}", "1", "x"])
    return st.one_of(specific, specific, garbage)


def _keys(schema, prefix: str = "") -> dict[str, object]:
    """Every key of a config schema with its type; nested configs flattened (``trainer.max_steps``)."""
    hints, found = typing.get_type_hints(schema), {}
    for item in fields(schema):
        kind = hints[item.name]
        if is_dataclass(kind):
            found.update(_keys(kind, f"{prefix}{item.name}."))
        elif item.name not in ("objective", "hand_aware", "reward"):
            found[f"{prefix}{item.name}"] = kind
    return found


def _objective_keys() -> dict[str, object]:
    return {f"objective.{k}": v for cls in REGISTRY.values() for k, v in typing.get_type_hints(cls).items()
            if not k.startswith("_") and typing.get_origin(v) is not typing.ClassVar}


HAND_AWARE_KEYS = {f"hand_aware.{k}": (type(v) if v is not None else str | None) for k, v in HAND_AWARE_DEFAULTS.items()}
TRAIN_GROUPS = {"objective": [*REGISTRY, "nope"], "model": [*_options("model"), "nope"], "data": _options("data"),
                "trainer": _options("trainer"), "eval": _options("eval"), "logger": _options("logger")}
COMMANDS = {  # config name -> (its keys and their types, its groups and their options)
    "config": ({**_keys(schemas.Config), **_objective_keys(), **HAND_AWARE_KEYS, **DICT_KEYS}, TRAIN_GROUPS),
    "pretrain": ({**_keys(schemas.PretrainConfig), **_objective_keys()}, TRAIN_GROUPS),
    "evaluate": (_keys(schemas.EvaluateConfig), {"model": _options("model"), "eval": _options("eval")}),
    "generate": (_keys(schemas.GenerateConfig), {"model": _options("model")}),
    "score": (_keys(schemas.ScoreConfig), {"reward": [*_options("reward"), "nope"]}),
    "curate": (_keys(schemas.CurateConfig), {}),
}


@st.composite
def command_lines(draw):
    """(config name, overrides): group options, then keys with drawn values, maybe an unknown key."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    keys, groups = COMMANDS[name]
    overrides = [f"{group}={draw(st.sampled_from(options))}" for group, options in groups.items()
                 if draw(st.booleans())]
    for key in draw(st.lists(st.sampled_from(sorted(keys)), max_size=4, unique=True)):
        value = draw(_values(keys[key]))
        overrides.append(f"{'++' if key in DICT_KEYS else ''}{key}={value}")
    if draw(st.integers(0, 9)) == 0:
        overrides.append(draw(st.sampled_from(["+nope=1", "trainer.nope=1", "nope=2", "model.nope=x"])))
    return name, overrides


def _culprits(name: str, overrides: list[str]) -> set[str]:
    """What a one-line error may name: any key of the command, any key or group the line overrides."""
    keys, groups = COMMANDS[name]
    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    parents = {key.rsplit(".", 1)[0] for key in [*keys, *named] if "." in key}
    return {*keys, *groups, *named, *parents, "PREFOPT_CACHE", "objective", "hand_aware", "reward"}


def _names_a_key(line: str, culprits: set[str]) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", line) for key in culprits)


def test_no_configuration_gives_a_traceback(tmp_path, monkeypatch, record_property):
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path / "cache"))
    outcomes = {"started": 0, "refused": 0}
    examples: dict[str, str] = {}

    @settings(max_examples=CONFIGURATIONS, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(command_lines())
    def starts_or_names_a_key(command_line):
        name, overrides = command_line
        try:
            validate_job(name, overrides)
        except Exception as error:  # noqa: BLE001 - the property: the user's error, one line, a key named
            assert user_error(error), f"{name} {overrides}: not the user's error: {error!r}"
            line = describe(error)
            assert line and "\n" not in line, f"{name} {overrides}: {line!r}"
            assert _names_a_key(line, _culprits(name, overrides)), f"{name} {overrides}: names no key: {line}"
            outcomes["refused"] += 1
            examples.setdefault(line.split(":")[0].split("=")[0][:40], line)
        else:
            outcomes["started"] += 1

    def draw_them_all():
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            starts_or_names_a_key()

    # in a thread of its own: CPython 3.11 maps and unmaps a 16 KiB chunk of frames each time a deep
    # recursion (compose's deepcopy) crosses a chunk's end, which pytest's deeper stack makes happen
    # millions of times (20 s of system time); a fresh thread's stack does not
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(draw_them_all).result()
    tried = outcomes["started"] + outcomes["refused"]
    record_property("configurations", tried)
    print(f"\n{tried} configurations: {outcomes['started']} start, {outcomes['refused']} refused in one line "
          f"naming a key ({len(examples)} distinct culprits)")
    assert tried >= 500
    assert outcomes["started"] >= 25 and outcomes["refused"] >= 250  # both kinds were drawn
