"""Dashboard log-in: the form, throttled attempts, log-out."""

import limits
from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from capture import clock
from capture.access import owners
from capture.web import rate_limits
from capture.admin import bp
from capture.db import db
from capture.models import Owner, new_session_token

# Failed log-ins allowed before a pause: per client address, and (higher, so that a
# stranger cannot lock the owner out as easily) per account.
LOGIN_FAILURES = {"ip": limits.parse("5/15minutes"), "email": limits.parse("20/15minutes")}


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(),
                                                      Length(max=owners.MAX_PASSWORD_LENGTH)])


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect after log-in. Control
    characters and spaces are refused too: browsers drop tabs and newlines from a URL,
    so "/\\t/evil.example" would become "//evil.example" (and a newline cannot go in
    a header at all)."""
    if (target and target.startswith("/") and not target.startswith("//")
            and "\\" not in target and not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127
                                               for ch in target)):
        return target
    return url_for("admin.overview")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The log-in form; five failures per address or account pause attempts."""
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        keys = (("ip", request.remote_addr or "unknown"), ("email", email))
        limiter = rate_limits.limiter()
        if not all(limiter.test(LOGIN_FAILURES[kind], "login", kind, value)
                   for kind, value in keys):
            flash("Too many failed attempts. Wait 15 minutes and try again.", "error")
            return render_template("admin/login.html", form=form), 429
        owner = db.session.scalar(select(Owner).where(Owner.email == email))
        if owners.password_matches(owner, form.password.data):
            # A new session on log-in: nothing set before (a planted session or CSRF
            # token) survives into the logged-in one.
            target = _safe_next(request.args.get("next"))
            session.clear()
            login_user(owner)
            owner.last_login_at = clock.utcnow()
            db.session.commit()
            return redirect(target)
        for kind, value in keys:
            limiter.hit(LOGIN_FAILURES[kind], "login", kind, value)
        flash("Wrong email or password.", "error")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("admin/login.html", form=form), status


@bp.post("/logout")
def logout():
    """End this session and every other one of the owner (a new session token)."""
    if current_user.is_authenticated:
        current_user.session_token = new_session_token()
        db.session.commit()
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("admin.login"))
