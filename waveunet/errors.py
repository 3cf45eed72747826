"""The one exception users see.

Anything the user can fix (a missing file, a bad recipe, a checkpoint that is not ours) raises
:class:`WaveUNetError` with a one-line message naming the file and the problem. The CLI turns it
into ``Error: <message>`` and a non-zero exit, without a traceback.
"""


class WaveUNetError(Exception):
    """A user-facing error: the message is one line and names the offending file or value."""
