"""The domain: plain functions over explicit arguments, no Flask request objects."""
