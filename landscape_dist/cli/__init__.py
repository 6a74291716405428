"""``landscape-dist``: train, sweep, plot and run; each a thin shell over the library function."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

from ..errors import (LandscapeError, Terminated, TileError, forget_interrupt, in_terms,
                      request_interrupt, request_termination)
from ..registry import OUTPUT_FORMATS

# How the command line names what library messages speak of (see errors.LandscapeError).
FLAGS = {"overwrite": "--overwrite", "out": "--out", "train": "'landscape-dist train' (or 'run')",
         "sweep": "'landscape-dist sweep'"}
WAIT_FLAGS = {"address": "'address' argument", "nodes": "--nodes option",
              "timeout": "--timeout option"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landscape-dist",
        description="Loss-landscape slices of Keras models, evaluated on a pool of Ray actors.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"landscape-dist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(name, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", help="YAML configuration file (see configs/)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override any setting, e.g. grid.x.points=21 cluster.num_workers=1")
        p.add_argument("--out", required=True, help="output directory")
        p.add_argument("--json", action="store_true",
                       help="print the JSON summary on stdout (else a short summary on stderr)")
        return p

    p = with_config("train", "train the model, recording its path (OUT/trajectory.h5, OUT/model.keras)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the model and path even when a surface was made from them")
    for name, help_text in (("sweep", "evaluate every slice on Ray actors (OUT/surface.h5)"),
                            ("run", "train, then sweep, then plot")):
        p = with_config(name, help_text)
        p.add_argument("--address", help="join an existing Ray cluster (e.g. 'auto' or host:port)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/surface.h5")
        p.add_argument("--in-process", action="store_true", help="evaluate in this process, no Ray")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--dry-run", action="store_true",
                       help="estimate the sweep's cost (points, FLOPs, a probe tile's speed, "
                            "wall time) and write nothing")
        p.add_argument("--allow-unsafe-model-code", action="store_true",
                       help="let a .keras model file run the code it holds (Lambda layers); "
                            "only for files you trust")
        if name == "sweep":
            p.add_argument("--final", action="store_true",
                           help="sweep on every example (evaluation.examples ignored) after a "
                                "draft: the draft's OUT/surface.h5 becomes OUT/surface_draft.h5")
    _add_other_commands(sub, with_config)
    return parser


def _add_other_commands(sub, with_config) -> None:
    """``wait-cluster``, ``curvature``, ``sharpness``, ``plot`` and ``info``."""
    p = sub.add_parser("wait-cluster", help="wait until a Ray cluster answers and has NODES nodes "
                       "(for batch scripts); exit 2 with one line when it does not in time")
    p.add_argument("address", help="the head's host:port (or 'auto')")
    p.add_argument("--nodes", type=int, default=1, help="nodes to wait for (default 1)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--json", action="store_true", help="print the nodes and resources as JSON")
    p = with_config("curvature", "the Hessian at the centre: top and smallest eigenvalues, "
                    "trace, spectral density, per-layer top eigenvalues; with curvature.flatness, "
                    "flatness measures (OUT/curvature.h5)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. 'auto' or host:port)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT/curvature.h5")
    p.add_argument("--in-process", action="store_true", help="compute in this process, no Ray")
    p.add_argument("--allow-unsafe-model-code", action="store_true",
                   help="let a .keras model file run the code it holds (Lambda layers); "
                        "only for files you trust")
    p = with_config("sharpness", "the Hessian's top eigenvalues, trace and gradient norm along "
                    "each recorded training run, against the optimiser's stability threshold "
                    "(OUT/sharpness.h5, OUT/sharpness.png)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. 'auto' or host:port)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again, replacing an existing OUT/sharpness.h5")
    p.add_argument("--in-process", action="store_true", help="compute in this process, no Ray")
    p.add_argument("--allow-unsafe-model-code", action="store_true",
                   help="let a .keras model file run the code it holds (Lambda layers); "
                        "only for files you trust")
    p = sub.add_parser("plot", help="draw the figures of a surface file")
    p.add_argument("surface", help="a surface file written by 'sweep'")
    p.add_argument("--out", help="directory for the images (default: next to the surface file)")
    p.add_argument("--config", help="YAML configuration whose 'plot' section to use")
    p.add_argument("--format", type=_formats, metavar="FORMAT[,FORMAT...]",
                   help=f"output formats, comma-separated, from {', '.join(OUTPUT_FORMATS.names())} "
                        f"(default: the config's plot.formats, else png)")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")
    p = sub.add_parser("info", help="what a surface file holds: slices, grids, quantities, "
                                    "progress, settings, versions")
    p.add_argument("surface", help="a surface file (finished or not)")
    p.add_argument("--json", action="store_true", help="print it as JSON")


def _formats(text: str) -> tuple[str, ...]:
    """``png,html``: known output formats, each once."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in OUTPUT_FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be output formats separated by commas, from "
            f"{', '.join(OUTPUT_FORMATS.names())}")
    return names


