import json, sys, glob
arms = {"A pre-norm fairseq-init (shipped)": "metrics_A_pre.jsonl", "B post-norm fairseq-init": "metrics_B_post.jsonl",
        "C pre-norm HF-init": "metrics_C_prehf.jsonl", "E post-norm HF-init (ours)": "metrics_E_posthf.jsonl",
        "D HF Marian peer": "metrics_D_peer.jsonl"}
steps_t = [40, 80, 120, 160, 200, 240]; steps_v = [80, 160, 240]
print("arm | " + " | ".join(f"trNLL@{s}" for s in steps_t) + " | " + " | ".join(f"devNLL@{s}" for s in steps_v))
for name, path in arms.items():
    try: recs = [json.loads(l) for l in open(path)]
    except FileNotFoundError: continue
    tr = {r["step"]: r["nll"] for r in recs if r["kind"] == "train"}
    va = {r["step"]: r["nll"] for r in recs if r["kind"] == "valid"}
    f = lambda d, s: f"{d[s]:.3f}" if s in d else "-"
    print(name + " | " + " | ".join(f(tr, s) for s in steps_t) + " | " + " | ".join(f(va, s) for s in steps_v))
