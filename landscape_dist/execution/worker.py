"""The worker: a model replica with its data and the current plane, evaluating jobs.

The same class runs in this process (:class:`~landscape_dist.execution.local.InProcessPool`), as
a Ray actor (:class:`~landscape_dist.execution.ray_pool.RayPool`) or wherever another backend puts
it; pools call its methods by name (see :class:`~landscape_dist.execution.scheduler.Backend`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from ..core.quantities import GRADIENT, HVP, HVP_AT, QuantitySet
from ..errors import in_terms
from ..model.quantities import DEFAULT_QUANTITIES
from ..registry import QUANTITIES, restore_plugins


def _kinds(evaluator, names, evaluation) -> list:
    """One instance of each quantity kind asked for, told which of its names are wanted."""
    by_class: dict = {}
    for name in names:
        by_class.setdefault(QUANTITIES[name], []).append(name)
    return [cls(evaluator, tuple(group), evaluation) for cls, group in by_class.items()]


def _only(described: QuantitySet, name: str) -> QuantitySet:
    """The part of a kind's description that one of its names stands for."""
    return QuantitySet(tuple(p for p in described.parts if p.name == name))


def active_quantities(described: dict, names) -> QuantitySet:
    """What a worker returns when it computes ``names``: their descriptions merged."""
    missing = [n for n in names if n not in described]
    if missing:
        raise ValueError(f"The workers were not built for the quantities {missing}; they have "
                         f"{sorted(described)}.")
    sets = [described[n] for n in names]
    return sum(sets[1:], sets[0])


# Optional modules Keras imports with TensorFlow for what a worker never uses (scikit-learn
# wrappers, image galleries drawn with matplotlib, notebook display): about 1.3 s of the 3.6 s
# import of TensorFlow on a 2-core machine, paid again by every worker before its first job.
_NOT_FOR_WORKERS = ("sklearn", "matplotlib", "IPython")


