"""Programmatic rewards. SynthHands: :mod:`prefopt.rewards.hands` (strict good-hand test and graded
reward, from the detector) and :mod:`prefopt.rewards.check` (an independent template check)."""
