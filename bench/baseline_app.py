"""The floor: a bare WSGI app answering every request with a 3.3 KB page (the size of
an opt-in page), served by the same gunicorn as Capture. What the server, the kernel
and wrk cost per request on this machine, without Flask, templates or a database."""

BODY = b"<!doctype html><title>baseline</title>" + b"<p>" + b"x" * 3300 + b"</p>"


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(BODY))),
                              ("Cache-Control", "private, no-store")])
    return [BODY]
