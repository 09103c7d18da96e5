"""Dashboard area: API tokens — the list, a form to create one (shown once, on the
answer to that form), and revoking."""

from flask import abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import ValidationError

from capture.access import api_tokens
from capture.admin import bp


class TokenForm(FlaskForm):
    """A new token: only its name (what will use it)."""

    name = StringField("Name")

    def validate_name(self, field: StringField) -> None:
        """The name as api_tokens stores it; its message when it cannot."""
        try:
            field.data = api_tokens.clean_name(field.data or "")
        except ValueError as error:
            raise ValidationError(str(error)) from None


def _index(form: TokenForm, status: int = 200):
    return render_template("admin/tokens/index.html", tokens=api_tokens.all_tokens(),
                           form=form), status


@bp.get("/tokens")
def tokens():
    """Every token: name, prefix, created, last used, revoked."""
    return _index(TokenForm(formdata=None))


@bp.post("/tokens")
def tokens_create():
    """Create a token and show it, this once: only its hash is kept. The page is the
    answer to the POST (never a redirect), so the token is in no URL, session or log."""
    form = TokenForm()
    if not form.validate():
        return _index(form, 422)
    new = api_tokens.create(form.name.data)
    return render_template("admin/tokens/created.html", row=new.row, token=new.token)


@bp.post("/tokens/<int:token_id>/revoke")
def tokens_revoke(token_id: int):
    """Revoke a token: calls with it are refused from now on."""
    row = api_tokens.revoke(token_id)
    if row is None:
        abort(404)
    flash(f"Token “{row.name}” ({row.prefix}…) is revoked: calls with it are refused.",
          "success")
    return redirect(url_for("admin.tokens"))
