"""Sequence files as the owner sees them: `flask sequences check`, `preview`, `plan`,
`send-due`, and files re-read when they change."""

import os
import re
import textwrap
from datetime import time
from pathlib import Path

import pytest
from sqlalchemy import select

from capture.mail import engine, membership
from capture.db import db
from capture.models import Lead, Page
from capture.mail.library import Library, looked_at_once
from config import ROOT, Config
from tests.factories import add_lead, write_step


def write(folder: Path, filename: str, text: str) -> Path:
    """Write a file exactly as given (dedented), so line numbers are known."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    """An empty sequences folder."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    return folder


@pytest.fixture
def seq_app(make_app, root):
    """An app whose sequences live in `root`."""
    return make_app(SEQUENCES_DIR=str(root))


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def check(app):
    return cli(app, "sequences", "check")


def reported(result) -> list[tuple[str, int, str]]:
    """The `file:line: message` lines `sequences check` printed, parsed."""
    rows = []
    for line in result.stdout.splitlines():
        match = re.match(r"^(\S+):(\d+): (.+)$", line)
        if match:
            rows.append((match.group(1), int(match.group(2)), match.group(3)))
    return rows


def where(result) -> list[tuple[str, int]]:
    """Only the file and line of each reported problem."""
    return [(file, line) for file, line, _ in reported(result)]


def good_step(folder: Path, filename: str = "01-welcome.md") -> Path:
    return write(folder, filename, """
        ---
        subject: Welcome, {{ lead.first_name }}
        delay: 0
        ---
        Hi {{ lead.first_name }}.
        """)


def three_steps(root: Path, name="course") -> Path:
    folder = root / name
    write_step(folder, "01-welcome.md", "Welcome, {{ lead.first_name }}",
               "Hi {{ lead.first_name }}, here is [your guide](https://example.com/guide).",
               delay=0)
    write_step(folder, "02-tips.md", "Three tips", "Tip one.", delay="2d")
    write_step(folder, "03-offer.md", "An offer", "Buy now.", delay="3d")
    return folder


# --- sequences check: a clean folder ----------------------------------------------

def test_check_of_a_clean_folder_says_no_problems_and_exits_0(seq_app, root):
    three_steps(root)
    write(root / "course", "sequence.yml", """
        from: "Ann <ann@example.com>"
        reply_to: help@example.com
        stop_on: [upgrade, unsubscribe]
        send_window: "09:00-18:00"
        timezone: Europe/Berlin
        """)
    result = check(seq_app)
    assert result.exit_code == 0, result.output
    assert reported(result) == []
    assert "1 sequence(s), no problems." in result.stdout


def test_the_repositorys_own_sequences_pass_check(make_app):
    assert Path(Config.SEQUENCES_DIR) == ROOT / "sequences"
    app = make_app(SEQUENCES_DIR=str(ROOT / "sequences"))
    result = check(app)
    assert result.exit_code == 0, result.output
    assert "no problems" in result.stdout


# --- sequences check: each kind of problem, at its line -----------------------------

def test_bad_yaml_in_front_matter_is_reported_at_the_line_of_the_error(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        delay: 1d
        preheader: a: b
        at: "09:00"
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("course/01-hi.md", 4)]
    assert reported(result)[0][2].startswith("bad YAML: ")


