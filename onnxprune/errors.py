"""Error types. Every error a user can cause is an OnnxPruneError with a one-line message."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type when it has none), cut to
    `limit` characters if given: what a one-line error quotes of a library's."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if limit is not None and len(text) > limit:
        return text[: limit - 3] + "..."
    return text


class OnnxPruneError(Exception):
    """Base class. `exit_code` is what the command line returns for it."""

    exit_code = 1


class BadInputError(OnnxPruneError):
    """The model file, an argument or the configuration is unusable (exit code 2)."""

    exit_code = 2


class UnsupportedModelError(OnnxPruneError):
    """The model is valid but onnxprune cannot work on it (exit code 2)."""

    exit_code = 2


class ValidationError(OnnxPruneError):
    """The pruned model failed a check; nothing was written (exit code 1)."""

    exit_code = 1
