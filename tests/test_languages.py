"""Page languages: a German page end to end (the page, its errors, the confirmation
email through a real SMTP server, the confirm page, a sequence's footer and the
unsubscribe page), every language's own words, the dashboard in English, the first-view
cache per language, and `language` in pages, sequences and broadcasts."""

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, text

from capture.db import db
from capture.models import Broadcast, Page
from capture.pages.definition import page_templates_dir, validate_page
from tests.admin.conftest import form_data
from tests.conftest import (
    body_text,
    confirm,
    create_page,
    csrf_of,
    form_tokens,
    lead_of,
    send_confirmations,
)
from tests.factories import sequence_folder, tick, write_step

GERMAN = {"slug": "angebot", "title": "Der Leitfaden", "language": "de",
          "consent": "Ich möchte den Leitfaden und Tipps per E-Mail erhalten.",
          "sequence": "kurs",
          "fields": [{"name": "name", "label": "Vorname", "type": "text"},
                     {"name": "email", "label": "E-Mail", "type": "email", "required": True},
                     {"name": "phone", "label": "Telefon", "type": "tel", "required": True}]}
# What each language's page says under its button.
FINE_PRINT = {
    "en": "We respect your inbox. Unsubscribe with one click at any time.",
    "de": "Wir respektieren Ihr Postfach. Abmeldung jederzeit mit einem Klick.",
    "fr": "Nous respectons votre boîte de réception. Désinscription en un clic, à tout moment.",
    "es": "Respetamos tu bandeja de entrada. Date de baja con un clic cuando quieras.",
    "pt": "Respeitamos sua caixa de entrada. Cancele a inscrição com um clique quando quiser.",
}
# The error under an empty email field, in each language.
NO_EMAIL = {
    "en": "Enter your email address.",
    "de": "Geben Sie Ihre E-Mail-Adresse ein.",
    "fr": "Saisissez votre adresse e-mail.",
    "es": "Escribe tu dirección de correo.",
    "pt": "Digite seu endereço de e-mail.",
}


@pytest.fixture
def app(make_app, smtp, tmp_path):
    """Sends through the test SMTP server; a sequence `kurs` with one step."""
    (tmp_path / "sequences").mkdir()
    (tmp_path / "broadcasts").mkdir()
    app = make_app(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SEQUENCES_DIR=str(tmp_path / "sequences"),
                   BROADCASTS_DIR=str(tmp_path / "broadcasts"))
    write_step(sequence_folder(app, "kurs"), "01-willkommen.md", "Willkommen",
               "Hier ist Ihr Leitfaden.", delay=0)
    return app


@pytest.fixture
def german(app):
    return create_page(app, **GERMAN)


