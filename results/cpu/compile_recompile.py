"""Per-step time of the tiny compiled `translate` step on the CPU over 12 synthetic batches, with
Dynamo's duck sizing as torch ships it (--duck-shape) or off (translate.runtime.independent_lengths; when
recorded, the whole model was compiled: bench_train's translate_compiled has since become per-layer).
Run from the repository root: TORCH_LOGS=recompiles python results/cpu/compile_recompile.py [--duck-shape]"""
import sys
import time

import torch
import torch.fx.experimental._config as fx_config

sys.path[:0] = ["scripts", "."]
import bench_train as bt  # noqa: E402

dims = {k: bt.TINY[k] for k in ("d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "vocab_size")}
batches = bt.synthetic_batches(vocab_size=1000, max_tokens=600, count=12, seed=1)
model, step = bt.translate_system(dims, torch.device("cpu"), torch.autocast("cpu", enabled=False), compile_model=True)
fx_config.use_duck_shape = "--duck-shape" in sys.argv  # after the compile step set it off; tracing is lazy
print(f"torch {torch.__version__}, duck sizing {'on' if fx_config.use_duck_shape else 'off'}")
for i, batch in enumerate(batches):
    start = time.perf_counter()
    step(batch)
    print(f"step {i:2d}: {time.perf_counter() - start:7.3f} s  src {tuple(batch.src.shape)} tgt {tuple(batch.tgt_in.shape)}",
          flush=True)
