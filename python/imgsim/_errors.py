"""imgsim's exceptions: one class per kind of failure (the library's
``ErrorKind``), all under :class:`Error`; those caused by the caller's input
are also :class:`ValueError` (or :class:`LookupError`), those of the machine
also :class:`OSError` where Python has one for it."""


class Error(Exception):
    """Any imgsim failure. ``str(e)`` is the message ``imgsim`` prints."""


class InvalidError(Error, ValueError):
    """Bad input or arguments: a wrong dimension, NaN, k = 0, a parameter
    out of range, an unknown backbone."""


class NotFoundError(Error, LookupError):
    """What was named does not exist: a collection, an item id, a file."""


class ConflictError(Error):
    """The request conflicts with what is stored: a collection that already
    exists, a collection indexed with another embedder."""


class UnsupportedError(Error, ValueError):
    """An image in a format imgsim does not read."""


class UnprocessableError(Error, ValueError):
    """Input in a known format that cannot be used: damaged, empty."""


class TooLargeError(Error, ValueError):
    """Input over a limit (file size, pixels, decoded bytes)."""


class LockedError(Error):
    """The collection is open in another process (one at a time)."""


class PermissionDeniedError(Error, PermissionError):
    """The file system refuses: read-only, or no permission."""


class StorageFullError(Error, OSError):
    """The disk (or quota) is full: nothing was stored."""


class CorruptError(Error):
    """Stored data is damaged, or written by an incompatible version."""


class InternalError(Error):
    """Something failed on the machine's side: I/O, computation, a bug."""
