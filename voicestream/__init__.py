"""voicestream: speak a language model's answer while it is still being generated."""

__version__ = "0.1.0"
