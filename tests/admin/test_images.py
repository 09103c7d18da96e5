"""Dashboard images: upload checked by content (not name or Content-Type), size and
pixel limits, re-encoded without metadata, served with safe headers, listed with
their address, deleted unless a page shows them."""

import io
import re
import struct
import zlib

from PIL import Image as Pillow

from capture.models import Image
from tests.admin.conftest import owner_of
from tests.conftest import count, create_page, csrf_of

GIF_HTML = b"<script>alert(document.domain)</script><html><body>hi</body></html>"


def picture(kind: str = "PNG", size=(40, 30), color=(200, 60, 30), **options) -> bytes:
    buffer = io.BytesIO()
    mode = "RGB" if kind == "JPEG" else "RGBA"
    Pillow.new(mode, size, color).save(buffer, format=kind, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that says it is `width`×`height` (a decompression bomb's
    header: its pixels are never there)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


def upload(owner, content: bytes, name: str = "photo.png", mimetype: str | None = None,
           token: str | None = None):
    file = (io.BytesIO(content), name, mimetype) if mimetype else (io.BytesIO(content), name)
    data = {"csrf_token": token if token is not None else csrf_of(owner, "/admin/images"),
            "file": file}
    return owner.post("/admin/images", data=data, content_type="multipart/form-data")


def uploaded_url(owner, content: bytes, name: str = "photo.png") -> str:
    response = upload(owner, content, name)
    assert response.status_code == 302, response.get_data(as_text=True)
    listing = owner.get("/admin/images").get_data(as_text=True)
    return re.search(r'src="(/images/[0-9a-f]{24}\.\w+)"', listing).group(1)


def error_of(response) -> str:
    return re.search(r'<p class="error" role="alert">([^<]*)</p>',
                     response.get_data(as_text=True)).group(1)


def test_png_upload_is_listed_with_its_absolute_url_and_markdown(app, owner):
    path = uploaded_url(owner, picture(), "hero shot.png")
    listing = owner.get("/admin/images").get_data(as_text=True)
    assert "hero shot.png" in listing and "40×30" in listing
    assert f'value="{app.config["BASE_URL"]}{path}"' in listing
    assert f'value="![]({app.config["BASE_URL"]}{path})"' in listing


def test_each_accepted_format_is_served_with_its_own_content_type(app, owner, client):
    for kind, media_type in (("PNG", "image/png"), ("JPEG", "image/jpeg"),
                             ("WEBP", "image/webp"), ("GIF", "image/gif")):
        path = uploaded_url(owner, picture(kind), f"x.{kind.lower()}")
        response = client.get(path)
        assert response.status_code == 200
        assert response.mimetype == media_type
        assert Pillow.open(io.BytesIO(response.data)).format == kind


def test_served_image_has_safe_headers_and_a_year_of_caching(app, owner, client):
    path = uploaded_url(owner, picture())
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert client.get(path, headers={"If-None-Match": response.headers["ETag"]}
                      ).status_code == 304


def test_unknown_image_name_is_not_found(app, client):
    assert client.get("/images/" + "0" * 24 + ".png").status_code == 404
    assert client.get("/images/../../config.py").status_code == 404


def test_text_renamed_png_is_refused(app, owner):
    response = upload(owner, b"just some text, not a picture\n" * 20, "notes.png")
    assert response.status_code == 422
    assert error_of(response) == "notes.png: this file is not a PNG, JPEG, WebP or GIF image."
    assert count(app, Image) == 0


def test_spoofed_content_type_does_not_make_html_an_image(app, owner):
    response = upload(owner, b"<html><script>alert(1)</script></html>", "x.png",
                      mimetype="image/png")
    assert response.status_code == 422
    assert count(app, Image) == 0


def test_other_image_formats_are_refused(app, owner):
    buffer = io.BytesIO()
    Pillow.new("RGB", (10, 10)).save(buffer, format="BMP")
    response = upload(owner, buffer.getvalue(), "x.bmp")
    assert response.status_code == 422
    assert count(app, Image) == 0


def test_decompression_bomb_is_refused_before_decoding(app, owner):
    # 6000 × 6000: past the limit (25 megapixels), under Pillow's own.
    response = upload(owner, png_header(6000, 6000), "bomb.png")
    assert response.status_code == 422
    assert error_of(response) == ("bomb.png: this image has more than the 25,000,000 pixels "
                                  "an image may have (6000×6000).")
    assert count(app, Image) == 0


def test_huge_decompression_bomb_is_refused_too(app, owner):
    # 50000 × 50000: past Pillow's own limit, which refuses it while reading the header.
    response = upload(owner, png_header(50000, 50000), "huge.png")
    assert response.status_code == 422
    assert "more than the 25,000,000 pixels an image may have" in error_of(response)
    assert count(app, Image) == 0


def test_file_over_the_size_limit_is_refused_with_a_message(make_app):
    app = make_app(IMAGE_MAX_BYTES=2048)
    owner = owner_of(app)
    noise = Pillow.effect_noise((100, 100), 80).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    response = upload(owner, buffer.getvalue(), "big.png")
    assert response.status_code == 422
    assert "the limit is 2,048 bytes" in error_of(response)
    assert count(app, Image) == 0


def test_exif_and_gps_are_gone_after_upload(app, owner, client):
    exif = Pillow.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS
    original = picture("JPEG", exif=exif.tobytes())
    assert Pillow.open(io.BytesIO(original)).getexif()[0x010F] == "SecretCam"
    served = client.get(uploaded_url(owner, original, "me.jpg")).data
    assert len(Pillow.open(io.BytesIO(served)).getexif()) == 0
    assert b"SecretCam" not in served and b"Exif" not in served


def test_polyglot_gif_with_html_is_served_as_a_clean_image(app, owner, client):
    """A GIF that is also HTML (script in a comment and after the trailer): the bytes
    served are the re-encoded picture alone."""
    buffer = io.BytesIO()
    Pillow.new("P", (8, 8)).save(buffer, format="GIF", comment=GIF_HTML)
    polyglot = buffer.getvalue() + GIF_HTML
    assert GIF_HTML in Pillow.open(io.BytesIO(polyglot)).info["comment"]
    response = client.get(uploaded_url(owner, polyglot, "cat.gif"))
    assert response.mimetype == "image/gif"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script" not in response.data and b"<html" not in response.data
    assert Pillow.open(io.BytesIO(response.data)).size == (8, 8)


def test_animated_gif_keeps_its_frames(app, owner, client):
    frames = [Pillow.new("RGB", (12, 12), color) for color in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=120, loop=0)
    served = client.get(uploaded_url(owner, buffer.getvalue(), "anim.gif")).data
    assert Pillow.open(io.BytesIO(served)).n_frames == 3


def test_same_image_twice_is_one_image(app, owner):
    uploaded_url(owner, picture())
    uploaded_url(owner, picture(), "again.png")
    assert count(app, Image) == 1


def test_upload_without_csrf_token_is_refused(app, owner):
    response = upload(owner, picture(), token="")
    assert response.status_code == 400
    assert count(app, Image) == 0


def test_upload_needs_a_logged_in_owner(app, client):
    response = client.post("/admin/images", data={"file": (io.BytesIO(picture()), "x.png")},
                           content_type="multipart/form-data")
    assert response.status_code in (302, 400)
    assert count(app, Image) == 0


def test_delete_removes_the_image_and_its_address(app, owner, client):
    path = uploaded_url(owner, picture())
    image_id = re.search(r'/admin/images/(\d+)/delete',
                         owner.get("/admin/images").get_data(as_text=True)).group(1)
    response = owner.post(f"/admin/images/{image_id}/delete",
                          data={"csrf_token": csrf_of(owner, "/admin/images")})
    assert response.status_code == 302
    assert client.get(path).status_code == 404


def test_image_a_page_shows_is_not_deleted(app, owner, client):
    path = uploaded_url(owner, picture())
    create_page(app, slug="spring", image=path.rsplit("/", 1)[1])
    with app.app_context():
        image_id = Image.query.one().id
    response = owner.post(f"/admin/images/{image_id}/delete",
                          data={"csrf_token": csrf_of(owner, "/admin/images")},
                          follow_redirects=True)
    assert "is shown on /p/spring: choose another image there first." in \
        response.get_data(as_text=True)
    assert client.get(path).status_code == 200


def test_image_a_variant_of_a_page_test_shows_is_not_deleted(app, owner, client):
    path = uploaded_url(owner, picture())
    create_page(app, slug="spring", variants=[{"key": "b", "image": path.rsplit("/", 1)[1]}])
    with app.app_context():
        image_id = Image.query.one().id
    response = owner.post(f"/admin/images/{image_id}/delete",
                          data={"csrf_token": csrf_of(owner, "/admin/images")},
                          follow_redirects=True)
    assert "is shown on /p/spring" in response.get_data(as_text=True)
    assert client.get(path).status_code == 200


def test_delete_without_csrf_token_is_refused(app, owner, client):
    path = uploaded_url(owner, picture())
    with app.app_context():
        image_id = Image.query.one().id
    assert owner.post(f"/admin/images/{image_id}/delete").status_code == 400
    assert client.get(path).status_code == 200
