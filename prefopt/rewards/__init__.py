"""Rewards for ``prefopt.score`` and evaluation: the signature and built-ins (callables.py), the
mediapipe hand score of real pictures (mediapipe_hands.py). The embedded benchmarks' own rewards
live with them: prefopt/tasks/synthhands/reward.py, prefopt/tasks/synthhands_anim/reward.py."""
