"""Evaluation strategies: how the points of one compiled call are evaluated.

A :class:`Strategy` names a way: vectorised over the points or a compiled loop, the first-layer
shortcut or folded batch norms (each where it applies), blocks of points compiled by XLA, blocks
run at the same time with single-threaded ops. :func:`call_body` builds the function a call runs
for one; every strategy gives the same values up to float32 rounding.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import re
from dataclasses import dataclass

import tensorflow as tf

METHODS = ("vectorized", "loop")
# what a strategy's compiled call raises where the model cannot run that way (ops without a
# vectorised form or without an XLA kernel)
UNAVAILABLE = (ValueError, TypeError, NotImplementedError, tf.errors.OpError)


# what TensorFlow says where a strategy cannot run, and the same in words: (pattern, words)
_REASONS = (
    (r"No pfor vectorization defined for (\w+)",
     "TensorFlow has no vectorised form of the model's {0} op"),
    (r"Input \"(\w+)\" of op '(\w+)' expected to be loop invariant",
     "TensorFlow cannot vectorise the model's {1} op when its {0} differs per point"),
    (r"No registered '(\w+)' OpKernel for XLA",
     "XLA has no kernel for the model's {0} op"),
    (r"[Dd]etected unsupported operations when trying to compile graph .*?: (\w+)",
     "XLA cannot compile the model's {0} op"),
)


def unavailable_reason(err: BaseException) -> str:
    """Why a strategy's compiled call failed, in words: the op TensorFlow or XLA could not handle
    where its message names one, else the error TensorFlow repeats under its "in user code:"
    traceback, else the message's first line, else the error's class name."""
    text = str(err)
    for pattern, words in _REASONS:
        found = re.search(pattern, text)
        if found:
            return words.format(*found.groups())
    repeated = re.search(r"^\s*(?:\w+\.)*\w+(?:Error|Exception): (\S.*)$", text, re.MULTILINE)
    if repeated:
        return repeated.group(1).strip()[:200]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:200] if first and first != "in user code:" else type(err).__name__


# Keras classes with an op TensorFlow cannot vectorise strictly where its inputs differ per
# point (measured with TensorFlow 2.21, Keras 3): convolutions with a per-point kernel
# (Conv2D, Conv2DBackpropInput), and the accuracy metrics built on argmax (a Bitcast) or
# in_top_k. Depthwise convolutions, attention, embeddings and normalisations vectorise.
_UNVECTORIZED_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
                        "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D")
_UNVECTORIZED_METRICS = ("SparseCategoricalAccuracy", "CategoricalAccuracy",
                         "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy")


def _layers(model):
    """Every layer of ``model``, nested models' layers included (depth first)."""
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _layers(layer)


def known_vectorization_failure(model, metrics=(), skip=()) -> str | None:
    """Why strict vectorisation over points is known to fail for ``model`` with the compiled
    ``metrics`` (Keras metric objects), in words, without trying it: a layer or metric of a
    class that has an op without a strictly vectorised form; None where none is known (it may
    still fail). ``skip``: layers whose per-point work is done otherwise (the first-layer
    shortcut's)."""
    import keras

    def known(obj, names, module):
        return next((name for name in names if isinstance(obj, getattr(module, name))), None)

    skipped = {id(layer) for layer in skip}
    for layer in _layers(model):
        name = None if id(layer) in skipped else known(layer, _UNVECTORIZED_LAYERS, keras.layers)
        if name and layer.trainable_weights:
            return f"TensorFlow cannot vectorise the model's {name} layers (known; not tried)"
    for metric in metrics:
        name = known(metric, _UNVECTORIZED_METRICS, keras.metrics)
        if name:
            return f"TensorFlow cannot vectorise the {name} metric (known; not tried)"
    return None


