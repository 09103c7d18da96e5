"""Dashboard area: pages — the editor's design settings, mixed into its form: the
design (chosen in a gallery, see capture.admin.page_designs), an uploaded image with
its description, a video address."""

from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice

from capture.pages.definition import page_templates_dir
from capture.pages.designs import gallery
from capture.pages.images import all_images


def image_choices() -> list[SelectChoice]:
    """The uploaded images as choices of an image list: name and size."""
    return [SelectChoice(image.name, f"{image.filename} ({image.width}×{image.height})")
            for image in all_images()]


def keeping(choices: list[SelectChoice], chosen: str | None) -> list[SelectChoice]:
    """`choices`, and `chosen` after them when it is none of them (a design or image
    that is gone stays listed, so the problem is shown instead of silently changed)."""
    if chosen and chosen not in {choice.value for choice in choices}:
        return [*choices, SelectChoice(chosen)]
    return choices


class DesignFields:
    """The editor's design settings, mixed into its PageForm: the design file, an
    uploaded image with its description, a video address."""

    template = SelectField("Design", validate_choice=False)
    image = SelectField("Image", validate_choice=False)
    image_alt = StringField("Image description")
    video_url = StringField("Video")

    def set_design_choices(self) -> None:
        """The designs and uploaded images as they are now (a value that is gone stays
        listed, so the problem is shown instead of silently changed)."""
        self.designs = gallery(page_templates_dir())
        self.template.choices = keeping([SelectChoice(design.file) for design in self.designs],
                                        self.template.data)
        self.image.choices = keeping([SelectChoice("", "No image"), *image_choices()],
                                     self.image.data)

    def fill_design(self, data: dict) -> None:
        """Show a definition's design settings."""
        for key in ("template", "image", "image_alt", "video_url"):
            getattr(self, key).data = data.get(key) or ""

    def design_data(self) -> dict:
        """The design settings typed into the form, in the JSON format."""
        return {"template": self.template.data or "default.html",
                "image": self.image.data or "",
                "image_alt": (self.image_alt.data or "").strip(),
                "video_url": (self.video_url.data or "").strip()}
