"""The HTTP front end: `create_app` (app.py), the `/v1/queue` routes, waiting for results
(blocking and streaming), input parsing, keys, metrics and the OpenAPI document. It speaks to
Redis only through `queue_service.store` and never imports the workers."""
