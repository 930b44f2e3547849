"""prefopt: post-train diffusion models with human-preference objectives and compare them fairly."""

__version__ = "0.1.0"
