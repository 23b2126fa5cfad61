"""One exception type for every problem a user can fix.

Messages name the problem and what to do about it, so the CLI, the worker and
the Slicer module can show them as they are, without a traceback.
"""


class PromptRegisterError(Exception):
    """A problem with the user's input, files or settings (not a bug)."""
