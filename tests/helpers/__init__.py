"""Test helpers: generators of small datasets on disk."""
