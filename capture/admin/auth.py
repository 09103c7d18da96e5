"""Dashboard log-in: owners, passwords, throttled attempts, log-out."""

import functools

import limits
from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug import security
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from capture import clock
from capture.web import rate_limits
from capture.admin import bp
from capture.db import db
from capture.models import Owner, new_session_token

# Failed log-ins allowed before a pause: per client address, and (higher, so that a
# stranger cannot lock the owner out as easily) per account.
LOGIN_FAILURES = {"ip": limits.parse("5/15minutes"), "email": limits.parse("20/15minutes")}
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200  # what the log-in form accepts


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(),
                                                      Length(max=MAX_PASSWORD_LENGTH)])


def create_owner(email: str, password: str) -> Owner:
    """Add a dashboard login; ValueError with a clear message when it cannot be."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ValueError(f"{email!r} is not an email address")
    password_hash = hash_password(password)
    if db.session.scalar(select(Owner.id).where(Owner.email == email)):
        raise ValueError(f"an owner {email} exists already")
    owner = Owner(email=email, password_hash=password_hash)
    db.session.add(owner)
    db.session.commit()
    return owner


def hash_password(password: str) -> str:
    """The stored hash of a new password; ValueError when it is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")
    return security.generate_password_hash(password)


@functools.cache
def _unknown_owner_hash() -> str:
    """A hash made the way owners' hashes are (same method, same cost), checked when
    no owner has the address typed: both answers then take the same time, so the
    log-in does not tell which addresses are owners."""
    return security.generate_password_hash("no owner has this address")


def password_matches(owner: Owner | None, password: str) -> bool:
    """True when `owner` exists and `password` is theirs; one hash check either way."""
    if owner is None:
        security.check_password_hash(_unknown_owner_hash(), password)
        return False
    return security.check_password_hash(owner.password_hash, password)


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
        if password_matches(owner, form.password.data):
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
