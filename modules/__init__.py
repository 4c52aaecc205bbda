"""Reusable CDKTF constructs for the platform, one concern per module, secure by default.

Only `infra/` and `modules/` import cdktf; the toolkit never does.
"""
