"""``sharpness``: the Hessian's top eigenvalues along training, against the optimiser's stability
threshold (Cohen et al. 2021, 2022).

For every ``sharpness.every``-th checkpoint of each recorded training run: the ``top_k`` largest
eigenvalues by Lanczos (of Adam's preconditioned Hessian P^-1/2 H P^-1/2 where the optimiser's
state was recorded, else of the Hessian), Hutchinson's trace of the same operator with its
standard error, the gradient norm, the loss and metrics. The driver runs the Lanczos iterations
of ``sharpness.batch`` checkpoints side by side; every product is a job for the pool
(:class:`~landscape_dist.execution.products.PoolHessianAt`), the shards of the data combined
exactly. Each checkpoint's numbers go to a journal as they are done (a rerun resumes; another
configuration is refused), then to ``OUT/sharpness.h5``, ``OUT/sharpness.png`` and the
``sharpness`` entry of ``OUT/summary.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.loading import as_config
from ..config.schema import Config, SharpnessConfig, to_plain
from ..config.words import SETTING_WORDS
from ..core.quantities import WEIGHTS
from ..core.sharpness import (ADAM_LIKE, HESSIAN, PRECONDITIONED, Threshold, adam_preconditioner,
                              checkpoint_rng, chosen, preconditioned, spectra,
                              stability_threshold)
from ..errors import OutputError, SourceError, in_terms
from ..execution.jobs import Job
from ..execution.pools import make_pool
from ..execution.products import PoolGradient, PoolHessianAt
from ..model.optimizers import SECOND_MOMENTS
from ..model.training import run_files
from ..model.trajectory import Trajectory, read_trajectory
from ..store.fingerprint import fingerprint, plane_digest
from ..store.journal import TileJournal
from ..store.lock import writes_into
from ..store.outdir import check_writable, refuse_directories
from ..store.provenance import package_versions
from ..store.sharpness import TrainingRecord, read_training_record, write_sharpness
from ..store.summary import merge_summary
from ..sweeping.inputs import centre_inputs
from ..sweeping.pools import backend_of

log = logging.getLogger("landscape_dist")

_FIELDS = ("eigenvalues", "trace", "trace_stderr", "gradient_norm", "lanczos_steps", "converged")


@dataclass(frozen=True)
class RunPlan:
    """One training run to follow: its trajectory and training record, the checkpoints picked,
    the operator whose sharpness is taken and the threshold it is held against."""

    index: int
    file: Path
    trajectory: Trajectory
    record: TrainingRecord
    picked: np.ndarray
    operator: str
    operator_why: str
    threshold: Threshold

    @property
    def name(self) -> str:
        return f"run{self.index}"


def _operator(cfg: SharpnessConfig, record: TrainingRecord) -> tuple[str, str]:
    """Which operator's sharpness a run gets, and why (said in the file, figure and summary)."""
    adam = (record.optimizer or "").lower() in ADAM_LIKE
    if cfg.operator == "hessian":
        return HESSIAN, "the plain Hessian, as sharpness.operator asks"
    if not adam and record.optimizer in SECOND_MOMENTS:  # preconditioned, but not like Adam
        return HESSIAN, f"the plain Hessian: {record.optimizer}'s preconditioned sharpness is " \
                        f"not computed (only Adam's and AdamW's is)"
    if not adam:
        return HESSIAN, f"the Hessian: the optimiser ({record.optimizer or 'not recorded'}) has " \
                        f"no preconditioner"
    if record.settings.get("amsgrad"):
        return HESSIAN, "the plain Hessian: AMSGrad's preconditioner (the largest second " \
                        "moments so far) is not recorded"
    if not record.has_state:
        return HESSIAN, f"the plain Hessian: {record.optimizer}'s state (second moments) was not " \
                        f"recorded (train.record_optimizer_state), so its preconditioned " \
                        f"sharpness cannot be taken"
    return PRECONDITIONED, f"{record.optimizer}'s preconditioned Hessian P^-1 H, P from the " \
                           f"recorded second moments"


def _run_indices(cfg: SharpnessConfig, out: Path) -> list[int]:
    """The training runs to follow: ``cfg.runs``, else every run recorded in ``out``."""
    if not (out / run_files(0)[0]).exists() and (cfg.runs is None or 0 in cfg.runs):
        raise SourceError(f"The sharpness needs the training path '{out / run_files(0)[0]}', "
                          f"which does not exist. Run {{train}} with the same {{out}} first.",
                          train="train()", out="output directory")
    if cfg.runs is not None:
        for index in cfg.runs:
            if not (out / run_files(index)[0]).exists():
                raise SourceError(f"The 'sharpness.runs' setting names run {index}, whose "
                                  f"training path '{out / run_files(index)[0]}' does not exist. "
                                  f"Name recorded runs only, or train them ({{train}}).",
                                  train="train()")
        return list(cfg.runs)
    runs = [0]
    while (out / run_files(len(runs))[0]).exists():
        runs.append(len(runs))
    return runs


