"""The one error type users see: a clear message, never a bare traceback."""

from __future__ import annotations


class RectkError(Exception):
    """An error caused by the user's input (recipe, data, command line).

    The command line prints ``str(err)`` and exits with status 2; the message must name the
    file, key or row at fault and say what was expected.
    """


class RecipeError(RectkError):
    """A recipe file or override is malformed, unknown, or of the wrong type."""


class DataError(RectkError):
    """A data file is missing, malformed, or yields an unusable data set."""


class PluginError(RectkError):
    """A plugin name is unknown or a plugin failed to import."""


class PlanError(RectkError):
    """A learning path cannot be planned: an unknown id, a prerequisite cycle, an unreachable
    goal (the message names the courses at fault)."""


class TrainingError(RectkError):
    """Training cannot go on (for example, the loss became NaN)."""
