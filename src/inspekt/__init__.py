"""inspekt: image models for inspection."""
__version__ = "0.1.0"
