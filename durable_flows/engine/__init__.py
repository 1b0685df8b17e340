"""Executing one run: the context and step API, memoized replay, retries, state transitions."""
