"""`translate plot`: the training curves of one or more runs as one PNG dashboard.

Each run is a metrics file: RUN_DIR/metrics.jsonl, or every metrics*.jsonl in a directory that has
no metrics.jsonl (results/<experiment>/metrics_<arm>.jsonl), or a .jsonl file named directly. Runs
are overlaid, one colour each, and named by their directory (plus the file's suffix after
"metrics_"). Training records are solid lines, validation records dashed with markers. A resumed
run logs some steps twice: the later record of a step wins. matplotlib is an optional extra
(`pip install -e ".[plots]"`), imported only here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from translate.errors import UserError


@dataclass
class Run:
    name: str
    train: list[dict]  # "train" records, by step
    valid: list[dict]  # "valid" records, by step


@dataclass(frozen=True)
class Panel:
    title: str
    train_key: str | None  # the training record's key, or None
    valid_key: str | None  # the validation record's key, or None
    log_y: bool = False


# One panel per quantity; panels that no run recorded (older runs) are left out.
PANELS = (
    Panel("NLL (nats per target token)", "nll", "nll"),
    Panel("perplexity", "ppl_exact", "ppl_exact", log_y=True),
    Panel("dev BLEU (greedy, dev slice)", None, "bleu"),
    Panel("learning rate", "lr", None),
    Panel("gradient norm (before clipping)", "grad_norm", None, log_y=True),
    Panel("target tokens / s", "tgt_tokens_per_s", None),
    Panel("entropy of p (nats)", "entropy", "entropy"),
    Panel("confidence (max p)", "confidence", "confidence"),
    Panel("max logit (mean over target tokens)", "max_logit", None),
    Panel("output projection norm", "output_weight_norm", None),
    Panel("update ratio ‖Δw‖ / ‖w‖", "update_ratio", None, log_y=True),
    Panel("dev ECE (15 bins)", None, "ece"),
)


def find_runs(paths: list[Path]) -> list[Run]:
    runs = []
    for path in paths:
        if path.is_file():
            files = [path]
        elif (path / "metrics.jsonl").is_file():
            files = [path / "metrics.jsonl"]
        else:
            files = sorted(path.glob("metrics*.jsonl")) if path.is_dir() else []
        if not files:
            raise UserError(f"{path}: no metrics.jsonl (nor metrics*.jsonl) to plot; give a run directory "
                            "(train.out_dir) or a metrics .jsonl file")
        runs.extend(read_run(f) for f in files)
    return runs


def read_run(path: Path) -> Run:
    """The records of one metrics file; a line that is not JSON (a run killed mid-write) is skipped."""
    by_kind: dict[str, dict[int, dict]] = {"train": {}, "valid": {}}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("kind") in by_kind and "step" in record:
            nll = record.get("nll")
            if isinstance(nll, (int, float)):
                record["ppl_exact"] = math.exp(nll) if nll < 700 else math.inf
            by_kind[record["kind"]][record["step"]] = record  # a resumed run's later record wins
    stem = path.stem.removeprefix("metrics").lstrip("_-")
    name = path.parent.name + (f" {stem}" if stem else "")
    train, valid = ([records[s] for s in sorted(records)] for records in by_kind.values())
    if not train and not valid:
        raise UserError(f"{path} holds no train or valid records to plot")
    return Run(name=name, train=train, valid=valid)


def plot_runs(runs: list[Run], *, x_axis: str = "step"):
    """The dashboard as a matplotlib Figure (Agg backend)."""
    plt = _pyplot()
    from matplotlib.ticker import EngFormatter

    panels = [p for p in PANELS if any(len(_series(run, records, key, "step", False)[0])
                                       for run in runs for records, key in ((run.train, p.train_key),
                                                                            (run.valid, p.valid_key)))]
    n_cols = 4 if len(panels) > 6 else 3
    n_rows = math.ceil(len(panels) / n_cols)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(4.4 * n_cols, 3.1 * n_rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    hours = x_axis == "time" and max((_elapsed(run, run.train or run.valid)[-1] for run in runs), default=0) > 7200
    for panel, ax in zip(panels, axes.flat):
        plotted = []
        for i, run in enumerate(runs):
            colour = colours[i % len(colours)]
            for records, key, style in ((run.train, panel.train_key, dict(lw=1.3)),
                                        (run.valid, panel.valid_key, dict(ls="--", marker="o", ms=3.5, lw=1.1))):
                xs, ys = _series(run, records, key, x_axis, hours)
                if len(xs):
                    ax.plot(xs, ys, color=colour, **style)
                    plotted.extend(ys)
        ax.set_title(panel.title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(which="both", labelsize=8)
        if panel.log_y:
            _log_axis(ax, plotted)
        elif panel.train_key == "tgt_tokens_per_s":
            ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    for ax in axes.flat[max(len(panels) - n_cols, 0):len(panels)]:  # the lowest panel of each column
        ax.set_xlabel({"step": "step", "time": "training time (h)" if hours else "training time (min)"}[x_axis],
                      fontsize=9)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=colours[i % len(colours)], lw=2.5) for i in range(len(runs))]
    handles += [plt.Line2D([], [], color="0.3", lw=1.3), plt.Line2D([], [], color="0.3", ls="--", marker="o", ms=3.5)]
    labels = [run.name for run in runs] + ["train (per log interval)", "dev (per validation)"]
    figure.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    return figure


def _log_axis(ax, values: list[float]) -> None:
    """A log y axis labelled in plain numbers, with the ticks between powers of ten labelled too when
    the values span little: all of them within a decade, 2 and 5 within two."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    positive = [y for y in values if y > 0]
    span = max(positive) / min(positive) if positive else 1.0
    shown = range(2, 10) if span < 10 else (2, 5) if span < 100 else ()
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _mantissa(v) in shown else ""))


def _mantissa(value: float) -> int:
    return round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0


def _series(run: Run, records: list[dict], key: str | None, x_axis: str, hours: bool):
    if key is None:
        return np.array([]), np.array([])
    kept = [r for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    ys = np.array([r[key] for r in kept], dtype=float)
    if x_axis == "step":
        return np.array([r["step"] for r in kept], dtype=float), ys
    return _elapsed(run, kept) / (3600 if hours else 60), ys


def _elapsed(run: Run, records: list[dict]) -> np.ndarray:
    """Seconds of training at each record: its elapsed_s, or (older validation records) the time
    interpolated from the training records' steps."""
    steps = np.array([r["step"] for r in run.train], dtype=float)
    seconds = np.array([r.get("elapsed_s", np.nan) for r in run.train], dtype=float)
    known = np.isfinite(seconds)
    out = []
    for r in records:
        if isinstance(r.get("elapsed_s"), (int, float)):
            out.append(float(r["elapsed_s"]))
        elif known.any():
            out.append(float(np.interp(r["step"], steps[known], seconds[known])))
        else:
            out.append(np.nan)
    return np.array(out if out else [0.0])


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError('translate plot needs matplotlib, an optional extra: pip install -e ".[plots]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_plot(args) -> int:
    runs = find_runs(args.runs)
    output = args.output or (args.runs[0] / "curves.png" if len(args.runs) == 1 and args.runs[0].is_dir()
                             else Path("curves.png"))
    figure = plot_runs(runs, x_axis=args.x)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(output, dpi=args.dpi)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror or e}") from None
    print(f"wrote {output} ({len(runs)} run{'s' if len(runs) > 1 else ''}: {', '.join(r.name for r in runs)})")
    return 0
