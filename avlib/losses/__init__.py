"""Losses as pure functions returning (loss, diagnostics)."""
