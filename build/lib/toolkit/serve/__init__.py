"""The inference server (FastAPI + uvicorn) and, later, its Dockerfile."""
