"""The moderation model: components, the label taxonomy and mapping, and Beam model handlers."""

__version__ = "0.1.0"
