"""The base of every error a user can cause and fix: a missing or corrupt file, a bad
flag value, a wrong room key, an unreachable server. Its message is one line that names
the thing at fault; the CLI prints it and exits with status 2 instead of a traceback."""


class RoomfuseError(Exception):
    pass


class ConfigError(RoomfuseError, ValueError):
    """A setting that cannot be honoured on this machine or with these files: a device
    that is not there, a checkpoint that does not load, flags that contradict each
    other. Raised where the setting is first used (building a grower, opening a
    model), so every command stops at the same boundary with the same one line."""


USER_ERRORS = (RoomfuseError,)
