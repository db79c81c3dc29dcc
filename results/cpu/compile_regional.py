"""Whole-model vs per-layer ("regional") torch.compile of translate's training step on the CPU: the time
of each of 14 steps (the first one compiles), 6 + 6 tiny layers. An experiment, not what `translate train`
does (train.compile compiles the whole model). Run from the repository root:
    python results/cpu/compile_regional.py eager|layers|whole"""
import sys, time
import torch
import torch.fx.experimental._config as fx_config
sys.path[:0] = ["scripts", "."]
import bench_train as bt

mode = sys.argv[1]
dims = {k: bt.TINY[k] for k in ("d_model", "n_heads", "d_ff", "vocab_size")} | dict(n_encoder_layers=6, n_decoder_layers=6)
batches = bt.synthetic_batches(vocab_size=1000, max_tokens=600, count=14, seed=1)
model, step = bt.translate_system(dims, torch.device("cpu"), torch.autocast("cpu", enabled=False), compile_model=(mode == "whole"))
if mode == "layers":  # each layer compiled in place; layers of one class share the compiled code
    fx_config.use_duck_shape = False
    for layer in [*model.encoder_layers, *model.decoder_layers]:
        layer.compile(dynamic=True)
t0 = time.perf_counter()
for i, batch in enumerate(batches):
    start = time.perf_counter()
    step(batch)
    print(f"{mode} step {i:2d}: {time.perf_counter() - start:7.3f} s  src {tuple(batch.src.shape)} tgt {tuple(batch.tgt_in.shape)}", flush=True)
print(f"{mode}: total {time.perf_counter() - t0:.1f} s")
