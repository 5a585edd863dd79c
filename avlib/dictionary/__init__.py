"""Dictionaries of keys: the MoCo queue (and, later, memory banks)."""
