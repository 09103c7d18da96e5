"""What a web worker loads: the libraries only the command line, sending or uploads
need stay out of it until used (docs/develop/performance.md: memory per worker)."""

import subprocess
import sys

from config import ROOT

# Loaded by `flask db`, `init`, DKIM signing, `mail check`, the SES/SendGrid hooks
# and image uploads: each where it is used.
DEFERRED = ("alembic", "mako", "pygments", "PIL", "dkim", "dns", "cryptography")


def test_the_app_starts_without_the_libraries_its_commands_and_uploads_need(tmp_path):
    program = ("import sys; from wsgi import app; "
               f"print(' '.join(m for m in {DEFERRED!r} if m in sys.modules))")
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", "CAPTURE_INSTANCE_PATH": str(tmp_path),
                         "CAPTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'capture.db'}"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""


def test_the_migration_commands_are_listed_and_load_when_run(make_app):
    runner = make_app().test_cli_runner()
    assert "Perform database migrations" in runner.invoke(args=["--help"]).output
    shown = runner.invoke(args=["db", "--help"])
    assert shown.exit_code == 0 and "upgrade" in shown.output and "--directory" in shown.output
