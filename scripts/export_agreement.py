"""How closely exported models translate like `translate translate`: lines identical to ours and the
BLEU difference, on a checkpoint's test set, beam 4, for each length-penalty α given.

Rows per α:
    ct2 translate_batch          CTranslate2's own call: length_penalty=α (its L^α, L without EOS), one
                                 max_decoding_length for the whole set (the longest source's limit)
    ct2 translate_ctranslate2    translate.exported: our GNMT choice among its finished hypotheses,
                                 one call per length limit, patience 2
    hf generate                  MarianMTModel.generate(num_beams=4, length_penalty=α) per sentence,
                                 max_length = start + its limit + EOS (post-norm checkpoints only)
    hf translate_marian          translate.exported: our GNMT choice among its K finished hypotheses

    python scripts/export_agreement.py --checkpoint runs/x/checkpoint_best.pt --sentences 200 --output a.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from translate import corpus as corpora  # noqa: E402
from translate.evaluate import (DecodeOptions, encode_sources, load_for_inference, score,  # noqa: E402
                                translate_sentences)
from translate.export import write_ctranslate2, write_huggingface  # noqa: E402
from translate.exported import translate_ctranslate2, translate_marian  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--sentences", type=int, default=200, help="the first N pairs of the config's test set")
    p.add_argument("--lenpen", default="0.6,0", help="α values, comma-separated")
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)

    model, tokenizer, cfg = load_for_inference(args.checkpoint, torch.device("cpu"))
    pairs = list(corpora.read_pairs(cfg.data.test, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang))
    sources, references = [s for s, _ in pairs[:args.sentences]], [t for _, t in pairs[:args.sentences]]
    max_positions = cfg.model.max_positions
    ids = encode_sources(tokenizer, sources, max_source=max_positions - 1)
    directory = Path(tempfile.mkdtemp(prefix="export_agreement_"))
    import ctranslate2
    write_ctranslate2(model, tokenizer, directory / "ct2")
    translator = ctranslate2.Translator(str(directory / "ct2"), device="cpu")
    marian = hf_tokenizer = None
    if not cfg.model.norm_first:
        import transformers
        write_huggingface(model, tokenizer, directory / "hf")
        marian = transformers.MarianMTModel.from_pretrained(directory / "hf").eval()
        hf_tokenizer = transformers.MarianTokenizer.from_pretrained(directory / "hf")

    rows = []
    for lenpen in (float(a) for a in args.lenpen.split(",")):
        options = DecodeOptions(beam=4, lenpen=lenpen)
        ours = translate_sentences(model, tokenizer, sources, options=options, device=torch.device("cpu"))
        systems = {"ct2 translate_batch": lambda: native_ctranslate2(translator, tokenizer, ids, lenpen=lenpen),
                   "ct2 translate_ctranslate2": lambda: translate_ctranslate2(
                       translator, tokenizer, sources, options=options, max_positions=max_positions)}
        if marian is not None:
            systems["hf generate"] = lambda: native_generate(marian, hf_tokenizer, sources, lenpen=lenpen)
            systems["hf translate_marian"] = lambda: translate_marian(
                marian, hf_tokenizer, sources, options=options, max_positions=max_positions)
        for name, run in systems.items():
            theirs = run()
            rows.append({"lenpen": lenpen, "system": name, "sentences": len(sources),
                         "identical": sum(a == b for a, b in zip(ours, theirs, strict=True)),
                         "bleu": score(theirs, references)["bleu"], "bleu_ours": score(ours, references)["bleu"]})
            print(json.dumps(rows[-1]), flush=True)
    if args.output:
        args.output.write_text(json.dumps({"checkpoint": str(args.checkpoint), "rows": rows}, indent=2) + "\n")
    return 0


def native_ctranslate2(translator, tokenizer, ids: list[list[int]], *, lenpen: float) -> list[str]:
    pieces = [[tokenizer.sp.IdToPiece(t) for t in seq] for seq in ids]
    results = translator.translate_batch(pieces, beam_size=4, length_penalty=lenpen,
                                         max_decoding_length=max(map(len, ids)) + 52)
    return tokenizer.decode([[tokenizer.sp.PieceToId(p) for p in r.hypotheses[0]] for r in results])


@torch.no_grad()
def native_generate(marian, hf_tokenizer, sources: list[str], *, lenpen: float) -> list[str]:
    outputs = []
    for source in sources:
        batch = hf_tokenizer([corpora.normalize(source)], return_tensors="pt")
        generated = marian.generate(**batch, num_beams=4, length_penalty=lenpen,
                                    max_length=batch.input_ids.shape[1] + 52)  # start + limit + EOS
        outputs.append(hf_tokenizer.decode(generated[0], skip_special_tokens=True))
    return outputs


if __name__ == "__main__":
    sys.exit(main())