def _config(args):
    from ..config import load_config

    overrides = list(args.overrides)
    if getattr(args, "address", None):
        overrides.append(f"cluster.address={args.address}")
    if getattr(args, "allow_unsafe_model_code", False):
        overrides.append("model.unsafe_deserialization=true")
    if getattr(args, "final", False):
        overrides.append("evaluation.examples=null")
    return load_config(args.config, overrides)


def _kept(args) -> str:
    """What an interrupted command leaves behind, and how to go on."""
    if args.command == "train":
        return (f"the training did not finish ({os.path.join(args.out, 'trajectory.h5')} is "
                f"incomplete). Run the same command again.")
    if args.command == "sharpness":
        journal = os.path.join(args.out, "sharpness.h5.journal")
        return (f"the finished checkpoints are kept in {journal}. Run the same command again to "
                f"resume." if os.path.isfile(journal) else "nothing was written. Run the "
                "command again.")
    if args.command not in ("sweep", "run"):
        return "nothing was written. Run the command again."
    from ..core.grid import split_tiles
    from ..store.journal import TileJournal

    journal = os.path.join(args.out, "surface.h5.journal")
    if not os.path.isfile(journal):
        return "no tile was finished. Run the same command again to start over."
    try:
        _, records, _ = TileJournal.read(journal)
    except (ValueError, OSError):  # a damaged journal: the rerun names it
        return f"the journal {journal} could not be read. Run the same command again."
    done = sum(1 for kind, *_ in records if kind == "tile")
    try:
        total = sum(len(split_tiles(s.grid.shape, s.grid.tile, s.grid.order))
                    for s in _config(args).slices)
        of = f" of {total}"
    except (ValueError, OSError):
        of = ""
    return (f"{done}{of} tiles are kept in {journal}. Run the same command again to resume.")


def _catch_signals() -> dict:
    """Ctrl-C and SIGTERM (what ``scancel``, ``timeout`` and Kubernetes send) end a command as
    Python's Ctrl-C does, unwinding it (tiles kept, directory given back, workers closed);
    returns the handlers they replace."""
    return {signal.SIGINT: signal.signal(signal.SIGINT, request_interrupt),
            signal.SIGTERM: signal.signal(signal.SIGTERM, request_termination)}


def _ray_termination(err: SystemExit) -> bool:
    """Whether ``err`` is Ray's way of ending on SIGTERM: ``ray.init`` replaces the handler with
    its own, which calls ``sys.exit(SIGTERM)``."""
    return (err.code == signal.SIGTERM and "ray" in sys.modules
            and signal.getsignal(signal.SIGTERM) is not request_termination)


def _worker_files(args):
    """Where a command that may start a local Ray has its workers keep their temporary files: a
    folder removed however the command ends (see :func:`~landscape_dist.execution.reaper.
    private_tmpdir`)."""
    if args.command in ("sweep", "run", "curvature",
                        "sharpness") and not args.in_process and not getattr(
            args, "dry_run", False):
        from ..execution.reaper import private_tmpdir

        return private_tmpdir()
    return contextlib.nullcontext()


