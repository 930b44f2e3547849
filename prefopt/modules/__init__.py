"""Modules any objective can switch on: hand-aware local optimization (``hand_aware``)."""
