"""`fmloop serve`: a model behind HTTP (FastAPI + uvicorn) with dynamic batching, a feedback
endpoint backed by the feedback store, Prometheus metrics, a web page, and a model that follows a
registry alias."""
