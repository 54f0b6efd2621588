"""serve: the OpenAI-compatible HTTP server (pyrustml-serve) and its Ray Serve deployment.

Needs the `server` extra (`pip install 'pyrustml[server]'`; Ray Serve: `pyrustml[ray]`).
app.py builds the ASGI app over a Model, schemas.py validates request bodies, responses.py
shapes OpenAI's response bodies, metrics.py writes /metrics, cli.py runs uvicorn and drains on
SIGTERM, ray.py deploys the same app as Ray Serve replicas. Interpreted, not mypyc-compiled:
the per-token work is in the engine; this layer moves text between threads and sockets.
"""
