"""Telegram update handlers: thin, typed, registered in one place (bot.app)."""
