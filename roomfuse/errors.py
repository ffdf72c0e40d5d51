"""The base of every error a user can cause and fix: a missing or corrupt file, a bad
flag value, a wrong room key, an unreachable server. Its message is one line that names
the thing at fault; the CLI prints it and exits with status 2 instead of a traceback."""


class RoomfuseError(Exception):
    pass


USER_ERRORS = (RoomfuseError,)
