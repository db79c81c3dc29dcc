"""Run `translate train` with an optional init override (monkeypatch; repo untouched).
usage: train_arm.py {fairseq|hf} translate-args...   (hf = HF Marian/BART _init_weights: normal(0,0.02), zero bias, pad row 0)"""
import sys, torch.nn as nn
import translate.model as M
mode = sys.argv.pop(1)
if mode == "hf":
    def hf_init(self):
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, 0.0, 0.02)
                if isinstance(mod, nn.Linear) and mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        self.src_embed.weight.data[self.pad_id].zero_()
    M.Transformer._init_parameters = hf_init
from translate.cli import main
sys.exit(main(sys.argv[1:]))
