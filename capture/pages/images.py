"""Images the owner uploads for pages and emails: checked by their content, re-encoded
without metadata, stored in the database under a name made from a hash of their bytes.

Only what Pillow reads as PNG, JPEG, WebP or GIF is kept, whatever the file's name or
the browser's Content-Type says. The size in pixels is read from the header before
anything is decoded, so a small file that would unpack to a huge picture (a
decompression bomb) is refused cheaply. The pixels are then written out afresh: EXIF
(with GPS), ICC and XMP blocks, comments and anything appended to the file (a
polyglot's HTML or script) are not carried over. Pillow is loaded by the first
upload, not in every web worker.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app
from sqlalchemy import select

if TYPE_CHECKING:
    from PIL import Image as Pillow

from capture.db import db
from capture.models import Image, Page

# Pillow's format name → (file extension, Content-Type).
FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"),
           "WEBP": ("webp", "image/webp"), "GIF": ("gif", "image/gif")}
MEDIA_TYPES = {extension: media_type for extension, media_type in FORMATS.values()}
# Characters of the content hash in an image's name (96 bits).
HASH_LENGTH = 24
# Frames an animation may have (each is decoded and written again).
MAX_FRAMES = 500
FILENAME_LENGTH = 200


class ImageError(ValueError):
    """An upload that is not an image we keep; the message says why, in one line."""


@dataclass(frozen=True)
class Encoded:
    """An image written afresh: its bytes, format and size."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def name(self) -> str:
        """The public name: a hash of the bytes, so a changed image is a new URL."""
        digest = hashlib.sha256(self.data).hexdigest()[:HASH_LENGTH]
        return f"{digest}.{FORMATS[self.format][0]}"


def reencode(data: bytes, max_pixels: int) -> Encoded:
    """`data` as a clean image of the same format, or ImageError."""
    from PIL import Image as Pillow
    from PIL import UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns of a possible bomb; the check below refuses it with a message.
        warnings.simplefilter("ignore", Pillow.DecompressionBombWarning)
        try:
            source = Pillow.open(io.BytesIO(data), formats=list(FORMATS))
        except Pillow.DecompressionBombError:  # Pillow's own limit, far above ours
            raise ImageError(f"this image has more than the {max_pixels:,} pixels an image "
                             "may have") from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise ImageError("this file is not a PNG, JPEG, WebP or GIF image") from None
        with source:
            return _reencode(source, max_pixels)


def _reencode(source: Pillow.Image, max_pixels: int) -> Encoded:
    from PIL import Image as Pillow
    from PIL import ImageOps, ImageSequence

    width, height = source.size
    frames = getattr(source, "n_frames", 1) if source.format in ("GIF", "WEBP") else 1
    if width < 1 or height < 1:
        raise ImageError("this image has no pixels")
    if frames > MAX_FRAMES:
        raise ImageError(f"an animation may have at most {MAX_FRAMES} frames")
    if width * height * frames > max_pixels:
        raise ImageError(f"this image has more than the {max_pixels:,} pixels an image "
                         f"may have ({width}×{height}"
                         f"{f' × {frames} frames' if frames > 1 else ''})")
    kind = source.format
    try:
        if frames > 1:
            pictures = [_fresh(frame.copy(), kind) for frame in ImageSequence.Iterator(source)]
        else:
            pictures = [_fresh(ImageOps.exif_transpose(source), kind)]
        output = io.BytesIO()
        options = _save_options(kind, source, pictures)
        pictures[0].save(output, format=kind, **options)
    except (OSError, ValueError, SyntaxError, Pillow.DecompressionBombError, EOFError):
        raise ImageError("this image is damaged and could not be read") from None
    return Encoded(output.getvalue(), kind, *pictures[0].size)


# The pixel layouts each format is written in; anything else is converted first.
_MODES = {"JPEG": ("RGB", "L", "CMYK"), "PNG": ("RGB", "RGBA", "L", "LA"),
          "WEBP": ("RGB", "RGBA"), "GIF": ("RGB", "RGBA", "L")}


