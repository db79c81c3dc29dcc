"""translate: Transformer machine translation, from parallel text to a sacreBLEU score."""

__version__ = "0.1.0"
