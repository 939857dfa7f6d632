"""gunicorn settings for production: ``gunicorn 'app:create_app()'`` reads this file from the
working directory. Workers and threads come from the environment; logs go to stdout."""

import multiprocessing
import os

_default_bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
bind = os.environ.get("GUNICORN_BIND", _default_bind)
workers = int(os.environ.get("GUNICORN_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Each worker builds its own app (and its own scheduler thread, of which one leads):
# starting threads in the master before forking would leave them behind in every child.
preload_app = False
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")

# Background jobs are on by default when serving; the leader lock lets exactly one worker run them.
os.environ.setdefault("FLASK_ACTIVITY_BACKGROUND_TASKS", "true")


def worker_exit(server, worker):
    """Stop the worker's background thread and release the leader lock, so another worker takes over."""
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("activity_monitor")
    if state is not None and state.background is not None:
        state.background.stop()
