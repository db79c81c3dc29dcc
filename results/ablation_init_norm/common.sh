# Sourced by the commands in README.md. TRANSLATE_DATA: the folder holding train-mix/ and newstest/.
REPO=${REPO:-$(git rev-parse --show-toplevel)}
export PYTHONPATH=$REPO TRANSLATE_DATA=${TRANSLATE_DATA:?set TRANSLATE_DATA} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-python}
CFG=$REPO/configs/trainmix_base.yaml
STEPS=${STEPS:-240}
SETS=(--set data.data_dir=/tmp/abl/data --set data.train.max_pairs=30000 --set data.valid.max_pairs=800
 --set data.vocab_size=8000 --set data.spm_sample_sentences=60000
 --set model.d_model=128 --set model.n_heads=4 --set model.d_ff=512
 --set model.n_encoder_layers=2 --set model.n_decoder_layers=2 --set model.max_positions=256
 --set optim.warmup_steps=100 --set train.max_tokens=2000 --set train.max_steps=$STEPS --set train.max_time=0
 --set train.log_every=20 --set train.eval_every=80 --set train.save_every=0 --set eval.dev_bleu_sentences=0
 --set train.device=cpu --set train.divergence_nats=0)
