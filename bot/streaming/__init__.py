"""Getting a growing answer into Telegram: render, split, pace, and deliver."""