def import_tensorflow_lean() -> None:
    """Import TensorFlow without Keras's optional integrations (:data:`_NOT_FOR_WORKERS`): each
    one not imported yet is unimportable while TensorFlow loads (Keras catches the ImportError
    and leaves that integration off) and importable again afterwards, so this process can still
    import it itself (the digits example reads its data with scikit-learn)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"  # as the package's import sets it (a shell's value loses)
    if "tensorflow" in sys.modules:
        return
    blocked = [name for name in _NOT_FOR_WORKERS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None
    try:
        import tensorflow  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def configure_tensorflow(threads: int | None, use_gpu: bool) -> None:
    """Match TensorFlow's thread pools to the CPUs granted (None: leave them); turn on GPU
    memory growth. Must run before the first TensorFlow op of the process."""
    import_tensorflow_lean()
    import tensorflow as tf

    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    if use_gpu:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass


class LandscapeWorker:
    """Holds its own model replica, its data (or its shard of it) and an evaluator; stateless
    apart from those. Computes the registered quantity kinds named in ``quantities``.

    Built from a :class:`~landscape_dist.model.sources.ModelSpec` and a
    :class:`~landscape_dist.model.sources.DataSpec`; the plane arrives from the object store.
    ``remote=True`` (an actor): bad model or data is reported by :meth:`ready` instead of raised.
    ``plugins``: what the driver registered from outside the package (plane kinds, quantities,
    output formats, backends: ``registry.plugins()`` there), registered here first.
    """

    def __init__(self, model_spec, data_spec, evaluation, threads: int | None = None,
                 use_gpu: bool = False, remote: bool = False, shard: int = 0,
                 quantities: tuple[str, ...] = DEFAULT_QUANTITIES,
                 plugins: dict | None = None):
        restore_plugins(plugins or {})  # before any quantity is looked up
        self.tmp = None
        if remote:  # TensorFlow's autograph leaves its generated files behind in killed processes
            self.tmp = tempfile.mkdtemp(prefix="landscape_dist-worker-")
            tempfile.tempdir = self.tmp
        configure_tensorflow(threads, use_gpu)
        from ..model.evaluator import LandscapeEvaluator

        self.error = None
        self.evaluation = evaluation
        self._products = None
        self._gradients = None
        try:
            model = model_spec.build()
            specs = data_spec if isinstance(data_spec, dict) else {"": data_spec}
            self.evaluators, self.kinds, self.described = {}, [], {}
            for dataset, spec in specs.items():
                with in_terms({"data": f"dataset {dataset!r}"} if dataset else {}):
                    x, y, total = spec.load(shard, with_total=True)
                    evaluator = LandscapeEvaluator(model, x, y, batch_size=evaluation.batch_size,
                                                   memory_budget_mb=evaluation.memory_budget_mb,
                                                   mode=evaluation.mode,
                                                   tune=evaluation.tune,
                                                   tune_after=1,  # the first tile comes sooner
                                                   tune_share=evaluation.tune_share,
                                                   tuning_cache=evaluation.tuning_cache,
                                                   population=((spec.examples, total)
                                                               if spec.examples else None))
                    kinds = _kinds(evaluator, quantities, evaluation)
                    if spec.num_shards > 1:
                        for kind in kinds:
                            kind.check_shardable()
                self.evaluators[dataset] = evaluator
                for kind in kinds:
                    self._add_kind(dataset, kind)
            self.evaluator = next(iter(self.evaluators.values()))  # the first dataset's
            self.active = tuple(quantities)
            self.quantities = active_quantities(self.described, self.active)
        except ValueError as err:  # bad input (model, data): reported by ready(), not retried
            if not remote:
                raise
            self.error = err

    def _add_kind(self, dataset: str, kind) -> None:
        """Keep a quantity kind, and what each of its names yields (``<dataset>/...`` names for
        one of several datasets). A named dataset beside an unnamed one (the subset of two
        fidelities) is asked for by its own names, ``<dataset>/<name>``, never with the other's."""
        self.kinds.append((dataset, kind))
        described = kind.describe()
        for name in kind.names:
            one = _only(described, name) if len(kind.names) > 1 else described
            one = one.for_dataset(dataset) if dataset else one
            key = self._key(dataset, name)
            self.described[key] = self.described[key] + one if key in self.described else one

    def _key(self, dataset: str, name: str) -> str:
        """The name a quantity of ``dataset`` is selected by (see :meth:`_add_kind`)."""
        return f"{dataset}/{name}" if dataset and "" in self.evaluators else name

    def ready(self) -> dict:
        """Describes the worker once it is built: pid, Ray node id, the quantities it returns,
        examples, points per call; or ``{'error': exception}`` when the model or data given
        cannot be used."""
        if self.error is not None:
            from .relay import portable_error

            return {"error": portable_error(self.error)}  # unpickles where Keras is not imported
        ray = sys.modules.get("ray")  # a worker outside Ray need not import it
        node = ray.get_runtime_context().get_node_id() if ray and ray.is_initialized() else None
        return {"pid": os.getpid(), "node": node, "tmp": self.tmp, "quantities": self.quantities,
                "described": self.described, "sizes": self.sizes,
                "points_per_call": self.evaluator.points_per_call,
                "batch_size": self.evaluator.batch_size, "identity": self.identity()}

    def identity(self) -> str:
        """A digest of what this worker's strategy timings depend on before a plane is set:
        its model, data shapes, settings, device kind and threads. Workers of one identity
        share one worker's choice (see :mod:`~landscape_dist.execution.sharing`)."""
        from ..model.tuning_cache import key_digest

        return key_digest({dataset: {k: v for k, v in ev.tuning_key().items() if k != "k"}
                           for dataset, ev in self.evaluators.items()})

    def expect_jobs(self, jobs: int | None) -> bool:
        """The sweep's jobs still to come (None: unknown), for the tuning budget."""
        for evaluator in self.evaluators.values():
            evaluator.expect_jobs(jobs)
        return True

    def follow(self) -> bool:
        """Do not time the strategies: an identical worker's choice comes by :meth:`adopt`."""
        for evaluator in self.evaluators.values():
            evaluator.follow()
        return True

    def shared_choices(self) -> dict | None:
        """Each evaluator's choice for identical workers, by dataset; None while any is still
        to be chosen."""
        if any(ev.choosing for ev in self.evaluators.values()):
            return None
        return {dataset: ev.shared_choice for dataset, ev in self.evaluators.items()}

    def adopt(self, choices: dict) -> bool:
        """Use an identical worker's choices (:meth:`shared_choices`), by dataset."""
        for dataset, evaluator in self.evaluators.items():
            evaluator.adopt(choices.get(dataset))
        return True

    @property
    def sizes(self) -> dict[str, int]:
        """Examples this worker holds, by dataset ('' for the only one)."""
        return {dataset: ev.n_examples for dataset, ev in self.evaluators.items()}

    def set_plane(self, centre, directions, non_trainable, non_trainable_directions=None,
                  recompute=None) -> bool:
        for evaluator in self.evaluators.values():
            evaluator.set_plane(centre, directions, non_trainable, non_trainable_directions,
                                recompute)
        return True

    def choices(self) -> dict:
        """Each evaluator's strategy (and the timings it was chosen by), by dataset."""
        return {dataset: ev.choice for dataset, ev in self.evaluators.items()}

    def select_quantities(self, quantities: tuple[str, ...]) -> bool:
        """Compute only ``quantities`` (configuration names this worker was built for) from now."""
        self.quantities = active_quantities(self.described, quantities)
        self.active = tuple(quantities)
        return True

    def evaluate(self, which: str, items) -> dict:
        """The parts of every quantity in use at ``items`` (POINTS: plane coordinates, WEIGHTS:
        flat weight vectors) on this worker's data; or for HVP, the Hessian of the first dataset's
        loss at the plane's centre times each row of ``items``; or for GRADIENT, the first
        dataset's loss and its gradient at each row of ``items`` (flat weights), the non-trainable
        values the centre's. Shards are combined by the pool."""
        if which == GRADIENT:
            if self._gradients is None:
                from ..model.gradients import LossGradients

                self._gradients = LossGradients(self.evaluator)
            loss, gradient = self._gradients.at(items)
            return {"loss": loss, "gradient": gradient}
        if which in (HVP, HVP_AT):  # HVP_AT: pairs (m, 2, size) of weights and vectors
            if self._products is None:
                from ..model.hessian import HessianProducts

                self._products = HessianProducts(self.evaluator, self.evaluation.mode)
            if which == HVP_AT:
                return {"hvp": self._products.products(items[:, 0], items[:, 1])}
            return {"hvp": self._products.at_centre(items)}
        parts = {}
        wanted = {p.name for p in self.quantities.parts}
        for dataset, quantity in self.kinds:
            if not {self._key(dataset, n) for n in quantity.names} & set(self.active):
                continue
            computed = quantity.compute(which, items)
            named = {f"{dataset}/{k}": v for k, v in computed.items()} if dataset else computed
            parts.update({k: v for k, v in named.items() if k in wanted})
        return parts

    def call(self, function, args: tuple, cwd: str, node: str | None):
        """``function`` (the caller's, sent by reference) called with ``args`` in the directory
        ``cwd``, as a
        :class:`~landscape_dist.execution.relay.Answer`; None where this worker runs on another
        node than ``node`` (the caller's files need not be here). The pool's driver uses it to
        prepare the planes with the TensorFlow this worker has imported already."""
        import ray

        from .relay import answer

        if node is None or ray.get_runtime_context().get_node_id() != node:
            return None
        here = os.getcwd()
        os.chdir(cwd)  # relative paths in the arguments are the caller's
        try:
            return answer(function, *args)
        finally:
            os.chdir(here)

    def close(self) -> bool:
        """Remove this worker's temporary files (the pool calls it before ending the actor)."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        return True
