"""Validation checks behind ``npuvp validate`` (see :mod:`vp.validate`)."""