def test_unknown_key_in_a_step_is_reported_at_its_line(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        delay: 0
        colour: red
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [("course/01-hi.md", 4, "unknown key 'colour'")]


def test_missing_subject_is_reported(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        delay: 0
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [("course/01-hi.md", 1, "subject is missing")]


def test_empty_subject_is_reported_as_missing(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: "  "
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert [message for _, _, message in reported(result)] == ["subject is missing"]


@pytest.mark.parametrize("delay", ["soon", "5", "2 days", "-1d", "1.5h"])
def test_unparseable_delay_is_reported_at_its_line(seq_app, root, delay):
    write(root / "course", "01-hi.md", f"""
        ---
        subject: Hi
        delay: {delay}
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("course/01-hi.md", 3)]
    message = reported(result)[0][2]
    assert message.startswith("delay ") and delay in message and "30m, 2h, 3d" in message


@pytest.mark.parametrize("at", ["25:00", "9am", "12", "09:60", "noon"])
def test_bad_at_is_reported_at_its_line(seq_app, root, at):
    write(root / "course", "01-hi.md", f"""
        ---
        subject: Hi
        delay: 1d
        at: {at}
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("course/01-hi.md", 4)]
    message = reported(result)[0][2]
    assert message.startswith("at ") and at in message and "use a time of day" in message


def test_unknown_template_variables_are_reported_at_their_body_lines(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        ---
        Hello {{ lead.first_name }},

        here is {{ config }}
        and {{ lead.password }}.
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("course/01-hi.md", 6), ("course/01-hi.md", 7)]
    (_, _, config), (_, _, password) = reported(result)
    assert config.startswith("unknown variable 'config'")
    assert "{{ lead.first_name }}" in config  # says what may be used instead
    assert password == "unknown variable 'lead.password'"


def test_unknown_variable_in_the_subject_is_reported_at_the_subject_line(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        delay: 0
        subject: "Hi {{ lead.__class__ }}"
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [("course/01-hi.md", 3, "unknown variable 'lead.__class__'")]


def test_a_private_attribute_of_the_leads_fields_is_reported(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        ---
        {{ lead.fields.__class__ }}
        """)
    result = check(seq_app)
    assert reported(result) == [("course/01-hi.md", 4, "unknown variable 'lead.fields.__class__'")]


def test_variables_a_step_may_use_are_accepted(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: "{{ lead.first_name or 'friend' }}, your {{ page.title }}"
        preheader: "For {{ lead.email }}"
        ---
        {{ lead.name | upper }} {{ lead.ref }} {{ lead.fields.plan }} {{ lead.country }}
        {% for word in ["a", "b"] %}{{ word }}{% endfor %}
        [Leave]({{ unsubscribe_url }})
        """)
    result = check(seq_app)
    assert result.exit_code == 0, result.output


def test_jinja_syntax_error_is_reported_at_its_body_line(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        ---
        Hello,
        {{ lead.name }
        Bye
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [("course/01-hi.md", 5, "template error: unexpected '}'")]


def test_jinja_syntax_error_in_the_subject_is_reported_at_the_subject_line(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        delay: 0
        subject: "Hi {% if %}"
        ---
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("course/01-hi.md", 3)]
    assert reported(result)[0][2].startswith("template error: ")


def test_a_step_name_used_twice_is_reported_on_the_second_file(seq_app, root):
    good_step(root / "course", "01-welcome.md")
    good_step(root / "course", "05-welcome.md")
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [
        ("course/05-welcome.md", 1, "step name 'welcome' is also used by 01-welcome.md")
    ]


def test_missing_front_matter_is_reported(seq_app, root):
    write(root / "course", "01-hi.md", """
        subject: Hi

        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [
        ("course/01-hi.md", 1, "must start with a --- front matter block")
    ]


def test_unclosed_front_matter_is_reported(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        Body
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [("course/01-hi.md", 1, "front matter is not closed with ---")]


def test_step_without_a_body_is_reported(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        ---
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert [message for _, _, message in reported(result)] == ["the email has no body"]


@pytest.mark.parametrize(
    ("settings", "line", "message"),
    [
        ('timezone: UTC\ncolour: red\n', 2, "unknown key 'colour'"),
        ('timezone: UTC\nstop_on: [upgrade, later]\n', 2,
         "stop_on: 'later' is not one of upgrade, unsubscribe, tag:NAME"),
        ('stop_on: [upgrade]\nsend_window: "9-18"\n', 2,
         'send_window: expected "HH:MM-HH:MM", like "09:00-18:00"'),
        ('stop_on: [upgrade]\nsend_window: "09:00-09:00"\n', 2,
         'send_window: expected "HH:MM-HH:MM", like "09:00-18:00"'),
        ('send_window: "09:00-18:00"\ntimezone: Mars/Olympus\n', 2,
         "timezone: unknown zone 'Mars/Olympus' (use e.g. Europe/Berlin)"),
        ('timezone: UTC\nfrom: nobody\n', 2, "from: expected an address like Name <a@b.c>"),
        ('timezone: UTC\nreply_to: [a@b.c]\n', 2,
         "reply_to: expected an address like Name <a@b.c>"),
    ],
    ids=["unknown-key", "stop_on", "send_window", "empty-send_window", "timezone", "from",
         "reply_to"],
)
def test_problems_in_sequence_yml_are_reported_at_their_line(seq_app, root, settings,
                                                             line, message):
    good_step(root / "course")
    (root / "course" / "sequence.yml").write_text(settings, encoding="utf-8")
    result = check(seq_app)
    assert result.exit_code == 1
    assert reported(result) == [("course/sequence.yml", line, message)]


def test_bad_yaml_in_sequence_yml_is_reported_at_the_line_of_the_error(seq_app, root):
    good_step(root / "course")
    write(root / "course", "sequence.yml", """
        timezone: UTC
        stop_on: [upgrade
        send_window: "09:00-18:00"
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("course/sequence.yml", 3)]
    assert reported(result)[0][2].startswith("bad YAML: ")


def test_unclosed_bracket_at_the_end_of_sequence_yml_points_at_a_line_of_the_file(
    seq_app, root
):
    good_step(root / "course")
    write(root / "course", "sequence.yml", """
        timezone: UTC
        stop_on: [upgrade
        """)
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("course/sequence.yml", 2)]


def test_check_reports_every_problem_of_every_sequence_and_counts_them(seq_app, root):
    write(root / "alpha", "01-hi.md", "---\ndelay: 0\n---\nBody\n")
    write(root / "beta", "01-hi.md", "---\nsubject: Hi\ncolour: red\n---\nBody\n")
    good_step(root / "gamma")
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("alpha/01-hi.md", 1), ("beta/01-hi.md", 3)]
    assert "2 problem(s) in 3 sequence(s)." in result.output


# --- broken and odd files ---------------------------------------------------------

def test_a_broken_step_is_reported_and_held_while_other_sequences_still_load(seq_app, root):
    three_steps(root, "good")
    good_step(root / "broken", "01-first.md")
    write(root / "broken", "02-second.md", "---\nsubject: [unclosed\n---\nBody\n")
    result = check(seq_app)
    assert result.exit_code == 1
    assert [file for file, _ in where(result)] == ["broken/02-second.md"]
    with seq_app.app_context():
        library = Library.current()
        assert [s.name for s in library.all()] == ["broken", "good"]
        good = library.get("good")
        assert [(step.key, step.ok) for step in good.steps] == [
            ("welcome", True), ("tips", True), ("offer", True)]
        broken = library.get("broken")
        assert [(step.key, step.ok) for step in broken.steps] == [
            ("first", True), ("second", False)]
    preview = cli(seq_app, "sequences", "preview", "good", "welcome")
    assert preview.exit_code == 0, preview.output


def test_editor_lock_and_hidden_files_are_not_steps(seq_app, root):
    folder = three_steps(root)
    # Emacs keeps a lock while a file is edited: a dangling symlink `.#<name>`.
    os.symlink("owner@host.1234:1700000000", folder / ".#01-welcome.md")
    # Copies from macOS bring AppleDouble files along.
    (folder / "._01-welcome.md").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    result = check(seq_app)
    assert result.exit_code == 0, result.output
    with seq_app.app_context():
        assert [s.key for s in Library.current().get("course").steps] == [
            "welcome", "tips", "offer"]


def test_an_unreadable_step_file_is_reported_and_other_sequences_still_load(seq_app, root):
    three_steps(root, "good")
    good_step(root / "broken", "01-first.md")
    os.symlink(root / "nowhere.md", root / "broken" / "02-gone.md")
    result = check(seq_app)
    assert result.exit_code == 1
    assert where(result) == [("broken/02-gone.md", 1)]
    assert "cannot read" in reported(result)[0][2]
    with seq_app.app_context():
        assert all(step.ok for step in Library.current().get("good").steps)


# --- files are re-read when they change --------------------------------------------

def test_an_edited_step_is_read_again_without_a_restart(root):
    path = write_step(root / "course", "01-hi.md", "First subject", "Body.", delay=0)
    library = Library(root)
    assert library.get("course").step("hi").subject == "First subject"
    write_step(root / "course", "01-hi.md", "The second, longer subject", "Body.", delay=0)
    assert library.get("course").step("hi").subject == "The second, longer subject"
    # Same size as before: the modification time alone tells it changed.
    write_step(root / "course", "01-hi.md", "The SECOND, longer subject", "Body.", delay=0)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert library.get("course").step("hi").subject == "The SECOND, longer subject"


def test_an_unchanged_folder_is_not_read_again(root):
    write_step(root / "course", "01-hi.md", "Subject", "Body.", delay=0)
    library = Library(root)
    assert library.get("course") is library.get("course")


def test_a_looked_at_once_block_reads_a_folder_once_and_sees_edits_after_it(root):
    write_step(root / "course", "01-hi.md", "First subject", "Body.", delay=0)
    library = Library(root)
    with looked_at_once():
        assert library.get("course").step("hi").subject == "First subject"
        write_step(root / "course", "01-hi.md", "The second, longer subject", "Body.",
                   delay=0)
        assert library.get("course").step("hi").subject == "First subject"
    assert library.get("course").step("hi").subject == "The second, longer subject"


def test_added_and_removed_step_files_are_seen_without_a_restart(seq_app, root):
    folder = three_steps(root)
    with seq_app.app_context():
        assert [s.key for s in Library.current().get("course").steps] == [
            "welcome", "tips", "offer"]
    write_step(folder, "04-bonus.md", "Bonus", "More.", delay="1d")
    (folder / "02-tips.md").unlink()
    with seq_app.app_context():
        assert [s.key for s in Library.current().get("course").steps] == [
            "welcome", "offer", "bonus"]
    preview = cli(seq_app, "sequences", "preview", "course", "bonus")
    assert "Subject: Bonus" in preview.stdout


def test_fixing_a_file_clears_its_problem_in_check(seq_app, root):
    path = write(root / "course", "01-hi.md", "---\nsubject: Hi\ndelay: soon\n---\nBody\n")
    assert check(seq_app).exit_code == 1
    path.write_text("---\nsubject: Hi\ndelay: 2d\n---\nBody\n", encoding="utf-8")
    result = check(seq_app)
    assert result.exit_code == 0, result.output


# --- YAML values ------------------------------------------------------------------

def test_unquoted_at_is_read_as_a_time_of_day_not_a_yaml_1_1_number(seq_app, root):
    write(root / "course", "01-hi.md", """
        ---
        subject: Hi
        delay: 1d
        at: 09:00
        ---
        Body
        """)
    write(root / "course", "sequence.yml", "send_window: 08:30-17:45\n")
    assert check(seq_app).exit_code == 0
    with seq_app.app_context():
        sequence = Library.current().get("course")
    assert sequence.step("hi").at == time(9, 0)
    assert sequence.send_window == (time(8, 30), time(17, 45))


def test_step_settings_are_read_from_the_front_matter(root):
    write(root / "course", "02-Guide.md", """
        ---
        subject: "  The guide  "
        delay: 3d
        at: "18:30"
        preheader: Read me
        ---
        Body line.
        """)
    step = Library(root).get("course").steps[0]
    assert (step.key, step.filename, step.subject, step.preheader) == (
        "guide", "02-Guide.md", "The guide", "Read me")
    assert step.delay.days == 3 and step.at == time(18, 30)
    assert step.body == "Body line.\n"


# --- sequences preview --------------------------------------------------------------

def test_preview_prints_subject_text_and_html_for_a_sample_lead(seq_app, root):
    three_steps(root)
    result = cli(seq_app, "sequences", "preview", "course", "welcome")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Subject: Welcome, Jane\n")
    text = out[out.index("----- text -----"):out.index("----- html -----")]
    html = out[out.index("----- html -----"):]
    assert "Hi Jane, here is your guide (https://example.com/guide)." in text
    assert 'href="https://example.com/guide"' in html
    assert "<html" in html.lower()


def test_preview_accepts_the_step_file_name(seq_app, root):
    three_steps(root)
    for name in ("02-tips.md", "02-tips"):
        result = cli(seq_app, "sequences", "preview", "course", name)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("Subject: Three tips\n")


def test_preview_with_lead_renders_for_that_lead(seq_app, root):
    three_steps(root)
    add_lead(seq_app, email="bo.smith@example.com", name="Bo Smith")
    result = cli(seq_app, "sequences", "preview", "course", "welcome",
                 "--lead", "Bo.Smith@Example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Subject: Welcome, Bo\n")
    assert "Hi Bo, here is" in result.stdout
    assert "Jane" not in result.stdout


def test_preview_of_an_unknown_sequence_fails_clearly(seq_app, root):
    three_steps(root)
    result = cli(seq_app, "sequences", "preview", "nope", "welcome")
    assert result.exit_code != 0
    assert "no sequence folder 'nope'" in result.output


def test_preview_of_an_unknown_step_fails_and_lists_the_steps(seq_app, root):
    three_steps(root)
    result = cli(seq_app, "sequences", "preview", "course", "bonus")
    assert result.exit_code != 0
    assert "no step 'bonus' in course (steps: welcome, tips, offer)" in result.output


def test_preview_for_an_unknown_lead_fails_clearly(seq_app, root):
    three_steps(root)
    result = cli(seq_app, "sequences", "preview", "course", "welcome",
                 "--lead", "ghost@example.com")
    assert result.exit_code != 0
    assert "no lead with email 'ghost@example.com'" in result.output


def test_preview_of_a_broken_step_shows_its_problem(seq_app, root):
    write(root / "course", "01-hi.md", "---\nsubject: Hi\n---\n{{ config }}\n")
    result = cli(seq_app, "sequences", "preview", "course", "hi")
    assert result.exit_code != 0
    assert "course/01-hi.md:4: unknown variable 'config'" in result.output


def test_preview_renders_lead_values_as_data_not_template_code(seq_app, root):
    folder = root / "course"
    write_step(folder, "01-hi.md", "Hello {{ lead.name }}", "Dear {{ lead.name }}.", delay=0)
    add_lead(seq_app, email="t@example.com", name="{{ 7*7 }} {% print config %}")
    result = cli(seq_app, "sequences", "preview", "course", "hi", "--lead", "t@example.com")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Subject: Hello {{ 7*7 }} {% print config %}\n")
    text = out[out.index("----- text -----"):out.index("----- html -----")]
    html = out[out.index("----- html -----"):]
    assert "Dear {{ 7*7 }} {% print config %}." in text
    assert "{{ 7*7 }}" in html
    assert "49" not in out
    assert "SECRET_KEY" not in out and "test-secret-key" not in out


# --- sequences plan and send-due ----------------------------------------------------

def plan_rows(result) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in result.stdout.splitlines():
        match = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d) (\S+)\s+(\S+)\s+(\S+)$", line)
        if match:
            rows.append(match.groups())
    return rows


def test_plan_lists_who_gets_which_step_when(smtp_app, smtp, clock):
    root = Path(smtp_app.config["SEQUENCES_DIR"])
    three_steps(root)
    add_lead(smtp_app, email="ann@example.com")
    clock.advance(hours=1)
    add_lead(smtp_app, email="bo@example.com", name="Bo")
    result = cli(smtp_app, "sequences", "plan")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["when", "(UTC)", "lead", "sequence",
                                                     "step"]
    assert plan_rows(result) == [
        ("2026-03-02 11:00", "ann@example.com", "course", "welcome"),
        ("2026-03-02 11:00", "bo@example.com", "course", "welcome"),
        ("2026-03-04 11:00", "ann@example.com", "course", "tips"),
        ("2026-03-04 11:00", "bo@example.com", "course", "tips"),
        ("2026-03-07 11:00", "ann@example.com", "course", "offer"),
        ("2026-03-07 11:00", "bo@example.com", "course", "offer"),
    ]
    assert smtp.messages == []  # a dry run


def test_plan_looks_only_as_far_ahead_as_asked(smtp_app, smtp, clock):
    root = Path(smtp_app.config["SEQUENCES_DIR"])
    three_steps(root)
    add_lead(smtp_app)
    result = cli(smtp_app, "sequences", "plan", "--days", "3")
    assert [(when, step) for when, _, _, step in plan_rows(result)] == [
        ("2026-03-02 10:00", "welcome"), ("2026-03-04 10:00", "tips")]


def test_plan_after_a_send_starts_from_the_next_step(smtp_app, smtp, clock):
    root = Path(smtp_app.config["SEQUENCES_DIR"])
    three_steps(root)
    add_lead(smtp_app)
    assert cli(smtp_app, "send-due").exit_code == 0
    clock.advance(hours=5)
    result = cli(smtp_app, "sequences", "plan")
    assert [(when, step) for when, _, _, step in plan_rows(result)] == [
        ("2026-03-04 10:00", "tips"), ("2026-03-07 10:00", "offer")]


def test_plan_can_be_limited_to_one_sequence(smtp_app, smtp, clock):
    root = Path(smtp_app.config["SEQUENCES_DIR"])
    three_steps(root, "course")
    write_step(root / "other", "01-hello.md", "Hello", "Hi.", delay=0)
    add_lead(smtp_app, email="ann@example.com", sequence="course")
    with smtp_app.app_context():
        page = Page(slug="other-page", title="Other", fields=[], rules={}, sequence="other")
        db.session.add(page)
        db.session.flush()
        lead = Lead(email="cy@example.com", public_ref="cy", page_id=page.id,
                    review="approved", subscription="subscribed")
        db.session.add(lead)
        db.session.flush()
        membership.enroll(lead)
        db.session.commit()
    everything = {(email, seq) for _, email, seq, _ in
                  plan_rows(cli(smtp_app, "sequences", "plan"))}
    assert everything == {("ann@example.com", "course"), ("cy@example.com", "other")}
    only = plan_rows(cli(smtp_app, "sequences", "plan", "other"))
    assert only == [("2026-03-02 10:00", "cy@example.com", "other", "hello")]


def test_plan_with_nothing_due_says_so(smtp_app, smtp, clock):
    three_steps(Path(smtp_app.config["SEQUENCES_DIR"]))
    result = cli(smtp_app, "sequences", "plan")
    assert result.exit_code == 0
    assert result.stdout.strip() == "Nothing due in the next 7 day(s)."


def test_send_due_sends_what_is_due_and_prints_a_one_line_summary(smtp_app, smtp, clock):
    three_steps(Path(smtp_app.config["SEQUENCES_DIR"]))
    add_lead(smtp_app, email="ann@example.com")
    add_lead(smtp_app, email="bo@example.com", name="Bo")
    result = cli(smtp_app, "send-due")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("sent 2, retrying 0, failed 0, bounced 0, held 0, stopped 0, "
                             "unknown 0\n")
    assert sorted(str(m["Subject"]) for m in smtp.messages) == ["Welcome, Ann", "Welcome, Bo"]
    again = cli(smtp_app, "send-due")
    assert again.stdout.startswith("sent 0, ")
    assert len(smtp.messages) == 2


def test_daily_steps_at_a_time_of_day_go_out_on_consecutive_days(smtp_app, smtp, clock):
    from capture.models import Delivery

    folder = Path(smtp_app.config["SEQUENCES_DIR"]) / "course"
    write_step(folder, "01-one.md", "One", "1", delay=0, at="09:00")
    write_step(folder, "02-two.md", "Two", "2", delay="1d", at="09:00")
    write_step(folder, "03-three.md", "Three", "3", delay="1d", at="09:00")
    add_lead(smtp_app)  # Monday 10:00
    clock.advance(seconds=7)  # the scheduler's ticks never land on the minute
    for _ in range(5 * 24):
        clock.advance(hours=1)
        with smtp_app.app_context():
            engine.tick()
    with smtp_app.app_context():
        sent = db.session.execute(select(Delivery.step, Delivery.sent_at)
                                  .order_by(Delivery.id)).all()
    assert [(key, f"{when:%a %H:%M}") for key, when in sent] == [
        ("one", "Tue 09:00"), ("two", "Wed 09:00"), ("three", "Thu 09:00")]
    assert [str(m["Subject"]) for m in smtp.messages] == ["One", "Two", "Three"]


# --- sequences plan == what the scheduler sends --------------------------------------

def planned(app, days=7) -> list[tuple[str, str, str]]:
    """(minute, lead, step) of each row `sequences plan` prints."""
    result = cli(app, "sequences", "plan", "--days", str(days))
    assert result.exit_code == 0, result.output
    return [(when, email, step) for when, email, _, step in plan_rows(result)]


def send_as_planned(app, clock, rows) -> list[tuple[str, str, str]]:
    """Run `send-due` in each minute the plan names (until it sends nothing more, as
    the scheduler's ticks would), and return (minute, lead, step) of what was sent."""
    from datetime import datetime, timedelta

    from capture.models import Delivery

    start = clock.now
    for minute in sorted({when for when, _, _ in rows}):
        tick_at = datetime.strptime(minute, "%Y-%m-%d %H:%M") + timedelta(seconds=59)
        clock.now = max(clock.now, tick_at)
        while not cli(app, "send-due").stdout.startswith("sent 0,"):
            clock.advance(seconds=1)
    with app.app_context():
        sent = db.session.execute(
            select(Delivery.sent_at, Lead.email, Delivery.step)
            .join(Lead, Lead.id == Delivery.lead_id)
            .where(Delivery.status == "sent", Delivery.sent_at >= start)
        ).all()
    return sorted((f"{when:%Y-%m-%d %H:%M}", email, step) for when, email, step in sent)


def test_a_step_inserted_after_a_leads_last_email_comes_next_as_planned(smtp_app, smtp,
                                                                         clock):
    root = Path(smtp_app.config["SEQUENCES_DIR"])
    folder = three_steps(root)  # welcome, tips 2d later, offer 3d after that
    add_lead(smtp_app, email="early@example.com")
    cli(smtp_app, "send-due")
    clock.advance(days=2)
    cli(smtp_app, "send-due")  # early@ had welcome and tips
    leads = [f"l{n}@example.com" for n in range(4)]
    for email in leads:
        add_lead(smtp_app, email=email)
    cli(smtp_app, "send-due")  # Wednesday 10:00: the four had welcome, tips is due Friday
    clock.advance(hours=2)
    write_step(folder, "01.5-quick-tip.md", "A quick tip", "Tip.", delay=0)
    rows = planned(smtp_app)
    assert planned(smtp_app) == rows  # the same on every run, not "now" moving on
    assert sorted(rows) == sorted(
        [("2026-03-04 12:00", email, "quick-tip") for email in leads]
        + [("2026-03-06 12:00", email, "tips") for email in leads]
        + [("2026-03-09 12:00", email, "offer") for email in leads]
        + [("2026-03-07 10:00", "early@example.com", "offer")])  # past the new step
    assert send_as_planned(smtp_app, clock, rows) == sorted(rows)


def test_a_removed_step_is_skipped_as_planned(smtp_app, smtp, clock):
    folder = three_steps(Path(smtp_app.config["SEQUENCES_DIR"]))
    write_step(folder, "03-offer.md", "An offer", "Buy now.", delay="1d")
    for email in ("a@example.com", "b@example.com"):
        add_lead(smtp_app, email=email)
    cli(smtp_app, "send-due")  # Monday 10:00: tips is due Wednesday
    clock.advance(hours=5)
    (folder / "02-tips.md").unlink()
    rows = planned(smtp_app)
    assert sorted(rows) == [("2026-03-03 10:00", "a@example.com", "offer"),
                            ("2026-03-03 10:00", "b@example.com", "offer")]
    assert send_as_planned(smtp_app, clock, rows) == sorted(rows)


def test_the_send_window_is_planned_as_it_is_kept(smtp_app, smtp, clock):
    folder = three_steps(Path(smtp_app.config["SEQUENCES_DIR"]))
    write(folder, "sequence.yml", 'send_window: "08:00-20:00"\n')
    clock.now = clock.now.replace(hour=22)
    add_lead(smtp_app, email="night@example.com")
    clock.advance(minutes=30)
    rows = planned(smtp_app)
    assert rows == [("2026-03-03 08:00", "night@example.com", "welcome"),
                    ("2026-03-05 08:00", "night@example.com", "tips"),
                    ("2026-03-08 08:00", "night@example.com", "offer")]
    assert cli(smtp_app, "send-due").stdout.startswith("sent 0,")  # 22:30: nothing
    assert send_as_planned(smtp_app, clock, rows) == rows


def test_catch_up_of_a_step_added_at_the_end_is_planned_as_sent(smtp_app, smtp, clock):
    folder = three_steps(Path(smtp_app.config["SEQUENCES_DIR"]))
    add_lead(smtp_app, email="done@example.com")
    for _ in range(3):
        cli(smtp_app, "send-due")
        clock.advance(days=3)
    add_lead(smtp_app, email="new@example.com")  # Sunday 10:00, welcome due now
    write_step(folder, "04-bonus.md", "A bonus", "More.", delay="1d")
    write_step(folder, "05-last.md", "The last", "Bye.", delay="2d", at="09:00")
    rows = planned(smtp_app)
    assert [row for row in rows if row[1] == "done@example.com"] == [
        ("2026-03-11 10:00", "done@example.com", "bonus"),  # 1 day after its last email
        ("2026-03-13 09:00", "done@example.com", "last")]
    assert send_as_planned(smtp_app, clock, rows) == sorted(rows)


def test_an_email_waiting_to_be_retried_is_planned_and_sent_then(smtp_app, smtp, clock):
    from datetime import datetime, timedelta

    three_steps(Path(smtp_app.config["SEQUENCES_DIR"]))
    add_lead(smtp_app, email="ann@example.com")
    smtp.data_replies = ["451 try again later"]
    assert cli(smtp_app, "send-due").stdout.startswith("sent 0, retrying 1,")
    result = cli(smtp_app, "sequences", "plan")
    retry = re.search(r"^(\S+ \S+) ann@example\.com +course +welcome \(retry\)$",
                      result.stdout, re.M)
    assert retry, result.stdout
    assert [(step, email) for _, email, _, step in plan_rows(result)] == [
        ("tips", "ann@example.com"), ("offer", "ann@example.com")]
    # The plan shows the minute; the retry is due within it (back-off has jitter).
    clock.now = datetime.strptime(retry.group(1), "%Y-%m-%d %H:%M") + timedelta(minutes=1)
    assert cli(smtp_app, "send-due").stdout.startswith("sent 1,")
    assert [str(m["Subject"]) for m in smtp.messages] == ["Welcome, Ann"]


def test_a_step_inserted_before_a_far_step_is_planned_although_that_step_is_far(
        smtp_app, smtp, clock):
    folder = Path(smtp_app.config["SEQUENCES_DIR"]) / "course"
    write_step(folder, "01-welcome.md", "Welcome", "Hi.", delay=0)
    write_step(folder, "02-later.md", "Later", "Much later.", delay="2w")
    add_lead(smtp_app, email="ann@example.com")
    cli(smtp_app, "send-due")
    clock.advance(hours=1)
    write_step(folder, "01.5-soon.md", "Soon", "Soon.", delay="1d")
    rows = planned(smtp_app)
    assert rows == [("2026-03-03 10:00", "ann@example.com", "soon")]
    assert send_as_planned(smtp_app, clock, rows) == rows
