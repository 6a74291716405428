"""Error types shared by every layer.

Lower layers speak of their own parameters; the layer that knows the user's vocabulary (the sweep
knows settings, the CLI knows flags) rewords an error before passing it on, as scikit-learn's
estimators name their own parameters and Keras's layers their own arguments. A
:class:`LandscapeError` keeps its message as a template with named slots (``{data}``,
``{overwrite}``...), each filled by default with the raising layer's own word; :meth:`reworded`
fills them with another layer's words.
"""

from __future__ import annotations


class LandscapeError(ValueError):
    """Bad input or output, with a message whose named slots a higher layer may reword.

    ``LandscapeError("The {data} is empty.", data="'source' parameter")`` reads "The 'source'
    parameter is empty."; ``err.reworded({"data": "'data.source' setting"})`` reads "The
    'data.source' setting is empty.". Words for slots the message lacks are ignored.
    """

    def __init__(self, template: str, words: dict | None = None, **more: str):
        words = {**(words or {}), **more}
        super().__init__(template, words)  # args as the constructor takes them: picklable
        self.template = template
        self.words = words

    def reworded(self, words: dict) -> "LandscapeError":
        """The same error with its slots filled from ``words``; a slot already reworded keeps its
        word (the layer nearest the error, knowing most, names it first)."""
        fixed = getattr(self, "_fixed", frozenset())
        ours = {k: v for k, v in words.items() if k in self.words and k not in fixed}
        if not ours:
            return self
        new = type(self)(self.template, {**self.words, **ours})
        new._fixed = fixed | set(ours)
        new.__traceback__ = self.__traceback__
        return new

    def __str__(self) -> str:
        text = self.template
        for key, word in self.words.items():
            text = text.replace("{" + key + "}", word)
        return text


class SourceError(LandscapeError):
    """A model, data or weights source cannot be used."""


class OutputError(LandscapeError):
    """An output directory, surface file or journal that cannot be used as asked."""


class FilterRuleWarning(UserWarning):
    """Some kernels belong to layers whose filter layout is not known; the last axis was used."""


class TileError(RuntimeError):
    """A job failed for a reason that retrying will not fix, or ran out of retries."""


def reword(err: BaseException, words: dict) -> BaseException:
    """``err`` reworded if it is a :class:`LandscapeError`, else ``err`` itself."""
    return err.reworded(words) if isinstance(err, LandscapeError) else err


class in_terms:  # noqa: N801 - used as a context manager, like contextlib's
    """Reword every :class:`LandscapeError` raised inside with ``words`` (slot -> word)."""

    def __init__(self, words: dict):
        self.words = words

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, LandscapeError):
            new = err.reworded(self.words)
            if new is not err:
                raise new.with_traceback(tb) from err.__cause__
        return False


class Terminated(KeyboardInterrupt):
    """SIGTERM (``scancel``, ``timeout``, Kubernetes) received: the command ends as on Ctrl-C."""


_interrupt_requested: type[KeyboardInterrupt] | None = None


def request_interrupt(signum=None, frame=None) -> None:
    """A SIGINT handler (the command line installs it): raise KeyboardInterrupt now, as Python's
    own handler does, and remember it, so that a sweep raises it again at its next tile should
    the first one have been swallowed (an exception raised inside a finaliser is only printed)."""
    global _interrupt_requested
    _interrupt_requested = _interrupt_requested or KeyboardInterrupt
    raise KeyboardInterrupt


def request_termination(signum=None, frame=None) -> None:
    """A SIGTERM handler (the command line installs it): raise :class:`Terminated` now, and
    remember it as :func:`request_interrupt` does."""
    global _interrupt_requested
    _interrupt_requested = Terminated
    raise Terminated


def interrupt_requested() -> type[KeyboardInterrupt] | None:
    """KeyboardInterrupt or :class:`Terminated` once one was requested, else None."""
    return _interrupt_requested


def check_interrupt() -> None:
    """Raise KeyboardInterrupt (or :class:`Terminated`) if one was requested (see
    :func:`request_interrupt`)."""
    if _interrupt_requested is not None:
        raise _interrupt_requested


def forget_interrupt() -> None:
    """Forget a requested interrupt (a command has ended; the next one starts afresh)."""
    global _interrupt_requested
    _interrupt_requested = None
