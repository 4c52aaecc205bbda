"""The inference server (FastAPI + uvicorn) over a verified model artifact; imports `toolkit.ml.predict`, never training code."""
