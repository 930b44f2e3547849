#!/usr/bin/env bash
# The whole claims sweep of experiments/README.md (39 runs), one sweep after another, then the table.
#   bash experiments/claims.sh        # prints each sweep's wall time and the total
set -euo pipefail
start=$SECONDS
for claim in ipa_dpo hand_aware hgdpo_curriculum gapo_dpo dpo_sft; do
  t=$SECONDS
  python -m prefopt.train -m experiment=claim_$claim
  echo "claim_$claim: $((SECONDS - t)) s"
done
echo "claims sweep: $((SECONDS - start)) s in all"
python experiments/claims.py multirun/claims
