"""Backbones and what is built on them: loading and converting bundled models, shared layer helpers, bottleneck adapters, verbalizers."""
