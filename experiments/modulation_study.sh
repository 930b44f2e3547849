#!/usr/bin/env bash
# The temporal motion modulation study on SynthHands Animation (experiments/README.md): the base model
# pretrained from scratch in three arms x seeds 0, 1, 2 (9 runs), then the table.
#   none          no module: the model reads the reference image only
#   motion        the module reads the motion condition (rate 1)
#   motion+audio  and a second module reads the audio condition (rate 4, folded 4 samples per frame)
#   bash experiments/modulation_study.sh [extra overrides]     # prints each arm's wall time
set -euo pipefail
dir=multirun/modulation/$(date +%Y-%m-%d_%H-%M-%S)
common=(model=tiny_video data=anim_mix seed=0,1,2 'model.seed=${seed}' trainer.max_steps=500 trainer.batch_size=32
        eval.num_samples=256 "$@")
start=$SECONDS
for arm in "none modulation.enabled=false" "motion modulation.enabled=true modulation.audio=false" \
           "motion+audio modulation.enabled=true modulation.audio=true"; do
  set -- $arm
  name=$1; shift
  t=$SECONDS
  python -m prefopt.pretrain -m "${common[@]}" "$@" hydra.sweep.dir="$dir/$name"
  echo "$name: $((SECONDS - t)) s"
done
echo "modulation study: $((SECONDS - start)) s in all"
python experiments/modulation_study.py "$dir"
