"""Does Hugging Face generate take another code path in bfloat16? Counts the operators torch.profiler
records for one MarianMTModel.generate call (tiny, randomly initialised, beam 4, forced length) in
float32 and in bfloat16 on the CPU. Asked because on the H200 HF's bf16 rows of scripts/bench_decode.py
ran 4.5x (beam) and 9.3x (greedy) slower than its float32 rows (results/bench/decode_graphs_*.json).
Run from the repository root: python results/cpu/hf_generate_dtype_ops.py"""
import sys

import torch
from transformers import MarianMTModel

sys.path.insert(0, "scripts")
import bench_common as common  # noqa: E402

DIMS = dict(d_model=64, n_heads=2, d_ff=128, n_encoder_layers=2, n_decoder_layers=2, vocab_size=1000)
for beams in (4, 1):
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        model = MarianMTModel(common.marian_config(DIMS, dropout=0.0, max_positions=256)).to(dtype).eval()
        src = torch.randint(4, 1000, (16, 20))
        src[:, -1] = 2  # EOS
        with torch.no_grad(), torch.profiler.profile() as prof:
            model.generate(input_ids=src, attention_mask=src != 0, num_beams=beams, max_new_tokens=30,
                           min_new_tokens=30, decoder_start_token_id=1, eos_token_id=2, pad_token_id=0)
        counts = {e.key: e.count for e in prof.key_averages()}
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:6]
        print(f"beams {beams} {str(dtype):15} {sum(counts.values()):6d} operators, {len(counts)} kinds; most: {top}")
