"""The one exception type for mistakes a user can fix (bad config, missing file, ...).

The CLI turns a `UserError` into one message on stderr and exit code 2, without a traceback.
Anything else is a bug and propagates with its traceback.
"""


class UserError(Exception):
    """A problem in the user's input: the message names the file/key/line and the fix."""
