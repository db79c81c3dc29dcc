"""Build docs/RESULTS.md and docs/figures/*.png from the label-smoothing runs under results/.

Every number in the report is read from the files under --results (metrics JSON lines, eval and
calibration JSON, training logs); the only constants here are the provenance of the runs (device,
commands) and the published reference numbers of Vaswani et al. (2017), Table 3.

    python scripts/reproduce_label_smoothing.py [--results results] [--output docs/RESULTS.md]
                                                [--figures docs/figures]
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

DEVICE = "one NVIDIA H100 80GB HBM3 (torch 2.11.0+cu130)"
# Vaswani et al. 2017, Table 3, newstest2013 dev, single runs: epsilon -> (dev PPL, dev BLEU).
VASWANI = {0.0: (4.67, 25.3), 0.1: (4.92, 25.8), 0.2: (5.47, 25.7)}
DASH = "–"


# ---------------------------------------------------------------- loading


@dataclass
class Run:
    """One training run: its metrics records and the eval / calibration JSON of its checkpoints."""

    folder: Path                           # the results folder it was read from
    tag: str                               # "ls0.1_s2": files are metrics_{tag}.jsonl, train_{tag}.log
    eps: float
    seed: int
    train: list[dict]                      # kind == "train" records, in order
    valid: list[dict]                      # kind == "valid" records, in order
    evals: dict[str, dict] = field(default_factory=dict)    # "best" / "avg" -> eval JSON
    calibs: dict[str, dict] = field(default_factory=dict)   # "best" / "avg" -> calibration JSON

    @property
    def steps(self) -> int:
        return max(r["step"] for r in self.train + self.valid)

    @property
    def train_seconds(self) -> float:
        """elapsed_s of the last logged train record (training stops a few steps later)."""
        return self.train[-1]["elapsed_s"]

    @property
    def best_step(self) -> int:
        return min(self.valid, key=lambda r: r["nll"])["step"]

    def config(self, key: str) -> str | None:
        """A value (`train.max_time`) of the resolved config printed at the top of the run's log."""
        return log_config_value(self.folder / f"train_{self.tag}.log", key)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_run(folder: Path, *, eps: float, seed: int, tag: str) -> Run:
    """Reads metrics_{tag}.jsonl, eval[_best|_avg]_{tag}.json and calib[_best|_avg]_{tag}.json."""
    records = read_jsonl(folder / f"metrics_{tag}.jsonl")
    run = Run(folder=folder, tag=tag, eps=eps, seed=seed, train=[r for r in records if r["kind"] == "train"],
              valid=[r for r in records if r["kind"] == "valid"])
    for prefix, store in (("eval", run.evals), ("calib", run.calibs)):
        for name, file in (("best", f"{prefix}_{tag}.json"), ("best", f"{prefix}_best_{tag}.json"),
                           ("avg", f"{prefix}_avg_{tag}.json")):
            if (folder / file).exists():
                store[name] = json.loads((folder / file).read_text())
    return run


def load_track(folder: Path) -> list[Run]:
    """All runs of a results folder, sorted by (eps, seed); metrics_ls{eps}[_s{seed}].jsonl."""
    runs = []
    for path in folder.glob("metrics_ls*.jsonl"):
        match = re.fullmatch(r"metrics_(ls([\d.]+)(?:_s(\d+))?)\.jsonl", path.name)
        if match:
            tag, eps, seed = match.groups()
            seed = seed or log_config_value(folder / f"train_{tag}.log", "train.seed")
            runs.append(load_run(folder, eps=float(eps), seed=int(seed), tag=tag))
    return sorted(runs, key=lambda r: (r.eps, r.seed))


def log_config_value(log: Path, key: str) -> str | None:
    """`train.seed` -> its value in the resolved config that `translate train` prints at the top of
    its log (a YAML dump: `train:` then indented `  seed: 1`; `data.train.seed` is another key)."""
    section, name = key.split(".")
    block = re.search(rf"^{section}:\n((?:[ ].*\n)*)", log.read_text(), flags=re.MULTILINE)
    value = block and re.search(rf"^  {name}: (.+)$", block.group(1), flags=re.MULTILINE)
    return value.group(1).strip() if value else None


