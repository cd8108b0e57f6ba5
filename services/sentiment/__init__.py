"""Sentiment service: English and Chinese review/support-message sentiment, batched serving, events."""
