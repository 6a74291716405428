"""A call made in another process, relayed back as if it had been made here.

A Ray sweep's driver needs TensorFlow only to prepare its planes (build the model, read its
centre); importing it costs seconds of CPU that, on a small machine, the workers starting at the
same time need for their own import. A worker that has imported it already prepares the planes
instead, and :func:`answer` / :meth:`Answer.deliver` make that call transparent: its value comes
back; an exception comes back and is raised again (as itself when its class is a builtin or one
of this package's error types, else as the nearest builtin class with the same message, so that
unpickling it never imports what the worker had imported); its warnings and the
``landscape_dist`` log records are emitted again in the caller, under the caller's filters and
handlers.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from dataclasses import dataclass

__all__ = ["Answer", "answer"]

_PORTABLE = ("builtins", "landscape_dist.errors")  # modules whose classes unpickle anywhere


@dataclass
class Answer:
    """The outcome of a call: ``value`` or ``error``, and what it warned and logged meanwhile
    (``warned``: (category, message, filename, line number) each)."""

    value: object = None
    error: BaseException | None = None
    records: list = None
    warned: list = None

    def deliver(self):
        """Emit the call's log records and warnings here, then return its value or raise its
        error."""
        for record in self.records or ():
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
        for category, message, filename, lineno in self.warned or ():
            warnings.warn_explicit(message, category, filename, lineno)
        if self.error is not None:
            raise self.error
        return self.value


def answer(function, *args) -> Answer:
    """``function(*args)`` with its outcome, warnings and ``landscape_dist`` log records kept in
    an :class:`Answer` that pickles without importing anything the call imported."""
    collect = _Collect()
    logger = logging.getLogger("landscape_dist")
    saved = logger.level, logger.propagate
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = Answer(value=function(*args))
            except Exception as err:  # noqa: BLE001 - every error goes back to the caller
                result = Answer(error=portable_error(err))
    finally:
        logger.removeHandler(collect)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    result.records = collect.records
    result.warned = [(_portable_class(w.category, Warning), str(w.message), w.filename, w.lineno)
                     for w in caught]
    return result


def _portable_class(cls: type, root: type) -> type:
    """``cls`` if it unpickles without importing anything new, else its nearest such base."""
    for klass in cls.__mro__:
        if klass.__module__ in _PORTABLE and issubclass(klass, root):
            return klass
    return root


def portable_error(err: BaseException) -> BaseException:
    """``err`` itself where its class and arguments pickle portably, else an error of the nearest
    portable class with the same message."""
    cls = _portable_class(type(err), Exception)
    if cls is type(err):
        try:
            pickle.loads(pickle.dumps(err))
            return err
        except Exception:  # noqa: BLE001 - any failure to round-trip: keep the message only
            cls = _portable_class(cls.__mro__[1], Exception)
    try:
        return cls(str(err))
    except Exception:  # noqa: BLE001 - a class whose constructor wants more
        return RuntimeError(str(err))


class _Collect(logging.Handler):
    """Keeps log records, their arguments merged into the message so that they pickle."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        record.exc_info = record.exc_text = None
        self.records.append(record)