def visit(client, slug):
    response = client.get(f"/p/{slug}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def submit(client, slug, **fields):
    data = {**form_tokens(visit(client, slug)), **fields}
    return client.post(f"/p/{slug}", data=data)


def errors(response) -> list[str]:
    return re.findall(r'<p class="error">([^<]*)</p>', response.get_data(as_text=True))


def signed_up(app, client, smtp, slug="angebot"):
    """Opt in, then the confirmation email that arrived."""
    response = submit(client, slug, email="anna@example.com", name="Anna",
                      phone="+49 30 123456", consent="y")
    assert response.status_code == 303
    send_confirmations(app)
    [message] = smtp.to("anna@example.com")
    return message


def confirm_path(message) -> str:
    return re.search(r"https?://\S+(/confirm/\S+)", body_text(message)).group(1)


# --- a German page, end to end -----------------------------------------------------------

def test_a_german_page_speaks_german(client, german):
    html = visit(client, german)
    assert '<html lang="de">' in html
    assert FINE_PRINT["de"] in html
    assert "Bereitgestellt mit Capture" in html
    assert "Dieses Feld leer lassen" in html  # the honeypot's label
    assert "We respect your inbox" not in html and "Powered by" not in html


def test_a_german_pages_field_errors_are_german(client, german):
    response = submit(client, german, email="", phone="call me")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Bitte korrigieren Sie die markierten Felder." in html
    assert errors(response) == [
        "Geben Sie Ihre E-Mail-Adresse ein.",
        "Geben Sie eine Telefonnummer nur mit Ziffern ein (und + ( ) -).",
        "Bitte setzen Sie das Häkchen, um zuzustimmen.",
    ]


@pytest.mark.parametrize(("typed", "said"), [
    ("anna.example.com", "Eine E-Mail-Adresse braucht ein @, etwa name@example.com."),
    ("anna@example", "Prüfen Sie den Teil nach dem @: Er braucht einen Punkt, etwa example.com."),
    ("anna@@example.com", "Diese E-Mail-Adresse enthält zwei @-Zeichen."),
    ("anna@exa mple.com", "Eine E-Mail-Adresse darf keine Leerzeichen enthalten."),
    ("anna..b@example.com", "Diese E-Mail-Adresse enthält zwei Punkte hintereinander."),
])
def test_email_validators_verdicts_are_said_in_german(client, german, typed, said):
    response = submit(client, german, email=typed, phone="030 123456", consent="y")
    assert response.status_code == 422
    assert errors(response) == [said]


def test_a_required_field_names_its_label_in_german(app, client):
    create_page(app, **{**GERMAN, "consent": "",
                        "fields": [{"name": "firma", "label": "Firma", "type": "text",
                                    "required": True}]})
    response = submit(client, "angebot", email="anna@example.com")
    assert errors(response) == ["Bitte füllen Sie „Firma“ aus."]


def test_the_thanks_page_asks_in_german_to_check_the_inbox(client, german):
    response = submit(client, german, email="anna@example.com", phone="030 123456",
                      consent="y")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert '<html lang="de">' in page
    assert "Schauen Sie in Ihr Postfach" in page
    assert "<strong>Der Leitfaden</strong> zu erhalten" in page


def test_the_confirmation_email_is_german(app, client, smtp, german):
    message = signed_up(app, client, smtp)
    assert str(message["Subject"]) == "Bitte bestätigen Sie Ihre Anmeldung: Der Leitfaden"
    text = body_text(message)
    assert text.startswith("Hallo Anna,")
    assert "Öffnen Sie diesen Link, um zu bestätigen:" in text
    html = message.get_body(("html",)).get_content()
    assert '<html lang="de">' in html
    assert "Ja, Anmeldung bestätigen" in html
    assert "Bitte bestätigen Sie, dass Sie <strong>Der Leitfaden</strong>" in html


def test_the_confirm_page_and_the_confirmed_page_are_german(app, client, smtp, german):
    path = confirm_path(signed_up(app, client, smtp))
    page = client.get(path).get_data(as_text=True)
    assert '<html lang="de">' in page
    assert "<h1>Bestätigen Sie Ihre Anmeldung</h1>" in page
    assert "Anmeldung bestätigen</button>" in page
    done = confirm(app.test_client(), path).get_data(as_text=True)
    assert "Ihre Anmeldung ist bestätigt" in done


def test_a_sequence_email_has_a_german_footer_and_unsubscribe_page(app, client, smtp,
                                                                   german):
    confirm(client, confirm_path(signed_up(app, client, smtp)))
    tick(app)
    [step] = [m for m in smtp.to("anna@example.com") if str(m["Subject"]) == "Willkommen"]
    html = step.get_body(("html",)).get_content()
    assert "Sie erhalten diese E-Mail, weil Sie sich für Der Leitfaden angemeldet haben." in html
    assert ">Abmelden</a>" in html
    text = step.get_body(("plain",)).get_content()
    assert re.search(r"^Abmelden: http\S+/u/", text, re.MULTILINE)

    path = urlsplit(re.search(r"<(http[^>]+)>", step["List-Unsubscribe"]).group(1)).path
    page = client.get(path).get_data(as_text=True)
    assert '<html lang="de">' in page
    assert "<h1>Abmelden?</h1>" in page
    assert "Von allem abmelden" in page
    assert "Nur die E-Mails „kurs“ abbestellen" in page
    done = client.post(path, data={"choice": "everything"}).get_data(as_text=True)
    assert "Sie sind abgemeldet" in done


def test_the_embedded_forms_answers_are_german(app, client):
    create_page(app, **{**GERMAN, "allowed_origins": ["https://blog.example.com"]})
    response = client.post("/p/angebot/embed", data={"email": "anna@"},
                           headers={"Origin": "https://blog.example.com",
                                    "Accept": "application/json"})
    assert response.status_code == 422
    answer = response.get_json()
    assert answer["error"] == "Bitte korrigieren Sie die markierten Felder."
    assert answer["errors"]["email"] == "Ergänzen Sie den Teil nach dem @, etwa name@example.com."


def test_the_embed_snippet_is_in_the_pages_language(app):
    from capture.public.render import snippet

    create_page(app, **{**GERMAN, "allowed_origins": ["https://blog.example.com"],
                        "fields": [*GERMAN["fields"],
                                   {"name": "land", "label": "Land", "type": "country"}]})
    with app.test_request_context():
        html = snippet(db.session.scalar(select(Page)))
    assert "Dieses Feld leer lassen" in html
    assert "Wählen Sie Ihr Land" in html
    assert '<option value="AT">Österreich</option>' in html


def test_a_country_list_is_in_the_pages_language(app, client):
    create_page(app, **{**GERMAN, "consent": "",
                        "fields": [{"name": "land", "label": "Land", "type": "country"}]})
    html = visit(client, "angebot")
    assert '<option value="">Wählen Sie Ihr Land</option>' in html
    assert '<option value="DE">Deutschland</option>' in html
    names = re.findall(r'<option value="[A-Z]{2}">([^<]+)</option>', html)
    assert names.index("Österreich") < names.index("Polen")  # Ö among the O


# --- every language ------------------------------------------------------------------------

@pytest.mark.parametrize("language", FINE_PRINT)
def test_each_language_renders_the_page_and_its_errors_in_it(app, client, language):
    create_page(app, slug=f"page-{language}", language=language)
    html = visit(client, f"page-{language}")
    assert f'<html lang="{language}">' in html
    assert FINE_PRINT[language] in html
    response = submit(client, f"page-{language}", email="")
    assert errors(response) == [NO_EMAIL[language]]


def test_a_page_without_a_language_is_english(app, client):
    create_page(app)
    html = visit(client, "offer")
    assert '<html lang="en">' in html and FINE_PRINT["en"] in html
    with app.app_context():
        assert db.session.scalar(select(Page.language)) == "en"


# --- errors before a page's view chose its language -----------------------------------

def test_a_body_too_large_for_a_german_page_is_refused_in_german(app, client, german):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    response = client.post("/p/angebot", data={"email": "x" * 4096})
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert '<html lang="de">' in html and "Zu groß" in html


def test_json_sent_to_a_german_page_is_refused_in_german(app, client, german):
    response = client.post("/p/angebot", json={"email": "anna@example.com"})
    assert response.status_code == 415
    assert "Diese Adresse nimmt nur abgesendete Formulare an." in response.get_data(as_text=True)


@pytest.mark.parametrize("accept, said", [
    ("de-DE,de;q=0.9,en;q=0.5", "Unter dieser Adresse gibt es nichts."),
    ("fr-CH, fr;q=0.9", "Il n’y a rien à cette adresse."),
    ("ja", "There is nothing at this address."),
    (None, "There is nothing at this address."),
], ids=["de", "fr", "not-ours", "none"])
def test_an_unknown_page_speaks_the_visitors_language(client, accept, said):
    headers = {"Accept-Language": accept} if accept else {}
    response = client.get("/p/no-such-page", headers=headers)
    assert response.status_code == 404
    assert said in response.get_data(as_text=True)


def test_an_unknown_pages_answer_varies_by_the_visitors_language(client):
    response = client.get("/p/no-such-page", headers={"Accept-Language": "de"})
    assert "Accept-Language" in response.headers["Vary"]


def test_an_unpublished_page_answers_as_a_missing_one_in_the_visitors_language(
        app, client, german):
    with app.app_context():
        db.session.scalar(select(Page)).published = False
        db.session.commit()
    response = client.get("/p/angebot", headers={"Accept-Language": "fr"})
    assert response.status_code == 404
    assert '<html lang="fr">' in response.get_data(as_text=True)


def test_a_german_page_wins_over_the_visitors_language_for_its_errors(app, client, german):
    response = client.post("/p/angebot", json={}, headers={"Accept-Language": "fr"})
    assert '<html lang="de">' in response.get_data(as_text=True)


# --- the dashboard ---------------------------------------------------------------------------

def test_the_dashboard_stays_english_for_a_german_page(app, owner, german):
    visit(owner, german)
    with app.app_context():
        page_id = db.session.scalar(select(Page.id))
    for path in ("/admin/pages", f"/admin/pages/{page_id}/edit",
                 f"/admin/pages/{page_id}/share", "/admin/no-such-thing"):
        html = owner.get(path, headers={"Accept-Language": "de"}).get_data(as_text=True)
        assert '<html lang="en">' in html, path
        assert "Bereitgestellt" not in html and "Abmelden" not in html, path
    editor = owner.get(f"/admin/pages/{page_id}/edit").get_data(as_text=True)
    assert '<option selected value="de">Deutsch</option>' in editor
    preview = owner.get(f"/admin/pages/{page_id}/preview").get_data(as_text=True)
    assert FINE_PRINT["de"] in preview


def test_the_editor_saves_the_pages_language(app, owner):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new",
                          data=form_data(token, language="pt", sequence="kurs"))
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Page.language)) == "pt"
    assert FINE_PRINT["pt"] in visit(owner, "guide")


