"""Errors a user can act on. Each message says what was wrong, with which file, and what to do."""


class AdiposeSegError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class InputReadError(AdiposeSegError):
    """A file or folder could not be read as an image."""


class NotCTError(AdiposeSegError):
    """The image is not a CT in Hounsfield units (wrong modality or value range)."""


class ImageShapeError(AdiposeSegError):
    """The image has the wrong dimension, is empty, or is too small."""


class ModelError(AdiposeSegError):
    """A model directory is missing, incomplete or inconsistent."""


class OutputError(AdiposeSegError):
    """Results could not be written (full disk, permissions, refusing to overwrite)."""


class Cancelled(AdiposeSegError):
    """The run was cancelled by the user; nothing was written."""
