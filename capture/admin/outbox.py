"""Dashboard area: the outbox, the messages the outbox mail backend wrote to
instance/outbox/, newest first, each shown with its headers and both parts."""

import re

from flask import abort, current_app, redirect, render_template, request, url_for

from capture.mail import outbox as mail_outbox
from capture.admin import bp
from capture.web.headers import content_security_policy

PER_PAGE = 50
# The dashboard's policy, but the message frame (which inherits it) may use the
# email's inline styles; it loads no images: the open pixel of a sequence email must
# not count the owner reading it here as the lead opening it.
MESSAGE_POLICY = content_security_policy(style_src="'self' 'unsafe-inline'",
                                         img_src="data:")


# The src attribute of an <img> tag.
_IMAGE_SOURCE = re.compile(r"(<img\b[^>]*?\s)src=", re.IGNORECASE)


@bp.get("/outbox")
def outbox():
    """The outbox files, newest first, 50 a page."""
    names = mail_outbox.outbox_names()
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    pages = max((len(names) + PER_PAGE - 1) // PER_PAGE, 1)
    if page > pages:
        return redirect(url_for("admin.outbox", page=pages))
    shown = mail_outbox.read_outbox(names[(page - 1) * PER_PAGE:page * PER_PAGE])
    return render_template("admin/outbox/index.html", messages=shown, total=len(names),
                           page=page, pages=pages, folder=mail_outbox.outbox_folder(),
                           backend=current_app.config["MAIL_BACKEND"])


@bp.get("/outbox/<name>")
def outbox_message(name: str):
    """One message: headers, text part, HTML part in a sandboxed frame."""
    message = mail_outbox.outbox_message(name)
    if message is None:
        abort(404)
    html = message.html
    images = bool(html and re.search(r"<img\b", html, re.IGNORECASE))
    if images:  # not even asked for (the policy would refuse them too)
        html = _IMAGE_SOURCE.sub(r"\1data-not-loaded-src=", html)
    response = render_template("admin/outbox/message.html", message=message, html=html,
                               images=images)
    return response, 200, {"Content-Security-Policy": MESSAGE_POLICY}
