"""The reward server (layer L3): ``codescaler serve`` runs ``app.create_app`` under uvicorn.

``protocol`` holds the pydantic wire models, ``batcher`` the micro-batching of concurrent requests,
``app`` the FastAPI routes. See docs/serving.md. Nothing is imported or started at import time.
"""
