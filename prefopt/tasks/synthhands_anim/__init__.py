"""SynthHands Animation: clips of one hand whose orientation follows a driving motion (SPEC s.4).

animate.py (clips, motions and their condition), reward.py (appearance, consistency, motion
alignment), data.py (scored pools of model clips, the pretraining mix), evaluation.py
(``eval=synthhands_anim``); the shipped base is ``prefopt/assets/anim_base`` (``model=anim_base``).
"""
