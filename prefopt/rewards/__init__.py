"""Rewards for ``prefopt.score`` and evaluation: the signature and built-ins (callables.py), the
mediapipe hand score of real pictures (mediapipe_hands.py), the learned judges PickScore, HPSv2.1,
ImageReward, CLIP score and the LAION aesthetic predictor (judges/). The embedded benchmarks' own
rewards live with them: prefopt/tasks/synthhands/reward.py, prefopt/tasks/synthhands_anim/reward.py."""
