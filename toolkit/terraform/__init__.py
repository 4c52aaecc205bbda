"""Terraform from the toolkit: the python-terraform adapter, stack outputs, the state bucket, and
`toolkit plan`'s review. Synthesis runs `python -m infra` in a subprocess: nothing here imports cdktf."""