def parse_log_line(line: str) -> dict[str, float] | None:
    """`step 25 | loss 10.18 | ... | peak_gpu_gb 18.25` -> {"step": 25.0, "loss": 10.18, ...}."""
    if not line.startswith("step "):
        return None
    fields = (part.split() for part in line.split("|"))
    return {f[0]: float(f[1]) for f in fields if len(f) == 2}


def averaged_steps(run: Run) -> list[int]:
    """Steps of the checkpoints averaged into avg.pt: from eval.out when it says, else the last
    train.keep_last multiples of train.save_every (what `average --last keep_last` picks)."""
    out = run.folder / "eval.out"
    if out.exists():
        match = re.search(r"averaged \d+ checkpoints \(([^)]*)\)", out.read_text())
        if match:
            return [int(s) for s in re.findall(r"step(\d+)", match.group(1))]
    every, keep = int(run.config("train.save_every")), int(run.config("train.keep_last"))
    return list(range(every, run.steps + 1, every))[-keep:]


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float          # sample standard deviation (n - 1); nan when n < 2
    n: int


class Verdict(enum.Enum):
    BETTER = "better"
    WORSE = "worse"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Change:
    base: Stat
    other: Stat
    delta: float                  # other.mean - base.mean
    verdict: Verdict
    beyond_spread: bool | None    # |delta| > larger std of the two; None with a single seed


def mean_std(values: list[float]) -> Stat:
    n = len(values)
    return Stat(statistics.fmean(values), statistics.stdev(values) if n > 1 else math.nan, n)


def compare(base: Stat, other: Stat, *, lower_is_better: bool) -> Change:
    """The change from `base` to `other`, judged against the seed spread: a difference no larger
    than the larger of the two standard deviations is noise at n = 3."""
    delta = other.mean - base.mean
    if delta == 0:
        verdict = Verdict.UNCHANGED
    else:
        verdict = Verdict.BETTER if (delta < 0) == lower_is_better else Verdict.WORSE
    spread = max(base.std, other.std)
    beyond = None if math.isnan(spread) else abs(delta) > spread
    return Change(base, other, delta, verdict, beyond)


def describe_change(what: str, change: Change, *, digits: int) -> str:
    """One sentence: 'test BLEU is better (37.05 → 37.21, Δ +0.16), within the seed spread ...'."""
    f = f"{{:.{digits}f}}"
    text = (f"{what} is {change.verdict.value} ({f.format(change.base.mean)} → "
            f"{f.format(change.other.mean)}, Δ {change.delta:+.{digits}f})")
    stds = f"std {f.format(change.base.std)} / {f.format(change.other.std)}"
    if change.beyond_spread is None:
        return text + ", from a single seed, so no spread to judge it against"
    if change.beyond_spread:
        return text + f", larger than the seed spread ({stds})"
    return text + f", within the seed spread ({stds}): noise at n = {change.other.n}"


def gain_over_last_interval(valid: list[dict], key: str) -> tuple[float, int]:
    """(change of `key`, steps between) from the last validation at least one eval interval (the
    median step gap) before the final one, to the final one. An extra validation a few steps after
    the previous one (at the time limit) is thereby compared with a real interval, not with noise."""
    steps = [r["step"] for r in valid]
    interval = statistics.median(b - a for a, b in zip(steps, steps[1:]))
    earlier = [r for r in valid if r["step"] <= steps[-1] - interval][-1]
    return valid[-1][key] - earlier[key], steps[-1] - earlier["step"]


def pool_bins(bins: list[dict]) -> tuple[list[int], list[float], list[float]]:
    """Reliability bins of several runs pooled by count: (count, accuracy, confidence) per bin."""
    counts = [sum(c) for c in zip(*(b["count"] for b in bins))]

    def pooled(key):
        sums = [sum(n * v for n, v in zip(ns, vs)) for ns, vs in
                zip(zip(*(b["count"] for b in bins)), zip(*(b[key] for b in bins)))]
        return [s / n if n else math.nan for s, n in zip(sums, counts)]

    return counts, pooled("accuracy"), pooled("confidence")


# ---------------------------------------------------------------- formatting