def test_the_editor_refuses_an_unknown_language_beside_its_field(app, owner):
    token = csrf_of(owner, "/admin/pages/new")
    response = owner.post("/admin/pages/new", data=form_data(token, language="it", sequence="kurs"))
    assert response.status_code == 422
    assert ("&#39;it&#39; is not a supported language: use one of en, de, fr, es, pt"
            in response.get_data(as_text=True))
    with app.app_context():
        assert db.session.scalar(select(Page.id)) is None


# --- the first view's cache ----------------------------------------------------------------

def test_the_cached_first_view_follows_the_pages_language(app, client, german):
    assert FINE_PRINT["de"] in visit(client, german)
    # Changed behind the app's back, updated_at untouched: the version still differs.
    with app.app_context():
        db.session.execute(text("UPDATE pages SET language = 'en'"))
        db.session.commit()
    html = visit(client, german)
    assert FINE_PRINT["en"] in html and '<html lang="en">' in html
    with app.app_context():
        db.session.execute(text("UPDATE pages SET language = 'de'"))
        db.session.commit()
    assert FINE_PRINT["de"] in visit(client, german)


def test_pages_of_different_languages_with_the_same_form_keep_their_own(app, client):
    for slug, language in (("eins", "de"), ("one", "en"), ("uno", "es")):
        create_page(app, slug=slug, language=language)
    for _ in range(2):
        for slug, language in (("eins", "de"), ("one", "en"), ("uno", "es")):
            assert FINE_PRINT[language] in visit(client, slug)


