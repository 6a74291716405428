"""``train``: train the configured model with a recorded path."""

from __future__ import annotations

from pathlib import Path

from ..config.loading import as_config
from ..config.schema import Config
from ..config.words import SETTING_WORDS
from ..errors import in_terms
from ..model import training
from ..store.lock import writes_into
from ..store.outdir import check_writable, refuse_retraining


@writes_into("train")
def train(config: Config | str | Path, out: str | Path, verbose: int = 0, *, overwrite: bool = False) -> dict:
    """Train the model ``config`` (a :class:`Config`, or the path of a YAML file) configures on
    its data, recording its path: ``out/trajectory.h5`` and
    ``out/model.keras`` (the final weights, the default centre). Returns a summary dict.

    Refuses to replace the model and path a surface in ``out`` was made from unless ``overwrite``.
    """
    out, config = Path(out), as_config(config)
    with in_terms(SETTING_WORDS):
        check_writable(out, create=False)
        refuse_retraining(out, overwrite)
        return training.train(config, out, verbose)
