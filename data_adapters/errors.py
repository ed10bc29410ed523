"""The adapters' errors: one message for the user, and for a few, the facts behind it.

Light on purpose (no torch): the command line imports these, and the class-list reader, to check
its arguments before the slow work. A subclass carries the numbers a caller needs to say the same
thing in its own terms: the CLI names its flags (``--classes``, ``--channels``) where the Python
API names arguments.
"""

from __future__ import annotations

from collections.abc import Sequence


class AdapterError(ValueError):
    """A source that cannot be shown: wrong path, empty folder, class count mismatch, bad CSV...

    The message is meant for the user as is (the CLI prints it on one line).
    """


class ClassCountError(AdapterError):
    """The class names do not match the model's outputs: ``given`` names, ``outputs`` per example."""

    def __init__(self, message: str, given: int, outputs: int, names: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.given = given
        self.outputs = outputs
        self.names: list[str] | None = list(names) if names is not None else None


class ChannelsError(AdapterError):
    """The model wants ``expected``-channel images and was given ``got``-channel ones."""

    def __init__(self, message: str, expected: int, got: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class NotALearnerError(AdapterError):
    """A file given as a fastai Learner holds something else: ``holds`` is 'state dict' or 'nn.Module'."""

    def __init__(self, message: str, path: str, holds: str) -> None:
        super().__init__(message)
        self.path = path
        self.holds = holds