# --- language in the definitions -------------------------------------------------------------

def test_an_unknown_page_language_is_refused_naming_the_allowed_ones(app):
    with app.app_context():
        _, problems = validate_page({"slug": "x", "title": "X", "language": "klingon"},
                                    sequences_dir=app.config["SEQUENCES_DIR"],
                                    templates_dir=page_templates_dir())
    assert problems == ["language: 'klingon' is not a supported language: "
                        "use one of en, de, fr, es, pt"]


def test_pages_import_refuses_an_unknown_language_and_exports_the_language(app, tmp_path):
    runner = app.test_cli_runner()
    path = tmp_path / "page.json"
    path.write_text(json.dumps({"slug": "x", "title": "X", "language": "DE"}))
    result = runner.invoke(args=["pages", "import", str(path)])
    assert result.exit_code != 0
    assert "language: 'DE' is not a supported language" in result.output
    path.write_text(json.dumps({"slug": "x", "title": "X", "language": "fr"}))
    assert runner.invoke(args=["pages", "import", str(path)]).exit_code == 0
    exported = runner.invoke(args=["pages", "export", "x"])
    [page] = json.loads(exported.output)
    assert page["language"] == "fr"


def test_a_page_without_an_email_field_gets_one_labelled_in_its_language(app):
    with app.app_context():
        clean, problems = validate_page({"slug": "x", "title": "X", "language": "fr"},
                                        sequences_dir=app.config["SEQUENCES_DIR"],
                                        templates_dir=page_templates_dir())
    assert not problems
    assert clean["fields"][0] == {"name": "email", "label": "E-mail", "type": "email",
                                  "required": True}


