"""domainft: documents in, a tuned, evaluated, GGUF-exported domain expert out."""

__version__ = "0.1.0"
