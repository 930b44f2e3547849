"""Errors whose message is one line naming the culprit (config key, file, row, step): the
command-line entry points print just that line."""


class ConfigError(ValueError):
    pass


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite steps, out of memory); the message is one line."""


class Preempted(TrainingError):
    """SIGTERM: a checkpoint was written; resume with ``trainer.resume=auto``."""
