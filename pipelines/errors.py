"""The errors a user can fix. The CLI prints them as one line and exits 2; anything else is a bug."""

from datamodules.files import DataError


class ReprozooError(Exception):
    """Base of the errors that carry a message a user can act on."""


class ParamsError(ReprozooError):
    """params.yaml or a recipe file is missing, malformed or invalid; the message names the file and the
    dotted path."""


class UnknownKey(ReprozooError):
    """A paper or dataset key that is not in the registry."""


class StageError(ReprozooError):
    """A stage was run before the stage it depends on produced its output."""


USER_ERRORS = (ReprozooError, DataError)
