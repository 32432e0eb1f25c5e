"""Errors a user can fix. Front ends print them as one line and exit 2."""


class UserError(Exception):
    """Bad input from the user: a config key, a file, a CLI value.

    The message is one line that names the key or file and says what is allowed.
    Front ends print it without a traceback and exit with code 2.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(UserError):
    """A config value, key or combination is not allowed."""


class DataError(UserError):
    """A corpus, token file or tokenizer cannot be used."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, unsafe or does not match the config."""