@dataclass(frozen=True)
class Strategy:
    """How a call's points are evaluated.

    ``method``: ``vectorized`` (``tf.vectorized_map`` over the points) or ``loop`` (a compiled
    ``tf.map_fn``); ``fallback``: vectorised with ``pfor``'s while loops over just the ops that
    have no vectorised form (what ``mode: vectorized`` always does; in ``mode: auto`` the
    vectorised method is strict without it); ``shortcut``: the first-layer shortcut and ``fold``: batch norms folded into
    the layers before them, each only where it applies (the shortcut wins where both are on);
    ``xla``: blocks of points compiled by XLA; ``parallel``: blocks of a call run this many at a
    time, single-threaded each.
    """

    method: str = "vectorized"
    shortcut: bool = False
    fold: bool = False
    xla: bool = False
    parallel: int = 1
    fallback: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"The 'method' parameter must be 'vectorized' or 'loop'. "
                             f"Got {self.method!r} instead.")
        if (isinstance(self.parallel, bool) or not isinstance(self.parallel, numbers.Integral)
                or self.parallel < 1):
            raise ValueError(f"The 'parallel' parameter must be an integer >= 1. "
                             f"Got {self.parallel!r} instead.")
        for name in ("shortcut", "fold", "xla", "fallback"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        object.__setattr__(self, "parallel", int(self.parallel))
        if self.fallback and self.method != "vectorized":
            raise ValueError("The 'fallback' parameter applies to the vectorised method only. "
                             "Got fallback=True with method='loop' instead.")

    @property
    def label(self) -> str:
        """How the strategy is named in the timings: ``loop + fold + xla + parallel 2``,
        ``vectorized + fallback``."""
        return "".join((self.method, " + fallback" if self.fallback else "",
                        " + shortcut" if self.shortcut else "",
                        " + fold" if self.fold else "", " + xla" if self.xla else "",
                        f" + parallel {self.parallel}" if self.parallel > 1 else ""))

    @property
    def blocked(self) -> bool:
        """Whether a call's points go in fixed blocks (for XLA or parallel blocks)."""
        return self.xla or self.parallel > 1


def intra_op_threads() -> int:
    """The threads TensorFlow's ops in this process may use: as configured, else the CPUs this
    process may run on."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def quiet_tensorflow():
    """TensorFlow's logger silenced: a failed vectorisation logs the whole graph node."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _loop(point, out, strict: bool):
    return lambda batch: tf.map_fn(point, batch, fn_output_signature=out)


def _vectorized(point, out, strict: bool):
    # 'auto' mode first tries strict vectorisation (the evaluator falls back to a loop over
    # points); 'vectorized' lets pfor loop over just the ops it cannot vectorise
    return lambda batch: tf.vectorized_map(point, batch, fallback_to_while_loop=not strict)


_METHOD_BODIES = {"loop": _loop, "vectorized": _vectorized}


def _xla(body):
    """One fused program per block: no per-op dispatch, fused elementwise work."""
    return tf.function(body, jit_compile=True, autograph=False)


def blocked(body, block: int, width: int, threads: int, dtype):
    """``body`` over a call's items in blocks of exactly ``block`` rows, the last padded with
    copies of the final item (their values are dropped): one input shape for XLA to compile,
    whatever the call's size. With ``threads`` > 1 the blocks run at the same time, each with
    single-threaded ops (a tf.data map on a private pool of that many threads): many small
    per-point kernels keep every core busy instead of splitting each kernel over the cores."""
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False

    def run(batch):
        n = tf.shape(batch)[0]
        count = (n + block - 1) // block
        padded = tf.concat([batch, tf.repeat(batch[-1:], count * block - n, axis=0)], axis=0)
        blocks = tf.reshape(padded, tf.stack([count, block, width]))
        if threads > 1:
            # unconverted, as the compiled call itself (AutoGraph would convert the model)
            data = tf.data.Dataset.from_tensor_slices(blocks).map(
                tf.autograph.experimental.do_not_convert(body), num_parallel_calls=threads,
                deterministic=True).with_options(options)
            out = data.batch(tf.cast(count, tf.int64)).get_single_element()
        else:
            out = tf.map_fn(body, blocks, fn_output_signature=dtype)
        return tf.reshape(out, tf.stack([count * block, -1]))[:n]

    return run


def call_body(point, strategy: Strategy, *, width: int, out, strict: bool, block: int):
    """The function a compiled call runs under ``strategy``: items (P, width) -> values (P, V) of
    dtype ``out``, ``point`` mapping one item (width,) to its values (V,). ``strict``: vectorise
    strictly (no while-loop fallback inside ``pfor``); ``block``: points per XLA or parallel
    block."""
    body = _METHOD_BODIES[strategy.method](point, out, strict)
    if strategy.xla:
        body = _xla(body)
    if strategy.blocked:
        body = blocked(body, block, width, strategy.parallel, out)
    return body
