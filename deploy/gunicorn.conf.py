"""gunicorn settings for deploy/capture-web.service (`gunicorn -c deploy/gunicorn.conf.py`).

The bind address and the trusted proxy are on the unit's command line, where an
operator looks for them; what is here rarely changes.
"""

import os

# As many sync workers as the machine has cores: on SQLite, which has one writer,
# more only wait for it (docs/develop/performance.md); on PostgreSQL a few more may
# pay. WEB_CONCURRENCY (gunicorn's own variable) or --workers on the command line
# overrides it.
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)

# A worker stuck longer than this (a lock, a hung connection) is killed and replaced;
# nginx waits longer (proxy_read_timeout 60s), so the visitor gets gunicorn's answer.
timeout = 30
graceful_timeout = 30
# Logs go to the journal (journalctl -u capture-web).
accesslog = "-"
errorlog = "-"
# Tokens in request lines, query strings and Referers are cut before gunicorn writes
# its access log, also for lines logged before the app is loaded (SECURITY.md).
logger_class = "capture.web.logredact.GunicornLogger"
