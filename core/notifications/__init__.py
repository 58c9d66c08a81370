"""Telling customers and staff what happened: the outbox, templates, channels and delivery."""
