"""Dashboard area: what the owner does to a page besides editing it — publish, take
offline, copy, and the share page with its tracked links and embed snippet."""

from flask import current_app, flash, redirect, render_template, request, url_for

from capture.admin import bp
from capture.admin.pages import page_or_404
from capture.models import Page
from capture.pages.service import copy_page, embed_snippet, set_published, share_link

SHARE_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "ref")


@bp.post("/pages/<int:page_id>/publish")
def pages_publish(page_id: int):
    """Make the page live at /p/<slug>."""
    return _set_published(page_or_404(page_id), True)


@bp.post("/pages/<int:page_id>/unpublish")
def pages_unpublish(page_id: int):
    """Take the page offline: /p/<slug> answers 404, the leads stay."""
    return _set_published(page_or_404(page_id), False)


def _set_published(page: Page, published: bool):
    set_published(page, published)
    if published:
        flash(f"{page.title} is live at /p/{page.slug}.", "success")
    else:
        flash(f"{page.title} is offline now; its leads and numbers are kept.", "success")
    if request.form.get("back") == "share":
        return redirect(url_for("admin.pages_share", page_id=page.id))
    return redirect(url_for("admin.pages"))


@bp.post("/pages/<int:page_id>/copy")
def pages_copy(page_id: int):
    """Copy a page as a draft under a new address, and open it in the editor."""
    copy = copy_page(page_or_404(page_id))
    flash(f"Copied as /p/{copy.slug}. It is a draft until you publish it.", "success")
    return redirect(url_for("admin.pages_edit", page_id=copy.id))


@bp.get("/pages/<int:page_id>/share")
def pages_share(page_id: int):
    """The public address, a link builder with tracking parameters, an embed button."""
    page = page_or_404(page_id)
    base_url = current_app.config["BASE_URL"]
    params = {key: request.args.get(key, "")[:100] for key in SHARE_PARAMS}
    embed_link = share_link(base_url, page.slug, {"utm_source": "embed"})
    return render_template(
        "admin/pages/share.html", page=page, params=params,
        public_url=share_link(base_url, page.slug, {}),
        tracked_url=share_link(base_url, page.slug, params),
        snippet=embed_snippet(embed_link, page.button))
