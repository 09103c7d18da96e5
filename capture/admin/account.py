"""Dashboard area: the logged-in owner's account (changing the password)."""

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, ValidationError

from capture.access import owners
from capture.web import rate_limits
from capture.admin import bp
from capture.admin.auth import LOGIN_FAILURES


class PasswordForm(FlaskForm):
    """The current password, then the new one twice."""

    current = PasswordField("Current password", validators=[DataRequired(
        message="Enter your current password.")])
    new = PasswordField("New password", validators=[DataRequired(
        message="Enter a new password.")])
    repeat = PasswordField("New password again", validators=[DataRequired(
        message="Enter the new password a second time.")])

    def validate_new(self, field: PasswordField) -> None:
        """The length rules of every owner password (owners.hash_password)."""
        try:
            owners.hash_password(field.data)
        except ValueError as error:
            message = str(error)
            raise ValidationError(message[0].upper() + message[1:] + ".") from None

    def validate_repeat(self, field: PasswordField) -> None:
        """Both new passwords the same: a typo would lock the owner out."""
        if field.data != self.new.data:
            raise ValidationError("The two new passwords are not the same.")


@bp.route("/account", methods=["GET", "POST"])
def account():
    """Change the password; every other session of the owner ends, this one stays."""
    form = PasswordForm()
    if not form.is_submitted():
        return _page(form)
    # A wrong current password counts as a failed log-in of the account: a session
    # left open on someone's screen is no way to guess the password.
    limit, key = LOGIN_FAILURES["email"], ("login", "email", current_user.email)
    if not rate_limits.limiter().test(limit, *key):
        flash("Too many failed attempts. Wait 15 minutes and try again.", "error")
        return _page(form, 429)
    valid = form.validate()
    if form.current.data and not owners.password_matches(current_user, form.current.data):
        rate_limits.limiter().hit(limit, *key)
        form.current.errors = [*form.current.errors, "The current password is wrong."]
        valid = False
    if not valid:
        return _page(form, 422)
    owners.set_password(current_user, form.new.data)
    # The new session token ended every session, this one too: log it in again.
    login_user(current_user._get_current_object())
    flash("Your password is changed. Every other session is logged out.", "success")
    return redirect(url_for("admin.account"))


def _page(form: PasswordForm, status: int = 200):
    return render_template("admin/account.html", form=form,
                           min_length=owners.MIN_PASSWORD_LENGTH), status