def _ended(args, err: KeyboardInterrupt) -> int:
    """One line on what an interrupted (Ctrl-C) or terminated (SIGTERM) command leaves behind;
    its exit status (130, 143: 128 + the signal's number, as a shell reports it)."""
    if isinstance(err, Terminated):
        print(f"landscape-dist: terminated; {_kept(args)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(f"landscape-dist: interrupted; {_kept(args)}", file=sys.stderr)
    return 128 + signal.SIGINT


def _dispatch(args, commands):
    """Run the command ``args`` names; its result (a summary, or the written paths)."""
    if args.command == "info":
        return commands.info(args.surface)
    if args.command == "wait-cluster":
        from ..execution.cluster import wait_for_cluster

        with in_terms(WAIT_FLAGS):
            return wait_for_cluster(args.address, args.nodes, args.timeout)
    if args.command == "train":
        return commands.train(_config(args), args.out, overwrite=args.overwrite)
    if args.command == "curvature":
        return commands.curvature(_config(args), args.out, overwrite=args.overwrite,
                                  in_process=args.in_process)
    if args.command == "sharpness":
        return commands.sharpness(_config(args), args.out, overwrite=args.overwrite,
                                  in_process=args.in_process)
    if args.command in ("sweep", "run") and args.dry_run:
        return commands.estimate(_config(args), in_process=args.in_process, out=args.out)
    if args.command in ("sweep", "run"):
        if args.command == "sweep":
            return commands.sweep(_config(args), args.out, overwrite=args.overwrite,
                                  progress=not args.no_progress, in_process=args.in_process,
                                  final=args.final)
        return commands.run(_config(args), args.out, overwrite=args.overwrite,
                            progress=not args.no_progress, in_process=args.in_process)
    from ..config import load_config

    return commands.plot(args.surface, args.out, load_config(args.config), formats=args.format)


def _say(args, result) -> None:
    """The result as JSON on stdout (``--json``), else a short summary (``info`` on stdout, the
    others on stderr)."""
    if args.json:
        from ..store.summary import to_json

        print(to_json(result))
        return
    from .lines import estimate_lines, info_lines, summary_lines

    if args.command == "info":
        lines = info_lines(result)
    elif args.command == "wait-cluster":
        lines = [f"Ray cluster at {args.address}: {result['nodes']} nodes, "
                 f"{result['resources'].get('CPU', 0):g} CPUs, "
                 f"{result['resources'].get('GPU', 0):g} GPUs"]
    elif getattr(args, "dry_run", False):
        lines = estimate_lines(result)
    else:
        lines = summary_lines(args.command, result, getattr(args, "out", None))
    print("\n".join(lines), file=sys.stdout if args.command == "info" else sys.stderr)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Ray's driver prints a native stack on SIGTERM; the command ends as on Ctrl-C instead
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:  # KEY=VALUE overrides given after options
        args.overrides = list(args.overrides) + extra
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("landscape-dist: %(message)s"))
    logger = logging.getLogger("landscape_dist")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # a sweep or run on Ray imports TensorFlow once its actors are starting (commands.run,
    # sweep.sweep), so that Ray's start and theirs overlap the import here
    if args.command in ("train", "curvature", "sharpness") or (
            args.command in ("sweep", "run") and (args.in_process or args.dry_run)):
        from ..model.runtime import import_tensorflow_quietly

        import_tensorflow_quietly()
    from .. import commands

    main_thread = threading.current_thread() is threading.main_thread()  # where signals go
    previous = _catch_signals() if main_thread else {}
    try:
        with _worker_files(args):
            result = _dispatch(args, commands)
    except KeyboardInterrupt as err:
        return _ended(args, err)
    except SystemExit as err:
        if not _ray_termination(err):
            raise
        return _ended(args, Terminated())
    except TileError as err:
        print(f"landscape-dist: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError) as err:
        if isinstance(err, LandscapeError):
            err = err.reworded(FLAGS)
        print(f"landscape-dist: error: {err}", file=sys.stderr)
        return 2
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before)
        forget_interrupt()
        logger.removeHandler(handler)  # a library caller's logging stays as it was
    _say(args, result)
    return 0

