"""The page designs of templates/pages/ as the editor's gallery shows them: a title,
what each suits and the page fields it shows besides the headline, text and form."""

from dataclasses import dataclass

from capture.pages.definition import template_names


@dataclass(frozen=True)
class Design:
    """One design file and how the gallery describes it."""

    file: str
    title: str
    summary: str
    # Page fields the design shows beyond title, headline, body and the form.
    uses: tuple[str, ...] = ()


DESIGNS = (
    Design("split.html", "Split screen",
           "The promise on a dark panel, the form beside it. Works for almost any offer.",
           ("image",)),
    Design("hero.html", "Hero image",
           "A full-width picture with the headline on it; the form overlaps it.",
           ("image",)),
    Design("letter.html", "Long-form letter",
           "One narrow column for a long text; a button at the top jumps to the form.",
           ("image",)),
    Design("video.html", "Video",
           "Your YouTube or Vimeo video, loaded only when the visitor presses play.",
           ("video_url", "image")),
    Design("default.html", "Card",
           "Headline, text and form in one card on a soft background."),
)


def gallery(templates_dir: str) -> list[Design]:
    """The designs on disk: the built-in ones in their order, then any other file of
    the folder (an owner's own design)."""
    files = template_names(templates_dir)
    known = [design for design in DESIGNS if design.file in files]
    named = {design.file for design in DESIGNS}
    return known + [Design(file, file, "A design of your own in templates/pages/.")
                    for file in files if file not in named]