def plan_runs(cfg: SharpnessConfig, out: Path, layout, indices: list[int]) -> list[RunPlan]:
    """Each run's (of ``indices``, see :func:`_run_indices`) trajectory, record, picked
    checkpoints, operator and threshold; bad input (a foreign or damaged trajectory) fails here,
    before a pool starts."""
    plans = []
    for index in indices:
        file = out / run_files(index)[0]
        traj = read_trajectory(file)
        if traj.layout.shapes != layout.shapes:
            raise SourceError(f"The trajectory '{file}' was recorded from another architecture "
                              f"({len(traj.layout.shapes)} tensors, {traj.layout.size} weights) "
                              f"than {{model}} ({len(layout.shapes)} tensors, {layout.size} "
                              f"weights). Train this model again with the same {{out}}.",
                              out="output directory")
        record = read_training_record(file, *traj.weights.shape)
        operator, why = _operator(cfg, record)
        threshold = stability_threshold(record.optimizer, record.settings, record.learning_rate,
                                        operator)
        plans.append(RunPlan(index, file, traj, record, chosen(len(traj.weights), cfg.every),
                             operator, why, threshold))
    return plans


def _scales(plan: RunPlan, indices: np.ndarray) -> np.ndarray:
    """P^-1/2 (len(indices), size) of the checkpoints ``indices`` (NaN rows before the first
    step, where there is no preconditioner)."""
    moments = plan.record.second_moments(indices)
    beta_1, beta_2 = plan.record.betas
    rows = []
    for i, v in zip(indices, moments):
        p = adam_preconditioner(v, plan.record.iterations[i], beta_1, beta_2, plan.record.epsilon)
        rows.append(np.full(v.shape, np.nan) if p is None else 1.0 / np.sqrt(p))
    return np.stack(rows)


