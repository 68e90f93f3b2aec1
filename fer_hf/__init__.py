"""fer-hf: facial expression recognition on the Hugging Face stack.

Public API is re-exported lazily from its submodules so `import fer_hf` stays light.
"""

__version__ = "0.1.0"
