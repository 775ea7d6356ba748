"""The one error of the image conversion package, and how values appear in its messages."""

from __future__ import annotations

LONG_VALUE = 80  # characters of a field value quoted in an error message



class ImageConversionError(ValueError):
    """A message (or argument) that cannot be converted; the text names the field and value."""


def show(value: object, limit: int = LONG_VALUE) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a 1 MB ``encoding`` string must not
    become a 1 MB log line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"


def shorten(text: str, limit: int = 4 * LONG_VALUE) -> str:
    """``text`` cut to about ``limit`` characters (decoder output quoted in a message)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"