def fmt(value: float | None, digits: int) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_stat(stat: Stat, digits: int) -> str:
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# Per-run quantities of the Multi30k track: (header, getter, digits).
M30K_COLUMNS = [
    ("dev NLL", lambda r: r.calibs["best"]["nll"], 3),
    ("dev PPL", lambda r: math.exp(r.calibs["best"]["nll"]), 2),
    ("dev BLEU (greedy, last)", lambda r: r.valid[-1]["bleu"], 2),
    ("test BLEU", lambda r: r.evals["best"]["bleu"], 2),
    ("test chrF", lambda r: r.evals["best"]["chrf"], 2),
    ("length ratio", lambda r: r.evals["best"]["length_ratio"], 3),
    ("ECE", lambda r: r.calibs["best"]["ece"], 4),
    ("dev accuracy", lambda r: r.calibs["best"]["accuracy"], 3),
    ("mean confidence", lambda r: r.calibs["best"]["mean_confidence"], 3),
    ("mean entropy", lambda r: r.calibs["best"]["mean_entropy"], 3),
]


def by_eps(runs: list[Run]) -> dict[float, list[Run]]:
    groups: dict[float, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.eps, []).append(run)
    return groups


def summary(runs: list[Run]) -> dict[float, dict[str, Stat]]:
    """eps -> column header -> mean ± std over seeds."""
    return {eps: {name: mean_std([get(r) for r in group]) for name, get, _ in M30K_COLUMNS}
            for eps, group in by_eps(runs).items()}


def multi30k_tables(runs: list[Run]) -> tuple[str, str]:
    stats = summary(runs)
    head = ["ε", "seeds"] + [name for name, _, _ in M30K_COLUMNS]
    rows = [[f"{eps}", str(len(by_eps(runs)[eps]))] +
            [fmt_stat(s[name], d) for name, _, d in M30K_COLUMNS] for eps, s in stats.items()]
    per_run_head = ["ε", "seed", "steps", "train s", "best step"] + head[2:]
    per_run = [[f"{r.eps}", str(r.seed), str(r.steps), fmt(r.train_seconds, 0), str(r.best_step)] +
               [fmt(get(r), d) for _, get, d in M30K_COLUMNS] for r in runs]
    return markdown_table(head, rows), markdown_table(per_run_head, per_run)


def newstest_table(runs: list[Run]) -> str:
    """One row per (eps, checkpoint): best, and the average of the last saved checkpoints."""
    has_calib = any(r.calibs for r in runs)
    head = ["ε", "steps", "train s", "checkpoint", "dev NLL", "dev PPL", "dev BLEU (greedy)",
            "test BLEU", "test chrF", "length ratio"]
    head += ["ECE", "dev accuracy", "mean confidence", "mean entropy"] if has_calib else []
    head += ["decode sent/s"]
    rows = []
    for run in sorted(runs, key=lambda r: -r.eps):
        for name in ("best", "avg"):
            calib, ev = run.calibs.get(name), run.evals[name]
            if name == "best":
                record = next(r for r in run.valid if r["step"] == run.best_step)
                nll, bleu, label = (calib or record)["nll"], record["bleu"], f"best (step {run.best_step})"
            else:
                nll, bleu = (calib["nll"] if calib else None), None
                label = "avg of steps " + ", ".join(map(str, averaged_steps(run)))
            row = [f"{run.eps}", str(run.steps), fmt(run.train_seconds, 0), label, fmt(nll, 3),
                   fmt(math.exp(nll) if nll is not None else None, 1), fmt(bleu, 2),
                   fmt(ev["bleu"], 2), fmt(ev["chrf"], 2), fmt(ev["length_ratio"], 3)]
            if has_calib:
                keys = (("ece", 4), ("accuracy", 3), ("mean_confidence", 3), ("mean_entropy", 3))
                row += [fmt(calib[k], d) if calib else DASH for k, d in keys]
            rows.append(row + [fmt(ev["sentences_per_second"], 1)])
    return markdown_table(head, rows)


# ---------------------------------------------------------------- plots


