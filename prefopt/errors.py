"""The error type for bad configuration or input: its message is one line naming the culprit
(config key, file or row), and the command-line entry points print just that line."""


class ConfigError(ValueError):
    pass
