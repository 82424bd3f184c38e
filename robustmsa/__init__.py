"""robustmsa: robustness evaluation harness for multimodal sentiment analysis."""
__version__ = "0.1.0"
__all__ = ["__version__"]
