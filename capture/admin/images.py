"""Dashboard area: images — upload (checked and re-encoded by capture.pages.images),
the list with each image's address to copy, delete."""

import re

from flask import current_app, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired

from capture.admin import UPLOAD_LIMITS, bp
from capture.db import db
from capture.models import Image
from capture.pages import images as uploads

# The form's other fields (the CSRF token) get this much room beside the file, so a
# file a little over the limit gets its own message instead of a bare 413.
_FORM_ROOM = 64 * 1024

UPLOAD_LIMITS["admin.images"] = lambda config: config["IMAGE_MAX_BYTES"] + _FORM_ROOM


class ImageForm(FlaskForm):
    """One image file."""

    file = FileField("Image file", validators=[FileRequired("Choose an image to upload.")])


@bp.route("/images", methods=["GET", "POST"])
def images():
    """Every uploaded image with its address; the upload form."""
    form = ImageForm()
    status = 200
    if form.validate_on_submit():
        upload = form.file.data
        filename = re.split(r"[\\/]", upload.filename or "")[-1]
        try:
            image = uploads.store(upload.read(), filename)
        except uploads.ImageError as error:
            form.file.errors.append(f"{filename or 'The file'}: {error}.")
        else:
            flash(f"Uploaded {image.filename} ({image.width}×{image.height}).", "success")
            return redirect(url_for("admin.images"))
    if form.errors:
        status = 422
    shown_on = uploads.pages_by_image()
    rows = [(image, uploads.absolute_url(image.name), shown_on.get(image.name, []))
            for image in uploads.all_images()]
    limit = current_app.config["IMAGE_MAX_BYTES"]
    return render_template("admin/images.html", form=form, rows=rows,
                           limit=f"{limit / 1024 / 1024:.3g} MB"), status


@bp.post("/images/<int:image_id>/delete")
def images_delete(image_id: int):
    """Delete an image that no page shows (the CSRF check is the app's)."""
    image = db.get_or_404(Image, image_id)
    users = uploads.delete(image)
    if users:
        flash(f"{image.filename} is shown on {', '.join('/p/' + s for s in users)}: choose "
              "another image there first.", "error")
    else:
        flash(f"Deleted {image.filename}. Emails that show it now show nothing there.",
              "success")
    return redirect(url_for("admin.images"))