def test_a_sequences_language_sets_its_footer_over_the_pages(app, client, smtp, german):
    (sequence_folder(app, "kurs") / "sequence.yml").write_text("language: fr\n")
    confirm(client, confirm_path(signed_up(app, client, smtp)))
    tick(app)
    [step] = [m for m in smtp.to("anna@example.com") if str(m["Subject"]) == "Willkommen"]
    html = step.get_body(("html",)).get_content()
    assert ">Se désinscrire</a>" in html and '<html lang="fr">' in html
    path = urlsplit(re.search(r"<(http[^>]+)>", step["List-Unsubscribe"]).group(1)).path
    assert "Me désinscrire de tout" in client.get(path).get_data(as_text=True)


def test_a_sequence_with_an_unknown_language_says_where(app):
    from capture.mail.sequences import load_sequence

    folder = sequence_folder(app, "kurs")
    (folder / "sequence.yml").write_text("from: A <a@example.com>\nlanguage: english\n")
    problems = [str(p) for p in load_sequence(folder).problems]
    assert problems == ["kurs/sequence.yml:2: language: 'english' is not a supported "
                        "language: use one of en, de, fr, es, pt"]


def test_a_broadcasts_language_is_frozen_and_sets_its_footer(app, client, smtp, german):
    confirm(client, confirm_path(signed_up(app, client, smtp)))
    Path(app.config["BROADCASTS_DIR"], "oferta.md").write_text(
        "---\nsubject: La oferta\nlanguage: es\n---\nHola.\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["broadcasts", "send", "oferta"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(select(Broadcast.language)) == "es"
    tick(app)
    [message] = [m for m in smtp.to("anna@example.com") if str(m["Subject"]) == "La oferta"]
    assert ">Darse de baja</a>" in message.get_body(("html",)).get_content()
    path = urlsplit(re.search(r"<(http[^>]+)>", message["List-Unsubscribe"]).group(1)).path
    assert "<h1>¿Darte de baja?</h1>" in client.get(path).get_data(as_text=True)


def test_a_broadcast_with_an_unknown_language_is_not_sent(app):
    Path(app.config["BROADCASTS_DIR"], "sale.md").write_text(
        "---\nsubject: Sale\nlanguage: xx\n---\nHello.\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["broadcasts", "send", "sale"])
    assert result.exit_code != 0
    assert ("sale.md:3: language: 'xx' is not a supported language: "
            "use one of en, de, fr, es, pt") in result.output
    with app.app_context():
        assert db.session.scalar(select(Broadcast.id)) is None


def test_a_leads_page_language_is_kept_for_an_english_visitor_later(app, client, smtp, german):
    """The lead's language is their page's: a later request elsewhere changes nothing."""
    message = signed_up(app, client, smtp)
    assert client.get("/p/no-such-page").status_code == 404
    assert "Bestätigen Sie Ihre Anmeldung" in client.get(confirm_path(message)).get_data(
        as_text=True)
    assert lead_of(app, "anna@example.com").subscription == "unconfirmed"
