"""The one exception family of pyrustml.

Every error the library raises on purpose is a PyrustmlError; callers (and the CLI, which turns
them into one line on stderr) catch that one base class. Argument errors of the low-level kernel
wrappers are ValueError/TypeError subclasses as well, so numpy-style callers can catch those.
"""


class PyrustmlError(Exception):
    """Base class of every error pyrustml raises on purpose."""


class LibraryError(PyrustmlError):
    """libq8 could not be loaded, or refused a call it should have accepted."""


class KernelArgumentError(PyrustmlError, ValueError):
    """A kernel wrapper was given an array of the wrong shape, layout or size."""


class KernelTypeError(PyrustmlError, TypeError):
    """A kernel wrapper was given an array of the wrong dtype or a non-array."""


class ModelFormatError(PyrustmlError):
    """A checkpoint file is malformed: bad header, missing or mis-shaped tensor, bad config."""


class TokenizerError(ModelFormatError):
    """The checkpoint's tokenizer cannot be loaded or failed on an input (a panic inside the
    tokenizers library, an unknown token with no unk token, a pipeline that expands text without
    bound)."""


class ChatTemplateError(PyrustmlError):
    """The chat template is missing, malformed, refused the conversation, or hit a bound (time,
    output size, arithmetic size) while rendering. The template's own exception is the cause."""


class UnsupportedModelError(PyrustmlError):
    """A well-formed checkpoint uses an architecture or option pyrustml does not implement."""


class ContextLengthError(PyrustmlError):
    """The prompt (plus generation) does not fit the model's context window."""


class NumericalError(PyrustmlError):
    """A forward pass produced NaN or Inf."""


class ModelNotFoundError(PyrustmlError):
    """The checkpoint could not be found: no such directory, repo, revision, or not cached offline."""


class PromptError(PyrustmlError, ValueError):
    """A prompt that cannot run: token ids outside the vocabulary, or an empty prompt for a model
    without a start token. A ValueError too, as argument errors are."""


class PromptTypeError(PyrustmlError, TypeError):
    """A prompt that is neither a string nor a list of integer token ids (bools are not ids)."""


class OptionError(PyrustmlError, ValueError):
    """A generation or load option out of its range (max_tokens, temperature, top_p, quant, ...).
    A ValueError too, as argument errors are."""


class OptionTypeError(OptionError, TypeError):
    """An option of the wrong type (max_tokens='5', threads='2', stop=[1]). A TypeError too."""


class OutOfMemoryError(PyrustmlError, MemoryError):
    """A buffer the model needs (its KV cache for the configured context, its weights) does not
    fit in memory. A MemoryError too."""
