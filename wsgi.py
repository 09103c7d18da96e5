"""The WSGI entry point: `gunicorn wsgi:app`, `.venv/bin/flask --app wsgi …`."""

import sys

try:
    from capture import create_app
except ModuleNotFoundError as error:
    # A Python without Capture's packages (the system's, or a `flask` from elsewhere on
    # PATH) would print an import traceback; one line says what to do instead.
    if (error.name or "").partition(".")[0] in ("capture", "config"):
        raise
    sys.exit(f"Capture's packages are not installed for {sys.executable} (no module "
             f"{error.name!r}): run 'make run' first or use .venv/bin/flask --app wsgi …")

app = create_app()