def _fresh(picture: Pillow.Image, kind: str) -> Pillow.Image:
    """The pixels alone, in a new image that carries none of the file's other data."""
    from PIL import Image as Pillow

    if picture.mode not in _MODES[kind]:
        has_alpha = "A" in picture.getbands() or "transparency" in picture.info
        picture = picture.convert("RGBA" if has_alpha and kind != "JPEG" else "RGB")
    return Pillow.frombytes(picture.mode, picture.size, picture.tobytes())


def _save_options(kind: str, source: Pillow.Image, pictures: list) -> dict:
    from PIL import ImageSequence

    options: dict = {"JPEG": {"quality": 88, "optimize": True},
                     "WEBP": {"quality": 88, "method": 4},
                     "PNG": {"optimize": False}, "GIF": {}}[kind]
    if len(pictures) > 1:
        durations = []
        for frame in ImageSequence.Iterator(source):
            durations.append(int(frame.info.get("duration", 100) or 100))
        options.update(save_all=True, append_images=pictures[1:], duration=durations,
                       loop=int(source.info.get("loop", 0) or 0))
    return options


def store(data: bytes, filename: str) -> Image:
    """Check, re-encode and keep an uploaded file (the same image twice is one row);
    ImageError says what is wrong with it."""
    limit = current_app.config["IMAGE_MAX_BYTES"]
    if not data:
        raise ImageError("the file is empty")
    if len(data) > limit:
        raise ImageError(f"the file is {len(data):,} bytes; the limit is {limit:,} bytes")
    encoded = reencode(data, current_app.config["IMAGE_MAX_PIXELS"])
    existing = by_name(encoded.name)
    if existing is not None:
        return existing
    image = Image(name=encoded.name, filename=_display_name(filename),
                  media_type=FORMATS[encoded.format][1], width=encoded.width,
                  height=encoded.height, size=len(encoded.data), data=encoded.data)
    db.session.add(image)
    db.session.commit()
    return image


def _display_name(filename: str) -> str:
    """The uploaded file's name as the dashboard shows it: printable, one line."""
    name = "".join(ch for ch in (filename or "") if ch.isprintable()).strip()
    return (name or "image")[:FILENAME_LENGTH]


def by_name(name: str) -> Image | None:
    """The image with this public name, or None."""
    return db.session.scalar(select(Image).where(Image.name == name))


def all_images() -> list[Image]:
    """Every uploaded image, newest first (without their bytes)."""
    return list(db.session.scalars(select(Image).order_by(Image.created_at.desc(),
                                                          Image.id.desc())))


def pages_using(name: str) -> list[str]:
    """The slugs of the pages that show this image (themselves or in a variant of a
    page test)."""
    return pages_by_image().get(name, [])


def pages_by_image() -> dict[str, list[str]]:
    """For each image some page shows, itself or in a variant, the slugs of those
    pages."""
    shown: dict[str, list[str]] = {}
    for slug, image, tested in db.session.execute(
            select(Page.slug, Page.image, Page.variants).order_by(Page.slug)):
        names = {image, *(variant.get("image") for variant in tested or [])}
        for name in sorted(name for name in names if name):
            shown.setdefault(name, []).append(slug)
    return shown


def delete(image: Image) -> list[str]:
    """Delete an image no page shows; return the pages that still show it (then
    nothing is deleted)."""
    users = pages_using(image.name)
    if not users:
        db.session.delete(image)
        db.session.commit()
    return users


def image_path(name: str) -> str:
    """The path an image is served at (see capture.public.images)."""
    return f"/images/{name}"


def absolute_url(name: str) -> str:
    """The image's URL with BASE_URL, for emails and other sites."""
    return current_app.config["BASE_URL"].rstrip("/") + image_path(name)
