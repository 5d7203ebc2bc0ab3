"""Text guidance (paper section 3.3): captions of motion and appearance, their fusion, and the
backbone's text embeddings. See docs/text.md.

Submodules are imported on use: `client` needs google-genai, `embed` needs torch + transformers.
"""
