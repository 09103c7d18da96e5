"""A page's picture and video: the checks of its `image`, `image_alt` and `video_url`
fields, and a video address parsed into what the video design embeds.

A video is only ever a YouTube or Vimeo address, reduced to its id: the player's
address is built from the id, so no address an owner types reaches an iframe.
"""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from capture.db import db
from capture.models import Image

MEDIA_DEFAULTS = {"image": "", "image_alt": "", "video_url": ""}
MEDIA_LIMITS = {"image_alt": 300, "video_url": 300}

_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_VIMEO_ID = re.compile(r"^[0-9]{1,12}$")
_VIMEO_HASH = re.compile(r"^[0-9a-f]{6,20}$")
_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com",
                  "youtube-nocookie.com", "www.youtube-nocookie.com"}
_VIMEO_HOSTS = {"vimeo.com", "www.vimeo.com", "player.vimeo.com"}


@dataclass(frozen=True)
class Video:
    """A video of a page: its provider and id, and the addresses made from them."""

    provider: str  # "youtube" or "vimeo"
    id: str
    hash: str = ""  # an unlisted Vimeo video's key

    @property
    def url(self) -> str:
        """The canonical address, as the page stores it."""
        if self.provider == "youtube":
            return f"https://www.youtube.com/watch?v={self.id}"
        return f"https://vimeo.com/{self.id}" + (f"/{self.hash}" if self.hash else "")

    @property
    def embed_url(self) -> str:
        """The player, without tracking cookies, playing at once (the visitor clicked)."""
        if self.provider == "youtube":
            return f"https://www.youtube-nocookie.com/embed/{self.id}?autoplay=1&rel=0"
        key = f"&h={self.hash}" if self.hash else ""
        return f"https://player.vimeo.com/video/{self.id}?dnt=1&autoplay=1{key}"

    @property
    def frame_origin(self) -> str:
        """The site the player's frame comes from (Content-Security-Policy frame-src)."""
        return "https://www.youtube-nocookie.com" if self.provider == "youtube" \
            else "https://player.vimeo.com"

    @property
    def provider_name(self) -> str:
        """The provider as people write it."""
        return {"youtube": "YouTube", "vimeo": "Vimeo"}[self.provider]


def parse_video(url: Any) -> Video | None:
    """The video of a YouTube or Vimeo address (watch, share, embed or shorts
    links), or None for anything else."""
    if not isinstance(url, str) or len(url) > MEDIA_LIMITS["video_url"]:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or parts.port is not None or parts.username:
        return None
    segments = [segment for segment in parts.path.split("/") if segment]
    if host == "youtu.be":
        candidate = segments[0] if len(segments) == 1 else ""
    elif host in _YOUTUBE_HOSTS:
        if segments == ["watch"]:
            candidate = parse_qs(parts.query).get("v", [""])[0]
        elif len(segments) == 2 and segments[0] in ("embed", "shorts", "live", "v"):
            candidate = segments[1]
        else:
            candidate = ""
    elif host in _VIMEO_HOSTS:
        return _vimeo(host, segments, parts.query)
    else:
        return None
    return Video("youtube", candidate) if _YOUTUBE_ID.match(candidate) else None


def _vimeo(host: str, segments: list[str], query: str) -> Video | None:
    if host == "player.vimeo.com":
        if len(segments) != 2 or segments[0] != "video":
            return None
        key = parse_qs(query).get("h", [""])[0]
        segments = [segments[1], *([key] if key else [])]
    if not segments or len(segments) > 2 or not _VIMEO_ID.match(segments[0]):
        return None
    key = segments[1] if len(segments) == 2 else ""
    if key and not _VIMEO_HASH.match(key):
        return None
    return Video("vimeo", segments[0], key)


def check_media(clean: dict[str, Any], add_problem) -> None:
    """Check a definition's image, alternative text and video address in place:
    the video address is stored in its canonical form."""
    for key, limit in MEDIA_LIMITS.items():
        value = clean.get(key)
        if value is None:
            clean[key] = ""
        elif not isinstance(value, str):
            add_problem(key, "must be text")
            clean[key] = ""
        elif len(value) > limit:
            add_problem(key, f"longer than {limit} characters")
    image = clean.get("image")
    if image in (None, ""):
        clean["image"] = ""
    elif not isinstance(image, str) or db.session.scalar(
            select(Image.id).where(Image.name == image)) is None:
        add_problem("image", f"no uploaded image {image!r}: upload it under Images first")
    video_url = clean["video_url"].strip()
    if video_url:
        video = parse_video(video_url)
        if video is None:
            add_problem("video_url", "must be a YouTube or Vimeo video address, like "
                        "https://www.youtube.com/watch?v=… or https://vimeo.com/…")
        else:
            clean["video_url"] = video.url
    else:
        clean["video_url"] = ""
