"""Pure helpers of scripts/reproduce_label_smoothing.py: reading the results/ folders (runs of
`translate train`, the Hugging Face peer of scripts/peer_marian.py, the training benchmark), the
seed statistics, and markdown formatting. Nothing here draws, writes or decides wording."""

from __future__ import annotations

import enum
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

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
        return best_record(self.valid)["step"]

    def config(self, key: str) -> str | None:
        """A value (`train.max_time`) of the resolved config printed at the top of the run's log."""
        return log_config_value(self.log, key)

    @property
    def log(self) -> Path:
        return self.folder / f"train_{self.tag}.log"


@dataclass
class Peer:
    """The Hugging Face MarianMTModel peer trained beside a track's runs (scripts/peer_marian.py):
    its summary JSON (peer_marian.json) and its metrics records (metrics_peer_marian.jsonl)."""

    summary: dict
    train: list[dict]
    valid: list[dict]

    @property
    def steps(self) -> int:
        return self.summary["steps"]

    @property
    def test(self) -> dict:
        return self.summary["test"]

    @property
    def norm(self) -> str:
        """"post-norm" / "pre-norm", as the summary's recipe names the model."""
        match = re.search(r"\b(pre|post)-norm\b", self.summary["recipe"]["model"])
        return match.group(0) if match else DASH


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def split_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train records, valid records) of a metrics file, each in order."""
    return [r for r in records if r["kind"] == "train"], [r for r in records if r["kind"] == "valid"]


def load_run(folder: Path, *, eps: float, seed: int, tag: str) -> Run:
    """Reads metrics_{tag}.jsonl, eval[_best|_avg]_{tag}.json and calib[_best|_avg]_{tag}.json."""
    train, valid = split_records(read_jsonl(folder / f"metrics_{tag}.jsonl"))
    run = Run(folder=folder, tag=tag, eps=eps, seed=seed, train=train, valid=valid)
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


def run_gpu(run: Run) -> str | None:
    """The GPU a run trained on, from the `nvidia-smi --query-gpu=name,... --format=csv` output saved
    beside it (with or without its header line): gpu_{tag}.txt for an arm trained apart from the rest
    of its folder, else gpu.txt."""
    for name in (f"gpu_{run.tag}.txt", "gpu.txt"):
        path = run.folder / name
        rows = [line.lstrip("\ufeff").strip() for line in path.read_text().splitlines()] if path.is_file() else []
        rows = [line for line in rows if line and not line.lower().startswith("name")]
        if rows:  # an empty or header-only file says nothing: try the next
            return rows[0].split(",")[0].strip()
    return None


def load_peer(folder: Path) -> Peer | None:
    """The peer of a results folder (peer_marian.json + metrics_peer_marian.jsonl), None without one."""
    summary = folder / "peer_marian.json"
    if not summary.exists():
        return None
    train, valid = split_records(read_jsonl(folder / "metrics_peer_marian.jsonl"))
    return Peer(summary=json.loads(summary.read_text()), train=train, valid=valid)


@dataclass(frozen=True)
class Bench:
    """A scripts/bench_train.py result: target tokens/s per system (rows without error), settings."""

    path: Path
    rates: dict[str, float]
    settings: dict


def load_bench(path: Path) -> Bench:
    data = json.loads(path.read_text())
    rates = {row["system"]: row["tgt_tokens_per_s"] for row in data["rows"] if not row.get("error")}
    return Bench(path, rates, data["settings"])


@dataclass(frozen=True)
class Smoke:
    """The first post-norm Transformer-base run (results/smoke): its log records and test eval."""

    train: list[dict]
    valid: list[dict]
    test: dict


def load_smoke(folder: Path) -> Smoke:
    lines = (folder / "smoke.log").read_text().splitlines()
    train = [rec for line in lines if (rec := parse_log_line(line))]
    valid = [rec for line in lines if line.startswith("valid ") and (rec := parse_log_line(line[6:]))]
    return Smoke(train, valid, json.loads((folder / "smoke_hyp.json").read_text()))


def log_config_value(log: Path, key: str) -> str | None:
    """`train.seed` -> its value in the resolved config that `translate train` prints at the top of
    its log (a YAML dump: `train:` then indented `  seed: 1`; `data.train.seed` is another key)."""
    section, name = key.split(".")
    block = re.search(rf"^{section}:\n((?:[ ].*\n)*)", log.read_text(), flags=re.MULTILINE)
    value = block and re.search(rf"^  {name}: (.+)$", block.group(1), flags=re.MULTILINE)
    return value.group(1).strip() if value else None


def log_parameters(log: Path) -> int | None:
    """The parameter count of `model: 60,524,544 parameters; ...` in a training log."""
    match = re.search(r"^model: ([\d,]+) parameters", log.read_text(), flags=re.MULTILINE)
    return int(match.group(1).replace(",", "")) if match else None


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


# ---------------------------------------------------------------- records


def arms(runs: list[Run]) -> list[Run]:
    """A newstest track's single-seed arms in report order: ε = 0.1 first."""
    return sorted(runs, key=lambda r: -r.eps)


def best_record(valid: list[dict]) -> dict:
    """The validation record of the lowest dev NLL (the first of equals)."""
    return min(valid, key=lambda r: r["nll"])


def value_at_step(records: list[dict], step: int, key: str) -> float | None:
    return next((r[key] for r in records if r["step"] == step), None)


def shared_steps(*valids: list[dict]) -> list[int]:
    """Validation steps that every one of the given record lists has, ascending."""
    return sorted(set.intersection(*({r["step"] for r in valid} for valid in valids)))


def median_tokens_per_s(train: list[dict]) -> float:
    """Median over the logged intervals, skipping the first 10% (start-up and warm-up)."""
    return statistics.median(r["tgt_tokens_per_s"] for r in train[len(train) // 10:])


def identical_prefix(a: list[dict], b: list[dict]) -> int:
    """How many leading records two lists share exactly."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


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


def fmt_int(value: float | None) -> str:
    """12345.6 -> "12,346"; None -> the dash."""
    return DASH if value is None or math.isnan(value) else f"{value:,.0f}"


def fmt_lr(lr: float) -> str:
    """0.0007 -> "7e-4", 0.00075 -> "7.5e-4"."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def fmt_stat(stat: Stat, digits: int) -> str:
    return f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
