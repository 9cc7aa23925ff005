"""Helpers the tests share (not tests: nothing here is collected)."""