def plot_figures(m30k: list[Run], newstest: dict[str, list[Run]], out: Path) -> list[str]:
    """Writes the PNGs and returns their file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    colors = {0.0: "tab:blue", 0.1: "tab:orange", 0.2: "tab:green"}
    names = []

    def save(fig, ax, name, title, xlabel, ylabel):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend() is None:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        names.append(name)

    # The arms differ by less than the curves' range: an inset zooms on the last two validations,
    # placed where the curves leave the axes empty (upper right for NLL, lower right for BLEU).
    layout = {"nll": ([0.52, 0.42, 0.44, 0.44], "lower left"),
              "bleu": ([0.52, 0.1, 0.44, 0.44], "upper left")}
    for key, label in (("nll", "dev NLL (nats/token)"), ("bleu", "dev BLEU (greedy)")):
        fig, ax = plt.subplots(figsize=(6, 4))
        inset = ax.inset_axes(layout[key][0])
        for eps, group in by_eps(m30k).items():
            steps = sorted(set.intersection(*({r["step"] for r in g.valid} for g in group)))
            values = [[next(r[key] for r in g.valid if r["step"] == s) for g in group] for s in steps]
            for axes, window in ((ax, slice(None)), (inset, slice(-2, None))):
                axes.plot(steps[window], [statistics.fmean(v) for v in values[window]], "o-",
                          color=colors[eps], label=f"ε = {eps} (mean of {len(group)} seeds)")
                axes.fill_between(steps[window], [min(v) for v in values[window]],
                                  [max(v) for v in values[window]], color=colors[eps], alpha=0.2)
        inset.tick_params(labelsize=7)
        inset.grid(alpha=0.3)
        ax.indicate_inset_zoom(inset, edgecolor="gray")
        ax.legend(fontsize=8, loc=layout[key][1])
        save(fig, ax, f"m30k_dev_{key}.png", f"Multi30k: {label}, min–max band over seeds",
             "step", label)

        fig, ax = plt.subplots(figsize=(6, 4))
        for version, runs in newstest.items():
            for run in runs:
                ax.plot([r["step"] for r in run.valid], [r[key] for r in run.valid],
                        "o-" if version == "v1" else "s--", color=colors[run.eps],
                        label=f"{version}, ε = {run.eps}")
        save(fig, ax, f"trainmix_dev_{key}.png", f"Newstest track (newstest2013): {label}",
             "step", label)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls=":", label="perfect calibration")
    for eps, group in by_eps(m30k).items():
        _, accuracy, confidence = pool_bins([r.calibs["best"]["bins"] for r in group])
        ece = statistics.fmean(r.calibs["best"]["ece"] for r in group)
        ax.plot(confidence, accuracy, "o-", ms=4, color=colors[eps],
                label=f"ε = {eps} (mean ECE {ece:.3f})")
    ax.set_aspect("equal")
    save(fig, ax, "m30k_reliability.png", "Multi30k dev reliability, 3 seeds pooled, 15 bins",
         "mean confidence in bin", "accuracy in bin")
    return names


# ---------------------------------------------------------------- reading and throughput


def paper_agreement(ppl: Change, bleu: Change) -> str:
    """How a (dev perplexity, BLEU) change compares with Vaswani et al.: PPL worse, BLEU better."""
    ppl_text = ("the perplexity moves as in the paper (worse)" if ppl.verdict is Verdict.WORSE
                else f"the perplexity moves against the paper ({ppl.verdict.value}, not worse)")
    if bleu.verdict is not Verdict.BETTER:
        bleu_text = f"BLEU moves against the paper ({bleu.verdict.value}, not better)"
    elif bleu.beyond_spread:
        bleu_text = "BLEU improves as in the paper"
    else:
        bleu_text = "BLEU has the paper's sign but the difference is within noise"
    return f"{ppl_text}; {bleu_text}"


def reading(m30k: list[Run], newstest: dict[str, list[Run]], budget_s: str) -> list[str]:
    """Bullet points whose wording follows the data."""
    stats = summary(m30k)
    base = stats[0.0]
    lines, ppl_improved = [], False
    # 1. Each epsilon against epsilon = 0, judged against the seed spread and the paper.
    for eps in sorted(e for e in stats if e != 0.0):
        s = stats[eps]
        ppl = compare(base["dev PPL"], s["dev PPL"], lower_is_better=True)
        bleu = compare(base["test BLEU"], s["test BLEU"], lower_is_better=False)
        dev_bleu = compare(base["dev BLEU (greedy, last)"], s["dev BLEU (greedy, last)"],
                           lower_is_better=False)
        ece = compare(base["ECE"], s["ECE"], lower_is_better=True)
        ppl_improved |= ppl.verdict is Verdict.BETTER
        lines.append(
            f"- **Multi30k, ε = {eps} vs 0** (3 seeds each): "
            f"{describe_change('dev perplexity', ppl, digits=2)}. "
            f"{describe_change('Test BLEU', bleu, digits=2)}; "
            f"{describe_change('greedy dev BLEU', dev_bleu, digits=2)}. "
            f"{describe_change('Dev ECE', ece, digits=4)}: mean confidence "
            f"{base['mean confidence'].mean:.3f} → {s['mean confidence'].mean:.3f} against accuracy "
            f"{base['dev accuracy'].mean:.3f} → {s['dev accuracy'].mean:.3f}. Against Vaswani et al. "
            f"(newstest2013 dev PPL {VASWANI[0.0][0]} → {VASWANI[eps][0]}, "
            f"dev BLEU {VASWANI[0.0][1]} → {VASWANI[eps][1]}): "
            f"{paper_agreement(ppl, bleu)}.")

    # 2. Were the models still improving when the time budget ended?
    gains = [gain_over_last_interval(r.valid, "bleu") for r in m30k]
    nll_change = statistics.fmean(gain_over_last_interval(r.valid, "nll")[0] for r in m30k)
    rising = sum(g > 0 for g, _ in gains)
    at_end = sum(r.best_step == r.valid[-1]["step"] for r in m30k)
    state = ("every model was still improving" if rising == at_end == len(m30k)
             else "some models were still improving, others had levelled off")
    lines.append(
        f"- **Undertrained.** Greedy dev BLEU was still rising at the last validation in {rising} of "
        f"{len(m30k)} Multi30k runs (mean {statistics.fmean(g for g, _ in gains):+.2f} BLEU over the last "
        f"~{statistics.fmean(n for _, n in gains):.0f} steps; dev NLL {nll_change:+.3f}), and the best dev "
        f"NLL was the final validation in {at_end} of {len(m30k)}: the {budget_s} s budget "
        f"(~{statistics.fmean(r.steps for r in m30k):.0f} steps, against the paper's 100k on WMT) ended "
        f"while {state}. These are image captions, not news, so only the direction of the paper's "
        f"result can be compared, not its numbers.")

    # 3. A possible reason when smoothing lowers dev perplexity, against the paper.
    if ppl_improved:
        groups = by_eps(m30k)
        gap = ", ".join(f"ε = {eps}: {statistics.fmean(r.train[-1]['nll'] for r in groups[eps]):.2f} vs "
                        f"{stats[eps]['dev NLL'].mean:.2f}" for eps in sorted(stats))
        epochs = statistics.fmean(r.train[-1]["epoch"] for r in m30k)
        lines.append(
            f"- **Why perplexity may improve here.** By the end (~{epochs:.0f} epochs of the training set) "
            f"the training-batch NLL, measured with dropout on, was already well below the dev NLL ({gap}). "
            f"A plausible reading: on a small caption corpus the ε = 0 models sharpen on the training "
            f"data faster than they generalise, and smoothing acts as a regulariser. Vaswani et al. "
            f"trained far longer on full WMT14, where the sharper ε = 0 model has the lower perplexity.")

    # 4. The newstest track: one seed per arm, reported but not interpreted.
    for version, runs in newstest.items():
        arms = {r.eps: r for r in runs}
        a, b = arms[0.0], arms[0.1]
        (gain_a, span), (gain_b, _) = (gain_over_last_interval(r.valid, "bleu") for r in (a, b))
        lines.append(
            f"- **Newstest {version}** ({a.steps} / {b.steps} steps, one seed per arm): test BLEU "
            f"(best checkpoint) {a.evals['best']['bleu']:.2f} at ε = 0 vs {b.evals['best']['bleu']:.2f} "
            f"at ε = 0.1, dev PPL {a.valid[-1]['ppl']:.1f} vs {b.valid[-1]['ppl']:.1f}; dev BLEU rose "
            f"{gain_a:+.2f} / {gain_b:+.2f} over the last ~{span} steps, and the training-batch NLL "
            f"({a.train[-1]['nll']:.2f} / {b.train[-1]['nll']:.2f}, epoch {a.train[-1]['epoch']}) is far "
            f"below the dev NLL ({a.valid[-1]['nll']:.2f} / {b.valid[-1]['nll']:.2f}). One seed of models "
            f"this far from converged, where even converged runs differ by ~0.3 BLEU from seed to seed, "
            f"says nothing about ε.")
    return lines


def median_tokens_per_s(train: list[dict]) -> float:
    """Median over the logged intervals, skipping the first 10% (start-up and warm-up)."""
    return statistics.median(r["tgt_tokens_per_s"] for r in train[len(train) // 10:])


def speed_note(newstest: dict[str, list[Run]]) -> str:
    """Whether the averaged checkpoints, with their longer outputs, decoded slower than the best."""
    pairs = [(r.evals["avg"], r.evals["best"]) for runs in newstest.values() for r in runs]
    longer_slower = all(a["length_ratio"] > b["length_ratio"] and a["sentences_per_second"] <
                        b["sentences_per_second"] for a, b in pairs)
    text = ("In every arm the averaged checkpoint wrote longer outputs and decoded slower than the best one."
            if longer_slower else "Output length and decoding speed do not move together in every arm.")
    best = {v: [r.evals["best"] for r in runs] for v, runs in newstest.items()}
    if "v1" in best and "v2" in best and max(e["sentences_per_second"] for e in best["v2"]) < min(
            e["sentences_per_second"] for e in best["v1"]):
        text += (" The v2 best checkpoints decoded slower than v1's despite shorter outputs; what else ran "
                 "on the GPU during those evaluations is not recorded.")
    return text


def throughput(results: Path, m30k: list[Run], newstest: dict[str, list[Run]]) -> list[str]:
    smoke = [rec for line in (results / "smoke" / "smoke.log").read_text().splitlines()
             if (rec := parse_log_line(line))]
    smoke_eval = json.loads((results / "smoke" / "smoke_hyp.json").read_text())
    head = ["training", "processes on the GPU", "median tgt tokens/s per run", "sum over these runs",
            "peak GPU GB per run"]
    smoke_rate = median_tokens_per_s(smoke)
    rows = [[f"smoke: Transformer-base, post-norm, lr 1e-3, {int(smoke[-1]['step'])} steps", "1",
             f"{smoke_rate:,.0f}", f"{smoke_rate:,.0f}", fmt(max(r["peak_gpu_gb"] for r in smoke), 1)]]
    processes = {"v1": "2", "v2": f"2, and {len(m30k) + 2} while Multi30k ran"}
    tracks = [(f"trainmix {v}: Transformer-base, pre-norm", processes[v], runs)
              for v, runs in newstest.items()]
    tracks.append(("Multi30k: d_model 256, 3+3 layers", f"{len(m30k) + 2}", m30k))
    for name, procs, runs in tracks:
        per_run = [median_tokens_per_s(r.train) for r in runs]
        rows.append([f"{name} ({len(runs)} runs)", procs, f"{statistics.fmean(per_run):,.0f}",
                     f"{sum(per_run):,.0f}", fmt(max(r.train[-1]["peak_gpu_gb"] for r in runs), 1)])
    decode_head = ["model", "checkpoint", "ε", "sentences/s", "length ratio", "test BLEU"]
    decode = [[f"trainmix {v}", c, f"{r.eps}", fmt(r.evals[c]["sentences_per_second"], 1),
               fmt(r.evals[c]["length_ratio"], 3), fmt(r.evals[c]["bleu"], 2)]
              for v, runs in newstest.items() for r in runs for c in ("best", "avg")]
    decode.append(["smoke (post-norm, undertrained)", "last", DASH,
                   fmt(smoke_eval["sentences_per_second"], 1), fmt(smoke_eval["length_ratio"], 3),
                   fmt(smoke_eval["bleu"], 2)])
    m30k_decode = [r.evals["best"]["sentences_per_second"] for r in m30k]
    return [
        markdown_table(head, rows), "",
        "Tokens/s: median of the logged intervals after the first 10% (warm-up). Where several "
        "processes shared the GPU, a run's rate is its slice of the GPU, not the speed of one run alone; "
        "the sum over a track's runs is a lower bound on what the GPU delivered.",
        "",
        f"Beam-4 decoding of newstest2014 ({smoke_eval['sentences']} sentences, batched):",
        "",
        markdown_table(decode_head, decode),
        "",
        f"{speed_note(newstest)} The smoke model's outputs are {smoke_eval['length_ratio']:.2f}× the "
        "reference length. "
        f"Multi30k test2016 decoding measured {min(m30k_decode):.0f}–{max(m30k_decode):.0f} sentences/s "
        f"with all {2 * len(m30k)} evaluation and calibration processes launched at once by "
        "`scripts/gpu_multi30k.sh`: contention, not model speed.",
    ]


# ---------------------------------------------------------------- report


def signatures(runs: list[Run]) -> tuple[str, str]:
    bleu = {ev["bleu_signature"] for r in runs for ev in r.evals.values()}
    chrf = {ev["chrf_signature"] for r in runs for ev in r.evals.values()}
    assert len(bleu) == 1 and len(chrf) == 1, (bleu, chrf)
    return bleu.pop(), chrf.pop()


def identical_prefix(a: list[dict], b: list[dict]) -> int:
    """How many leading records two lists share exactly."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def average_caveat(runs: list[Run]) -> str:
    """Says whether averaging the saved checkpoints helped or hurt, per arm."""
    parts = [f"ε = {r.eps}: {r.evals['avg']['bleu']:.2f} vs {r.evals['best']['bleu']:.2f}" for r in runs]
    worse = all(r.evals["avg"]["bleu"] < r.evals["best"]["bleu"] for r in runs)
    steps = ", ".join(map(str, averaged_steps(runs[0])))
    verdict = "hurts" if worse else "does not consistently hurt"
    return (f"Averaging checkpoints of steps {steps}, all well before the end at {runs[0].steps}, "
            f"{verdict} (test BLEU of average vs best, {'; '.join(parts)}).")