def _spread(pool, which: str, rows: np.ndarray) -> dict:
    """The pool's quantities at ``rows`` (m, ...), the rows split into one job per worker (of
    each shard); a dict of (m,) arrays."""
    per = max(1, -(-len(rows) // max(1, pool.num_workers // max(1, pool.num_shards))))
    chunks = {}
    pool.run([Job(i, which, rows[i:i + per]) for i in range(0, len(rows), per)],
             chunks.__setitem__)
    keys = sorted(chunks)
    return {name: np.concatenate([np.asarray(chunks[k][name], np.float64) for k in keys])
            for name in chunks[keys[0]]}


def compute_batch(pool, plan: RunPlan, indices: np.ndarray,
                  cfg: SharpnessConfig) -> tuple[dict, int]:
    """Everything stored of checkpoints ``indices`` of one run, their Lanczos runs side by side:
    ({checkpoint index: {field: value, 'quantities': {name: value}}}, the products used)."""
    weights = plan.trajectory.weights[indices]
    hessian = PoolHessianAt(pool, weights)
    matvec = hessian if plan.operator == HESSIAN else preconditioned(hessian,
                                                                     _scales(plan, indices))
    found = spectra(matvec, [checkpoint_rng(cfg.seed, plan.index, i) for i in indices],
                    weights.shape[1], cfg.top_k, cfg.steps, cfg.tol, cfg.trace_vectors)
    _, gradients = PoolGradient(pool)(weights)
    quantities = _spread(pool, WEIGHTS, weights.astype(np.float32))
    out = {}
    for b, i in enumerate(indices):
        out[int(i)] = {"eigenvalues": found.values[b], "trace": found.trace[b],
                       "trace_stderr": found.stderr[b],
                       "gradient_norm": float(np.linalg.norm(gradients[b])),
                       "lanczos_steps": int(found.steps[b]), "converged": bool(found.converged[b]),
                       "quantities": {k: float(v[b]) for k, v in quantities.items()}}
    return out, hessian.products


def _journal_fingerprint(config: Config, inputs, plans: list[RunPlan]) -> dict:
    """What the numbers depend on: model, data, the trajectory files, the examples evaluated and
    the sharpness settings (not the slices, the cluster or the shards)."""
    spec = inputs.data_spec
    sources = [s.source for s in spec.values()] if isinstance(spec, dict) else spec.source
    whole = fingerprint(config.to_dict(), inputs.model_spec.payload, sources, inputs.centre_file,
                        [p.file for p in plans])
    model = whole["model"]
    if "returns" in model:  # the trajectory gives the weights: only the architecture counts ...
        model["returns"] = {s: inputs.model_spec.content_digest(with_weights=False)
                            for s in model["returns"]}
    # ... and the non-trainable values (batch-norm statistics) used at every checkpoint
    model["non_trainable"] = plane_digest(np.zeros(1), np.zeros((0, 1)), inputs.non_trainable)
    return {**{k: whole[k] for k in ("model", "data", "trajectory", "evaluation")},
            "sharpness": to_plain(config.sharpness or SharpnessConfig())}


def _to_record(values: dict) -> dict:
    """A checkpoint's numbers as a journal payload (flat arrays by name)."""
    payload = {k: np.asarray(values[k]) for k in _FIELDS}
    payload.update({f"q:{k}": np.asarray(v) for k, v in values["quantities"].items()})
    return payload


def _from_record(payload: dict) -> dict:
    values = {k: payload[k] for k in _FIELDS}
    values["quantities"] = {k[2:]: float(v) for k, v in payload.items() if k.startswith("q:")}
    return values


def _follow(pool, plans: list[RunPlan], cfg: SharpnessConfig, journal: TileJournal) -> dict:
    """Every planned checkpoint's numbers, by run name then checkpoint index: read back from the
    journal where an earlier run finished them, else computed batch by batch and journalled."""
    done, counts = {}, {"products": 0, "resumed": 0, "computed": 0}
    for plan in plans:
        have = {int(k): _from_record(v) for k, v in journal.resumed("tile", plan.name).items()}
        counts["resumed"] += sum(1 for i in plan.picked if int(i) in have)
        for start in range(0, len(plan.picked), cfg.batch):
            # batches are fixed by the settings alone: a resumed run recomputes the same ones
            batch = plan.picked[start:start + cfg.batch]
            if all(int(i) in have for i in batch):
                continue
            t0 = time.perf_counter()
            computed, products = compute_batch(pool, plan, batch, cfg)
            for i, values in computed.items():
                if i not in have:
                    journal.append("tile", plan.name, i, _to_record(values))
                    have[i] = values
                    counts["computed"] += 1
            counts["products"] += products
            log.info("sharpness: %s checkpoints %d-%d of %d: top eigenvalue %s (%.1f s)",
                     plan.name, batch[0], batch[-1], len(plan.trajectory.weights) - 1,
                     ", ".join(f"{computed[int(i)]['eigenvalues'][0]:.4g}" for i in batch),
                     time.perf_counter() - t0)
        done[plan.name] = have
    return {"runs": done, **counts}


def _arrays(plan: RunPlan, have: dict) -> dict:
    """One run's group of ``sharpness.h5``, from its checkpoints' numbers."""
    picked = plan.picked
    rows = [have[int(i)] for i in picked]
    rates = plan.record.learning_rate
    threshold = plan.threshold.values
    names = list(dict.fromkeys(k for r in rows for k in r["quantities"]))
    return {
        "checkpoint": picked.astype(np.int64), "step": plan.trajectory.step[picked],
        "epoch": plan.trajectory.epoch[picked],
        "eigenvalues": np.stack([np.asarray(r["eigenvalues"], np.float64) for r in rows]),
        **{k: np.array([r[k] for r in rows]) for k in _FIELDS[1:]},
        "learning_rate": np.full(len(picked), np.nan) if rates is None else rates[picked],
        "threshold": np.full(len(picked), np.nan) if threshold is None else threshold[picked],
        "quantities": {k: np.array([r["quantities"].get(k, np.nan) for r in rows])
                       for k in names},
        "trajectory": str(plan.file), "optimizer": plan.record.optimizer or "",
        "operator": plan.operator, "operator_why": plan.operator_why,
        "threshold_formula": plan.threshold.formula, "threshold_why": plan.threshold.why,
    }


def _run_summary(arrays: dict) -> dict:
    top = arrays["eigenvalues"][:, 0]
    ratio = top / arrays["threshold"]
    last = -1
    finite = np.isfinite(ratio)
    return {
        "checkpoints": int(len(top)), "optimizer": arrays["optimizer"] or None,
        "operator": arrays["operator"], "operator_why": arrays["operator_why"],
        "threshold": arrays["threshold_formula"] or None, "threshold_why": arrays["threshold_why"],
        "max_sharpness": float(np.nanmax(top)) if np.isfinite(top).any() else None,
        "max_sharpness_over_threshold": float(np.max(ratio[finite])) if finite.any() else None,
        "final": {"step": int(arrays["step"][last]),
                  "eigenvalues": [float(v) for v in arrays["eigenvalues"][last]],
                  "trace": float(arrays["trace"][last]),
                  "trace_stderr": float(arrays["trace_stderr"][last]),
                  "gradient_norm": float(arrays["gradient_norm"][last]),
                  **{k: float(v[last]) for k, v in arrays["quantities"].items()}},
        # before the optimiser's first step there is no preconditioner (NaN, not a failure):
        # those are counted as undefined, not as unconverged
        "not_converged": int(np.sum(~arrays["converged"].astype(bool) & np.isfinite(top))),
        "undefined": int(np.sum(~np.isfinite(top))),
    }


def _check_target(out: Path, overwrite: bool) -> Path:
    target = out / "sharpness.h5"
    refuse_directories({"sharpness file": target, "sharpness figure": out / "sharpness.png",
                        "resume journal": out / "sharpness.h5.journal"})
    if target.exists() and not overwrite:
        raise OutputError(f"The sharpness file '{target}' exists. Pass {{overwrite}} to replace "
                          f"it, or give another {{out}}.", overwrite="overwrite=True",
                          out="output directory")
    return target


@writes_into("sharpness")
def sharpness(config: Config | str | Path, out: str | Path, *, pool=None,
              in_process: bool = False, overwrite: bool = False,
              write_summary: bool = True) -> dict:
    """Follow the sharpness along training (see the module docstring) on ``pool`` (built from
    ``config.cluster`` when not given; ``config`` a Config or the path of a YAML file); write
    ``out/sharpness.h5``, ``out/sharpness.png`` and (``write_summary``) the ``sharpness`` entry
    of ``out/summary.json``; return the summary. The model's non-trainable values (batch-norm
    statistics) are the centre's at every checkpoint, as on the sweep's path. An unfinished
    earlier call with the same settings is resumed; ``overwrite`` starts again and replaces an
    existing ``sharpness.h5``."""
    out, config = Path(out), as_config(config)
    cfg = config.sharpness or SharpnessConfig()
    t0 = time.perf_counter()
    with in_terms(SETTING_WORDS):
        check_writable(out, create=False)
        target = _check_target(out, overwrite)
        indices = _run_indices(cfg, out)  # a missing trajectory: said before the model loads
        inputs = centre_inputs(config, out)
        cfg.check_for(inputs.layout.size)  # before the pool starts or anything is written
        plans = plan_runs(cfg, out, inputs.layout, indices)
        fp = _journal_fingerprint(config, inputs, plans)
        journal_file = out / "sharpness.h5.journal"
        checked = None if overwrite else TileJournal.check(journal_file, fp)
        own_pool = pool is None
        try:
            if own_pool:
                cluster = dataclasses.replace(config.cluster,
                                              backend=backend_of(config, in_process))
                pool = make_pool(cluster, inputs.model_spec, inputs.data_spec, config.evaluation,
                                 ("loss",))
            else:
                pool.select_quantities(("loss",))
            check_writable(out)
            pool.set_plane(inputs.centre, np.zeros((1, inputs.layout.size), np.float32),
                           inputs.non_trainable)
            journal = TileJournal.open(journal_file, fp, resume=not overwrite, checked=checked)
            try:
                followed = _follow(pool, plans, cfg, journal)
            finally:
                journal.close()
        finally:
            if own_pool and pool is not None:
                pool.close()
    runs = {plan.name: _arrays(plan, followed["runs"][plan.name]) for plan in plans}
    summary = {"runs": {name: _run_summary(a) for name, a in runs.items()},
               "products": followed["products"], "checkpoints_resumed": followed["resumed"],
               "checkpoints_computed": followed["computed"],
               "seconds": round(time.perf_counter() - t0, 3), "settings": to_plain(cfg)}
    _write_results(target, journal_file, out, config, inputs, runs, summary, write_summary)
    for name, s in summary["runs"].items():
        log.info("sharpness: %s, %d checkpoints, largest %s %.6g (threshold %s)", name,
                 s["checkpoints"], s["operator"].replace("_", " "), s["max_sharpness"] or np.nan,
                 s["threshold"] or "none")
    return summary


def _write_results(target: Path, journal_file: Path, out: Path, config: Config, inputs,
                   runs: dict, summary: dict, write_summary: bool) -> None:
    """Write the runs' arrays with their metadata to ``target`` (``sharpness.h5``) and drop the
    journal it replaces, draw ``out/sharpness.png`` and, where asked, merge ``summary`` into
    ``out/summary.json``; adds the file and the figure to ``summary``."""
    from ..figures.sharpness import plot_sharpness  # matplotlib: only once it draws

    meta = {"centre": str(inputs.centre_file) if inputs.centre_file else "source weights",
            "size": inputs.layout.size, "versions": package_versions(),
            "settings": summary["settings"], "config": config.to_dict(), "summary": summary}
    write_sharpness(target, runs, meta)
    journal_file.unlink(missing_ok=True)
    summary["file"] = str(target)
    summary["figure"] = str(plot_sharpness(runs, out / "sharpness.png", config.plot.dpi))
    if write_summary:
        merge_summary(out / "summary.json", "sharpness", summary)
