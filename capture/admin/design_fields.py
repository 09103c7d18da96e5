"""Dashboard area: pages — the editor's design settings, mixed into its form: the
design (chosen in a gallery, see capture.admin.page_designs), an uploaded image with
its description, a video address."""

from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice

from capture.pages.definition import page_templates_dir
from capture.pages.designs import gallery
from capture.pages.images import all_images


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
        templates = [design.file for design in self.designs]
        if self.template.data and self.template.data not in templates:
            templates.append(self.template.data)
        self.template.choices = [SelectChoice(name) for name in templates]
        choices = [SelectChoice("", "No image")] + [
            SelectChoice(image.name, f"{image.filename} ({image.width}×{image.height})")
            for image in all_images()]
        if self.image.data and self.image.data not in {c.value for c in choices}:
            choices.append(SelectChoice(self.image.data))
        self.image.choices = choices

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
