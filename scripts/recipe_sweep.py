"""Choose a recipe by dev BLEU (issue #6): short `translate train` runs of one config, each with one change,
one after another (each alone on the GPU), compared at equal training time.

Each variant is a name and its `--set` overrides. A variant whose run directory already says "done" in
its train.log is not trained again, so a sweep longer than one call's time limit runs over several calls
with the same command line. Every override is validated before anything trains (one message, exit 2).
Then the summary: per variant the steps reached, the best greedy dev BLEU (`eval.dev_bleu_sentences`
of the dev set) and where, the best dev NLL and where, and the dev NLL at the end (how far it rose:
overfitting), as JSON and a Markdown table.

    TRANSLATE_DATA=/data python scripts/recipe_sweep.py --config configs/trainmix_postnorm.yaml --seconds 280 \\
        --runs /tmp/sweep --output results/trainmix_sweep \\
        --variant base --variant dropout0.4 model.dropout=0.4 --variant ff1024 model.d_ff=1024
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_common import best_record, read_jsonl, split_records  # noqa: E402
from translate.config import load_config  # noqa: E402
from translate.errors import UserError  # noqa: E402

DONE = "done: "  # the last line `translate train` prints after a finished run


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, type=Path, help="the recipe every variant starts from")
    p.add_argument("--seconds", required=True, type=float, help="train.max_time of every variant")
    p.add_argument("--variant", action="append", nargs="+", required=True, metavar=("NAME", "SECTION.KEY=VALUE"),
                   help="a name and its overrides (none: the config as it is); repeatable")
    p.add_argument("--runs", required=True, type=Path, help="where the run directories go (one per variant)")
    p.add_argument("--output", required=True, type=Path, help="folder for train logs, metrics and the summary")
    return p.parse_args(argv)


def check_variants(config: Path, variants: list[list[str]]) -> None:
    """Every variant's config must load before the first one trains."""
    names = [name for name, *_ in variants]
    if len(set(names)) < len(names):
        raise UserError(f"variant names must differ: {', '.join(names)}")
    for name, *overrides in variants:
        try:
            load_config(config, overrides)
        except UserError as e:
            raise UserError(f"variant {name}: {e}") from None


def is_done(log: Path) -> bool:
    return log.is_file() and any(line.startswith(DONE) for line in log.read_text().splitlines())


def train_variant(config: Path, name: str, overrides: list[str], *, seconds: float, runs: Path, output: Path) -> None:
    sets = [f"train.max_time={seconds:g}", f"train.out_dir={runs / name}", *overrides]
    command = [sys.executable, "-m", "translate", "train", "--overwrite", "--config", str(config)]
    command += [arg for value in sets for arg in ("--set", value)]
    with open(output / f"train_{name}.log", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise UserError(f"variant {name}: translate train exited with {code}; see {output / f'train_{name}.log'}")
    (output / f"metrics_{name}.jsonl").write_text((runs / name / "metrics.jsonl").read_text())


def summarise(name: str, overrides: list[str], records: list[dict]) -> dict:
    """One variant's row: steps, best greedy dev BLEU and dev NLL (and their steps), the final dev NLL."""
    train, valid = split_records(records)
    best_nll = best_record(valid)
    row = {"variant": name, "overrides": overrides, "steps": max(r["step"] for r in train + valid),
           "tgt_tokens_per_s": statistics.median(r["tgt_tokens_per_s"] for r in train) if train else None,
           "best_nll": best_nll["nll"], "best_nll_step": best_nll["step"], "final_nll": valid[-1]["nll"]}
    scored = [r for r in valid if "bleu" in r]
    if scored:
        best_bleu = max(scored, key=lambda r: r["bleu"])
        row.update(best_bleu=best_bleu["bleu"], best_bleu_step=best_bleu["step"], final_bleu=scored[-1]["bleu"])
    return row


def markdown(rows: list[dict]) -> str:
    head = ["variant", "overrides", "steps", "best dev BLEU (step)", "final dev BLEU", "best dev NLL (step)",
            "final dev NLL", "tgt tok/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -r.get("best_bleu", -math.inf)):
        bleu = f"{r['best_bleu']:.2f} ({r['best_bleu_step']})" if "best_bleu" in r else "–"
        final_bleu = f"{r['final_bleu']:.2f}" if "final_bleu" in r else "–"
        rate = f"{r['tgt_tokens_per_s']:,.0f}" if r["tgt_tokens_per_s"] else "–"
        lines.append(f"| {r['variant']} | {' '.join(r['overrides']) or '(the config)'} | {r['steps']} | {bleu} | "
                     f"{final_bleu} | {r['best_nll']:.3f} ({r['best_nll_step']}) | {r['final_nll']:.3f} | {rate} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_variants(args.config, args.variant)
        args.output.mkdir(parents=True, exist_ok=True)
        for name, *overrides in args.variant:
            if is_done(args.output / f"train_{name}.log"):
                print(f"{name}: done in an earlier call", flush=True)
                continue
            print(f"{name}: training for {args.seconds:g} s", flush=True)
            train_variant(args.config, name, overrides, seconds=args.seconds, runs=args.runs, output=args.output)
    except UserError as e:
        print(f"recipe_sweep: error: {e}", file=sys.stderr)
        return 2
    rows = [summarise(name, overrides, read_jsonl(args.output / f"metrics_{name}.jsonl"))
            for name, *overrides in args.variant]
    summary = {"config": str(args.config), "seconds": args.seconds, "variants": rows}
    (args.output / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(rows)
    (args.output / "sweep.md").write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
