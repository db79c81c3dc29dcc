"""The `translate` command line: prepare, train, eval, translate, average, distill-data, export, plot.

Every subcommand turns a `UserError` into one message on stderr and exit code 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from translate.errors import UserError

EXAMPLES = """\
examples:
  translate prepare --config configs/demo.yaml
  translate train --config configs/demo.yaml
  translate eval --checkpoint runs/demo/checkpoint_best.pt
  echo "The small dog sees a red car." | translate translate --checkpoint runs/demo/checkpoint_best.pt
  translate average --last 5 runs/wmt14_base --output runs/wmt14_base/checkpoint_avg.pt
  translate distill-data --teacher runs/demo/checkpoint_best.pt --config configs/demo.yaml --output data/demo_kd/train
  translate export --checkpoint runs/demo/checkpoint_best.pt --format ctranslate2 --output runs/demo/ct2
  translate plot runs/demo runs/demo_ls0 --output curves.png
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translate",
        description="Train and evaluate Transformer translation models (English-German by default).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, type=Path, help="YAML config file (see configs/)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config value, typed as in YAML; repeatable (e.g. --set optim.lr=5e-4)")

    p = commands.add_parser("prepare", help="train the tokenizer and binarize the corpora (cached)",
                            description="Clean, tokenize and binarize the training and validation corpora into "
                                        "data.data_dir. Reuses the cache when sources and settings are unchanged.")
    add_config_args(p)

    p = commands.add_parser("train", help="train a model (prepares the data first if needed)",
                            description="Train a Transformer. Writes checkpoints, config.yaml and metrics.jsonl "
                                        "to train.out_dir (default runs/<config name>).")
    add_config_args(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint_last.pt")
    mode.add_argument("--overwrite", action="store_true", help="delete an existing run directory and start afresh")

    def add_decoding_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file (config and tokenizer found from it)")
        p.add_argument("--beam", type=int, help="beam size (default: the checkpoint's eval.beam)")
        p.add_argument("--lenpen", type=float, help="GNMT length penalty alpha (default: eval.lenpen; 0 = none)")
        p.add_argument("--batch-tokens", type=int, help="source tokens per decoding batch")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                       help="the model's weights and activations while decoding: float32 (default) or bfloat16, "
                            "faster on GPUs; beam scores stay float32 either way")
        p.add_argument("--cuda-graphs", action="store_true",
                       help="decode with fixed shapes, each batch's decoder step captured once as a CUDA graph "
                            "and replayed (GPU only; the same translations up to float rounding)")

    p = commands.add_parser("eval", help="decode a test set and print sacreBLEU and chrF",
                            description="Translate a test set with beam search and score it with sacreBLEU "
                                        "(detokenized output against untouched references).")
    add_decoding_args(p)
    p.add_argument("--src", type=Path, help="source file (plain, .gz/.xz or .sgm); default: the config's data.test")
    p.add_argument("--ref", type=Path, help="reference file matching --src")
    p.add_argument("--output", type=Path, help="write the detokenized hypotheses here")
    p.add_argument("--json", type=Path, help="write the result as JSON here (default: next to --output, or none)")

    p = commands.add_parser("translate", help="translate stdin (or --input) to stdout, line by line",
                            description="Read source sentences, one per line, and write translations in order. "
                                        "Empty lines give empty lines.")
    add_decoding_args(p)
    p.add_argument("--input", type=Path, help="read from this file instead of stdin")

    p = commands.add_parser("average", help="average the weights of several checkpoints",
                            description="Average model weights of compatible checkpoints (same config shape).")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--inputs", nargs="+", type=Path, help="checkpoint files to average")
    group.add_argument("--last", nargs=2, metavar=("N", "RUN_DIR"), help="the N newest numbered checkpoints of RUN_DIR")
    p.add_argument("--output", required=True, type=Path, help="where to write the averaged checkpoint")

    p = commands.add_parser("distill-data", help="translate the training sources with a teacher (sequence-level KD)",
                            description="Translate the source side of the config's training corpus with the teacher "
                                        "(beam search with the config's eval settings) and write PREFIX.<src>, "
                                        "PREFIX.<tgt> and PREFIX.distill.json; train on it with data.train.prefix: "
                                        "PREFIX. An interrupted run resumes from its finished chunks.")
    p.add_argument("--teacher", required=True, type=Path, help="the teacher's checkpoint")
    add_config_args(p)
    p.add_argument("--output", required=True, help="PREFIX of the files to write (e.g. data/kd/train)")
    p.add_argument("--xz", action="store_true", help="write PREFIX.<lang>.xz instead of plain text")
    p.add_argument("--chunk-sentences", type=int, default=10_000,
                   help="source lines per chunk, the unit that an interrupted run resumes from (default 10000)")
    p.add_argument("--beam", type=int, help="beam size (default: the config's eval.beam)")
    p.add_argument("--lenpen", type=float, help="GNMT length penalty alpha (default: eval.lenpen)")
    p.add_argument("--batch-tokens", type=int, help="source tokens per decoding batch (default: eval.batch_tokens)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="the teacher's weights while decoding; auto: bfloat16 on a GPU, float32 on the CPU")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="replay each batch's decoder step as a CUDA graph (default: on a GPU)")

    p = commands.add_parser("export", help="write a checkpoint as a CTranslate2 or Hugging Face Marian model",
                            description="Export a checkpoint for deployment: a CTranslate2 model directory "
                                        "(pip install -e \".[export]\") or a Hugging Face MarianMTModel + "
                                        "MarianTokenizer directory (post-norm models; pip install -e \".[hf]\").")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file (its spm.model beside it)")
    p.add_argument("--format", required=True, choices=["ctranslate2", "huggingface"])
    p.add_argument("--output", required=True, type=Path, help="the model directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists and is not empty")
    p.add_argument("--quantization", choices=["int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                                              "float16", "bfloat16", "float32"],
                   help="ctranslate2: store the weights in this type (default float32; CTranslate2 can also "
                        "convert when loading, with compute_type)")

    p = commands.add_parser("plot", help="draw training curves of one or more runs as one PNG",
                            description="One PNG dashboard (NLL, perplexity, dev BLEU, learning rate, gradient norm, "
                                        "tokens/s, entropy, confidence, logits, weights, ECE) of each run's "
                                        "metrics.jsonl, runs overlaid. Needs matplotlib (pip install -e \".[plots]\").")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="run directory (its metrics.jsonl, or each metrics*.jsonl in it) or a metrics .jsonl file")
    p.add_argument("--output", type=Path, help="PNG to write (default: RUN_DIR/curves.png for one run directory, "
                                               "else curves.png)")
    p.add_argument("--x", choices=["step", "time"], default="step", help="x axis: optimizer step or training time")
    p.add_argument("--dpi", type=int, default=100, help="resolution (default 100: 1760 x 930 pixels)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UserError as e:
        print(f"translate {args.command}: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "prepare":
        from translate.config import config_to_yaml, load_config
        from translate.data import format_summary, prepare

        cfg = load_config(args.config, args.overrides)
        if cfg.distill.teacher:  # the teacher's vocabulary, as training would use it
            import torch

            from translate.distill import load_teacher, student_config

            cfg = student_config(cfg, load_teacher(cfg.distill.teacher, device=torch.device("cpu")))
        print(config_to_yaml(cfg), end="")
        print(format_summary(prepare(cfg).summary))
        return 0
    if args.command == "train":
        from translate.config import load_config
        from translate.train import train

        cfg = load_config(args.config, args.overrides)
        return train(cfg, resume=args.resume, overwrite=args.overwrite)
    if args.command == "eval":
        from translate.evaluate import run_eval

        return run_eval(args)
    if args.command == "translate":
        from translate.evaluate import run_translate

        return run_translate(args)
    if args.command == "distill-data":
        from translate.distill_data import run_distill_data

        return run_distill_data(args)
    if args.command == "average":
        from translate.checkpoint import run_average

        return run_average(args)
    if args.command == "export":
        from translate.export import run_export

        return run_export(args)
    if args.command == "plot":
        from translate.plot import run_plot

        return run_plot(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
