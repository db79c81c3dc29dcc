"""Teacher-forced calibration of a checkpoint on its config's dev set: ECE (15 bins), accuracy,
mean confidence, mean entropy and NLL, written as JSON (used by the label-smoothing report).

    python scripts/calibrate.py --checkpoint runs/x/checkpoint_best.pt --output calib.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from translate import corpus as corpora
from translate.calibration import calibration
from translate.data import TokenizedCorpus
from translate.evaluate import load_for_inference


def tokenized_dev(cfg, tokenizer, max_len: int) -> TokenizedCorpus:
    d = cfg.data
    pairs = list(corpora.read_pairs(d.valid, src_lang=d.src_lang, tgt_lang=d.tgt_lang))
    src = [s[:max_len] for s in tokenizer.encode([corpora.normalize(s) for s, _ in pairs])]
    tgt = [t[:max_len] for t in tokenizer.encode([corpora.normalize(t) for _, t in pairs])]

    def flat(seqs):
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        return np.fromiter((i for s in seqs for i in s), dtype=np.int64, count=int(offsets[-1])), offsets

    return TokenizedCorpus(*flat(src), *flat(tgt))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model, tokenizer, cfg = load_for_inference(args.checkpoint, device)
    dev = tokenized_dev(cfg, tokenizer, max_len=cfg.model.max_positions - 2)
    result = {"checkpoint": str(args.checkpoint), "label_smoothing": cfg.train.label_smoothing,
              "seed": cfg.train.seed, **calibration(model, dev, device=device)}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.checkpoint}: ECE {result['ece']:.4f}, accuracy {result['accuracy']:.4f}, "
          f"confidence {result['mean_confidence']:.4f}, entropy {result['mean_entropy']:.4f}, nll {result['nll']:.4f}")


if __name__ == "__main__":
    main()
