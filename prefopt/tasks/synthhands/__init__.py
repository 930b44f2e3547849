"""SynthHands: a procedural hand domain where "good hands" are defined exactly (SPEC s.4).

render.py (renderer), detect.py (finger count, palm, components from the image), reward.py (the
strict good-hand test and graded reward), check.py (an independent template check), data.py
(scored pools of model samples, renders, the pretraining mix), evaluation.py (``eval=synthhands``);
the shipped base is ``prefopt/assets/synth_base`` (``model=base``).
"""
