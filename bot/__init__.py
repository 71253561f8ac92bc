"""A Telegram bot that streams answers from OpenAI-compatible LLM providers."""

__version__ = "0.1.0"