def render(results: Path, m30k: list[Run], newstest: dict[str, list[Run]], figures_rel: str,
           figures: list[str]) -> str:
    all_runs = m30k + [r for runs in newstest.values() for r in runs]
    bleu_sig, chrf_sig = signatures(all_runs)
    summary_table, per_run_table = multi30k_tables(m30k)
    v1, v2 = newstest["v1"], newstest["v2"]
    seconds = {name: f'{float(runs[0].config("train.max_time")):.0f}'
               for name, runs in (("m30k", m30k), *newstest.items())}
    same = min(identical_prefix(a.valid, next(b for b in v2 if b.eps == a.eps).valid) for a in v1)
    fig = {name: f"{figures_rel}/{name}" for name in figures}
    test_sentences = {name: runs[0].evals["best"]["sentences"] for name, runs in (("m30k", m30k), ("v1", v1))}
    out = [
        "# Label smoothing: results",
        "",
        "Generated by `python scripts/reproduce_label_smoothing.py` from the files under `results/`; "
        "do not edit by hand. Every run trained on " + DEVICE + ", in bf16.",
        "",
        f"Scores: sacreBLEU `{bleu_sig}`, chrF `{chrf_sig}`, beam 4, GNMT length penalty α = 0.6. "
        "Dev NLL and perplexity are the plain NLL per target token (never the smoothed loss); ECE uses "
        "15 equal-width confidence bins over dev tokens under teacher forcing (`scripts/calibrate.py`).",
        "",
        "## Multi30k (En→De captions), ε ∈ {0, 0.1, 0.2} × 3 seeds",
        "",
        f"Config `configs/multi30k_small.yaml` (d_model 256, 3+3 layers, pre-norm, dropout 0.3); "
        f"`TRANSLATE_DATA=... OUT=results/multi30k bash scripts/gpu_multi30k.sh {seconds['m30k']}`. "
        f"All {len(m30k)} runs trained side by side on {DEVICE}, together with the {len(v2)} trainmix v2 "
        f"runs, each for train.max_time = {seconds['m30k']} s. Test: test2016 ({test_sentences['m30k']} "
        "sentences) with the best checkpoint (lowest dev NLL). Dev BLEU: greedy, whole dev set "
        f"({m30k[0].config('eval.dev_bleu_sentences')} sentences), at the last validation. Dev NLL / PPL / "
        "calibration: best checkpoint.",
        "",
        "Mean ± sample std over seeds:",
        "",
        summary_table,
        "",
        "Per run (`train s` is elapsed_s of the last logged train step; training stops at the time limit):",
        "",
        per_run_table,
        "",
        f"![Multi30k dev NLL]({fig['m30k_dev_nll.png']}) ![Multi30k dev BLEU]({fig['m30k_dev_bleu.png']})",
        "",
        f"![Multi30k reliability]({fig['m30k_reliability.png']})",
        "",
        "Curves use the validation steps every seed has; the extra end-of-run validation of one run is "
        "in the table only.",
        "",
        "## Newstest track (Transformer-base on the 257k-pair train-mix), ε ∈ {0.1, 0} × 1 seed",
        "",
        "Config `configs/trainmix_base.yaml` with `--set model.norm_first=true --set optim.lr=7e-4` "
        "(dropout 0.3), dev newstest2013 (greedy dev BLEU on its first "
        f"{v1[0].config('eval.dev_bleu_sentences')} sentences), test newstest2014 "
        f"({test_sentences['v1']} lines). Both arms share seed {v1[0].seed} and trained side by side. "
        "Dev NLL: the calibration file where there is one (v2), else the validation record of that step.",
        "",
        f"### v1: {' / '.join(str(r.steps) for r in v1)} steps ({seconds['v1']} s each, "
        f"{len(v1)} runs on the GPU)",
        "",
        "Produced by the first version of `scripts/gpu_ls_trainmix.sh` (never committed in that form; train, then eval, "
        f"in one call; train.save_every {v1[0].config('train.save_every')}, "
        f"`average --last {len(averaged_steps(v1[0]))}`), run as "
        f"`OUT=results/trainmix_v1 bash scripts/gpu_ls_trainmix.sh 3000 {seconds['v1']}` (max 3000 steps, "
        f"{seconds['v1']} s). The current script's `MODE=train` then `MODE=eval` does the same with "
        "save_every 500 and calibration. No calibration was measured. " + average_caveat(v1),
        "",
        newstest_table(v1),
        "",
        f"### v2: {' / '.join(str(r.steps) for r in v2)} steps ({seconds['v2']} s each, sharing the GPU "
        f"with the {len(m30k)} Multi30k runs)",
        "",
        f"`OUT=results/trainmix_v2 MODE=train bash scripts/gpu_ls_trainmix.sh {seconds['v2']}`, "
        "then `OUT=results/trainmix_v2 MODE=eval bash scripts/gpu_ls_trainmix.sh` (averaging the "
        f"{len(averaged_steps(v2[0]))} checkpoints that existed). " + average_caveat(v2) + " The best "
        "checkpoints' outputs are short (length ratio " +
        " / ".join(fmt(r.evals["best"]["length_ratio"], 3) for r in v2) + "), the averages' long.",
        "",
        newstest_table(v2),
        "",
        f"The first {same} validation records of each arm are bit-identical in v1 and v2 (same seed, "
        "same batches): training is deterministic, GPU sharing changed only the speed.",
        "",
        f"![Newstest dev NLL]({fig['trainmix_dev_nll.png']}) "
        f"![Newstest dev BLEU]({fig['trainmix_dev_bleu.png']})",
        "",
        "## Reading",
        "",
        *reading(m30k, newstest, seconds["m30k"]),
        "",
        "## Throughput seen in these runs",
        "",
        *throughput(results, m30k, newstest),
        "",
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--output", type=Path, default=Path("docs/RESULTS.md"))
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    m30k = load_track(args.results / "multi30k")
    newstest = {v: load_track(args.results / f"trainmix_{v}") for v in ("v1", "v2")}
    figures = plot_figures(m30k, newstest, args.figures)
    figures_rel = Path(os.path.relpath(args.figures.resolve(), args.output.parent.resolve())).as_posix()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(args.results, m30k, newstest, figures_rel, figures))
    print(f"wrote {args.output} and {len(figures)} figures in {args.figures}")


if __name__ == "__main__":
    main()
