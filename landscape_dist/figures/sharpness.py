"""The sharpness along training: the top eigenvalue against the step, with the optimiser's
stability threshold, beside the loss; several runs on one figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np

_OPERATOR_WORDS = {"hessian": "top Hessian eigenvalue",
                   "preconditioned_hessian": "top eigenvalue of P^-1 H (preconditioned)"}


def _loss_name(quantities: dict) -> str | None:
    names = list(quantities)
    return "loss" if "loss" in names else next((n for n in names if n.endswith("/loss")), None)


def plot_sharpness(runs: dict, file: Path, dpi: int = 120) -> Path:
    """Two panels against the training step: each run's top eigenvalue (solid; of the operator
    its ``operator`` names) with its threshold (dashed, same colour; the figure says where a run
    has none, and why), and each run's loss (log scale where positive). ``runs``: run name ->
    the arrays and attributes of its ``sharpness.h5`` group."""
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(12.0, 4.4), constrained_layout=True)
    notes = []
    for i, (name, run) in enumerate(runs.items()):
        colour = f"C{i % 10}"
        step, top = np.asarray(run["step"]), np.asarray(run["eigenvalues"])[:, 0]
        ax.plot(step, top, color=colour, marker=".", linewidth=1.2,
                label=f"{name}: {_OPERATOR_WORDS.get(run['operator'], run['operator'])}")
        threshold = np.asarray(run["threshold"], np.float64)
        if np.isfinite(threshold).any():
            ax.plot(step, threshold, color=colour, linestyle="--", linewidth=1.0,
                    label=f"{name}: threshold {run['threshold_formula']}")
        else:
            notes.append(f"{name}: no threshold line ({run['threshold_why']})")
        if run["operator"] != "preconditioned_hessian" and "preconditioned" in run["operator_why"]:
            notes.append(f"{name}: {run['operator_why']}")
        missing = int(np.sum(~np.isfinite(top)))
        if missing and run["operator"] == "preconditioned_hessian":
            notes.append(f"{name}: no preconditioned sharpness at {missing} checkpoint(s) before "
                         f"the optimiser's first step (no preconditioner yet)")
        loss = _loss_name(run["quantities"])
        if loss is not None:
            ax_loss.plot(step, run["quantities"][loss], color=colour, marker=".", linewidth=1.2,
                         label=f"{name}: {loss}")
    ax.set_xlabel("training step")
    ax.set_ylabel("sharpness")
    ax.set_title("sharpness along training (Lanczos)", fontsize=10)
    ax.legend(fontsize=7)
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss at the recorded weights", fontsize=10)
    losses = [line.get_ydata() for line in ax_loss.get_lines()]
    if losses and all(np.all(np.asarray(y) > 0) for y in losses):
        ax_loss.set_yscale("log")
    if losses:
        ax_loss.legend(fontsize=7)
    if notes:
        fig.text(0.01, 0.005, "\n".join(notes), fontsize=7, va="bottom", wrap=True)
        fig.get_layout_engine().set(rect=(0, 0.04 * len(notes), 1, 1 - 0.04 * len(notes)))
    fig.savefig(file, dpi=dpi)
    plt.close(fig)
    return file


def sharpness_section(sharpness_file: Path, embed_plotly: bool) -> str:
    """The interactive page's section of a ``sharpness.h5`` beside the surface: each run's top
    eigenvalue and threshold against the step, beside its loss (plotly), with what operator
    and threshold each run has, and why."""
    import html

    import plotly.graph_objects as go
    import plotly.io as pio
    from plotly.subplots import make_subplots

    from ..store.sharpness import read_sharpness

    runs = {k: v for k, v in read_sharpness(sharpness_file).items() if k}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("sharpness", "loss"))
    notes = []
    for i, (name, run) in enumerate(runs.items()):
        colour = f"hsl({(i * 67) % 360}, 70%, 45%)"
        step = np.asarray(run["step"]).tolist()
        top = np.asarray(run["eigenvalues"], np.float64)[:, 0]
        fig.add_trace(go.Scatter(x=step, y=[None if not np.isfinite(v) else float(v) for v in top],
                                 name=f"{name}: {_OPERATOR_WORDS.get(run['operator'])}",
                                 line={"color": colour}), row=1, col=1)
        threshold = np.asarray(run["threshold"], np.float64)
        if np.isfinite(threshold).any():
            fig.add_trace(go.Scatter(x=step, y=threshold.tolist(), line={"color": colour,
                                                                         "dash": "dash"},
                                     name=f"{name}: {run['threshold_formula']}"), row=1, col=1)
        loss = _loss_name(run["quantities"])
        if loss is not None:
            fig.add_trace(go.Scatter(x=step, y=np.asarray(run["quantities"][loss]).tolist(),
                                     name=f"{name}: {loss}", line={"color": colour}),
                          row=1, col=2)
        notes.append(f"{name}: {run['operator_why']}; {run['threshold_why']}")
    fig.update_xaxes(title_text="training step")
    fig.update_layout(height=420)
    return (f"<h2>sharpness along training</h2><p class='caption'>"
            f"{html.escape('. '.join(notes))} ({html.escape(str(sharpness_file))})</p>\n"
            + pio.to_html(fig, full_html=False, include_plotlyjs=embed_plotly,
                          div_id="sharpness", config={"displaylogo": False}))
