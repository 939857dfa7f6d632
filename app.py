"""Entry point of the demo host: ``flask --app app …`` and ``gunicorn 'app:create_app()'``.

Importing this module does nothing by itself; :func:`create_app` builds the app.
"""

from demo_host import create_app

__all__ = ["create_app"]
