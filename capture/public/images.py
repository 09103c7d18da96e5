"""Blueprint serving the owner's uploaded images at /images/<name>, for pages and
emails: immutable (the name holds a hash of the bytes), never run as anything but an
image."""

import re

from flask import Blueprint, abort, make_response, request

from capture.pages import images

bp = Blueprint("images", __name__)
_NAME = re.compile(rf"^[0-9a-f]{{{images.HASH_LENGTH}}}\.(png|jpg|webp|gif)$")
# A year: the bytes behind a name never change (a new image is a new name).
CACHE = "public, max-age=31536000, immutable"


@bp.get("/images/<name>")
def show(name: str):
    """The image's bytes with the Content-Type of its re-encoded format (and, as every
    answer that is not HTML, a Content-Security-Policy that runs nothing: see
    capture.web.headers)."""
    match = _NAME.match(name)
    image = images.by_name(name) if match else None
    if image is None:
        abort(404)
    response = make_response(image.data)
    response.mimetype = images.MEDIA_TYPES[match.group(1)]
    response.headers["Cache-Control"] = CACHE
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.set_etag(name)
    return response.make_conditional(request)
