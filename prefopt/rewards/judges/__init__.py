"""Learned judges as rewards (``reward=pickscore|hpsv2|imagereward|clip_score|aesthetic``), each
loaded from a local folder given as ``reward.path`` (nothing is downloaded):

    judge.raw(samples, prompts) -> (B,)   the judge's published score
    judge(samples, prompts)     -> (B,)   a fixed monotone map of it onto [0, 1]

base.py (folder checks, batching over frames, preprocessing, the linear head), clip.py (PickScore,
HPSv2, CLIPScore), imagereward.py, aesthetic.py. Scores, maps and folder layouts: docs/judges.md.
"""

from prefopt.rewards.judges.aesthetic import Aesthetic
from prefopt.rewards.judges.clip import CLIPScore, HPSv2, PickScore
from prefopt.rewards.judges.imagereward import ImageReward

__all__ = ["Aesthetic", "CLIPScore", "HPSv2", "ImageReward", "PickScore"]
