"""Dashboard list import: upload (CSRF, size limit), column mapping with a preview, a
check of the whole file, the import and its report."""

import io
import re
from html import unescape
from pathlib import Path

import pytest

from capture.models import Lead
from tests.conftest import count, create_page, csrf_of, lead_of

CSV = (b"E-mail,Full name,Country,Consent,Notes\n"
       b"ann@example.com,Ann,DE,yes,likes cats\n"
       b"not-an-address,Bob,US,yes,\n"
       b"cat@example.com,Cat,Narnia,no,\n"
       b"dan@example.com,Dan,FR,no,\n")


@pytest.fixture
def page(app):
    return create_page(app, slug="offer", fields=[
        {"name": "name", "label": "Name", "type": "text", "required": False},
        {"name": "email", "label": "Email", "type": "email", "required": True},
        {"name": "country", "label": "Country", "type": "country", "required": False},
    ])


def upload(owner, content: bytes = CSV, name: str = "people.csv", **fields):
    data = {"csrf_token": csrf_of(owner, "/admin/leads/import"), "page": "offer",
            "encoding": "utf-8", "file": (io.BytesIO(content), name), **fields}
    return owner.post("/admin/leads/import", data=data, content_type="multipart/form-data")


def uploaded(owner, content: bytes = CSV) -> str:
    """Upload a file; return its mapping page's path."""
    response = upload(owner, content)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def mapping_choices(html: str) -> dict[str, str]:
    """{column header: selected field} of the mapping form."""
    choices = {}
    for header, select in re.findall(
            r'<label for="column_\d+">([^<]*)</label></th>\s*<td><select[^>]*>(.*?)</select>',
            html, re.S):
        selected = re.search(r'<option selected value="([^"]*)"', select)
        choices[unescape(header)] = selected.group(1) if selected else ""
    return choices


def post_mapping(owner, path: str, action: str, **choices):
    html = owner.get(path).get_data(as_text=True)
    data = {"csrf_token": csrf_of(owner, path), "page": "offer", "action": action}
    for index, field in enumerate(mapping_choices(html).values()):
        data[f"column_{index}"] = field
    data.update(choices)
    return owner.post(path, data=data)


def uploads_folder(app) -> list[str]:
    folder = Path(app.instance_path) / "imports"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_upload_map_preview_and_import_end_to_end(app, owner, page):
    path = uploaded(owner)
    mapping = owner.get(path)
    html = mapping.get_data(as_text=True)

    assert mapping.status_code == 200
    assert mapping_choices(html) == {"E-mail": "email", "Full name": "name",
                                     "Country": "country", "Consent": "consent", "Notes": ""}
    assert "asked to confirm by email, approved" in html          # dan, in the preview
    assert "unknown country &#39;Narnia&#39;" in html
    assert count(app, Lead) == 0                                    # a preview writes nothing

    report = post_mapping(owner, path, "import")
    text = report.get_data(as_text=True)

    assert report.status_code == 200
    assert "Imported people.csv" in text
    assert re.search(r"<td class=\"num\">3</td><td>not-an-address</td><td>invalid email", text)
    assert re.search(r"<td class=\"num\">4</td><td>cat@example.com</td><td>unknown country", text)
    assert lead_of(app, "ann@example.com").subscription == "subscribed"
    assert lead_of(app, "dan@example.com").subscription == "unconfirmed"
    assert lead_of(app, "ann@example.com").consent_text.startswith(
        "Imported from people.csv (line 2), consent column Consent=yes")
    assert uploads_folder(app) == []                                # the upload is deleted


def test_the_owners_mapping_replaces_the_guess(app, owner, page):
    path = uploaded(owner, b"Email,Work,Name\npriv@example.com,work@example.com,Ann\n")

    post_mapping(owner, path, "import", column_0="", column_1="email", column_2="")

    assert [lead_of(app, a) is not None for a in ("priv@example.com", "work@example.com")] == [
        False, True]
    assert lead_of(app, "work@example.com").name == ""


def test_a_mapping_without_an_email_column_is_refused(app, owner, page):
    path = uploaded(owner)

    response = post_mapping(owner, path, "import", column_0="")

    assert response.status_code == 422
    assert "no email column" in response.get_data(as_text=True)
    assert count(app, Lead) == 0


def test_checking_the_whole_file_reports_and_writes_nothing(app, owner, page):
    path = uploaded(owner)

    response = post_mapping(owner, path, "check")
    text = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Check of the whole file" in text and "Would be created" in text
    assert count(app, Lead) == 0
    assert len(uploads_folder(app)) == 2                            # still there to import


def test_discarding_deletes_the_upload(app, owner, page):
    path = uploaded(owner)

    response = post_mapping(owner, path, "discard")

    assert response.status_code == 302
    assert uploads_folder(app) == []
    assert owner.get(path).status_code == 302                       # gone: back to upload


def test_an_upload_is_imported_once(app, owner, page):
    path = uploaded(owner)
    post_mapping(owner, path, "import")

    again = owner.post(path, data={"csrf_token": csrf_of(owner, "/admin/leads/import"),
                                   "page": "offer", "action": "import", "column_0": "email"})

    assert again.status_code == 302 and again.headers["Location"].endswith("/admin/leads/import")
    assert count(app, Lead) == 2


def test_upload_without_csrf_token_is_refused(app, owner, page):
    response = owner.post("/admin/leads/import", content_type="multipart/form-data",
                          data={"page": "offer", "file": (io.BytesIO(CSV), "people.csv")})

    assert response.status_code == 400
    assert uploads_folder(app) == []


def test_import_screens_need_a_login(app, client, page):
    assert client.get("/admin/leads/import").status_code == 302
    assert client.get("/admin/leads/import/" + "0" * 32).status_code == 302


def test_an_upload_that_is_gone_sends_back_to_the_upload_form(owner, page):
    response = owner.get("/admin/leads/import/" + "0" * 32)

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/leads/import")


@pytest.mark.parametrize("token", ["../../secret_key", "%2e%2e%2fsecret_key", "ABC",
                                   "0" * 31 + "g"])
def test_a_token_that_is_not_ours_in_shape_is_not_found(owner, page, token):
    assert owner.get(f"/admin/leads/import/{token}").status_code == 404


def test_a_file_over_the_size_limit_is_refused(app, owner, page):
    app.config["IMPORT_MAX_BYTES"] = 1024

    response = upload(owner, CSV + b"x@example.com,X,DE,yes,\n" * 50)

    assert response.status_code == 422
    assert "The file is larger than 1 KB" in response.get_data(as_text=True)
    assert uploads_folder(app) == []


def test_an_upload_much_larger_than_the_limit_is_cut_off(app, owner, page):
    app.config["IMPORT_MAX_BYTES"] = 1024

    response = upload(owner, CSV + b"x@example.com,X,DE,yes,\n" * 10000)

    assert response.status_code == 413
    assert uploads_folder(app) == []


def test_a_file_that_is_not_text_is_refused_with_a_reason(app, owner, page):
    response = upload(owner, b"\xff\xfe\x00\x01binary" * 10, name="photo.csv")

    assert response.status_code == 422
    assert "Not utf-8 text" in response.get_data(as_text=True)
    assert uploads_folder(app) == []


def test_a_file_without_an_email_column_is_refused_at_upload(app, owner, page):
    response = upload(owner, b"Name,Country\nAnn,DE\nBob,FR\n")
    text = unescape(response.get_data(as_text=True))

    assert response.status_code == 422
    assert "No email column: no column is headed email" in text
    assert "(columns: Name, Country)" in text
    assert uploads_folder(app) == []


def test_a_column_of_addresses_is_the_email_column_whatever_its_header(app, owner, page):
    path = uploaded(owner, b"Contact,Name\nann@example.com,Ann\nbob@example.com,Bob\n")

    html = owner.get(path).get_data(as_text=True)

    assert mapping_choices(html) == {"Contact": "email", "Name": "name"}
    assert "Not ready to import" not in html and "—</span>" not in html


def test_a_file_with_too_many_columns_is_refused_at_upload_in_a_short_page(app, owner, page):
    header = ",".join(["email", *(f"c{i}" for i in range(20_000))]).encode()

    response = upload(owner, header + b"\nann@example.com\n")

    assert response.status_code == 422
    assert "20,001 columns, more than the 200 an import takes" in response.get_data(
        as_text=True)
    assert len(response.get_data()) < 50_000
    assert uploads_folder(app) == []


def test_a_row_the_rules_reject_is_shown_as_such_and_the_report_adds_up(app, owner):
    create_page(app, slug="offer", rules={"block_disposable": True})
    path = uploaded(owner, b"email,consent\nann@example.com,yes\ntrash@mailinator.com,yes\n"
                           b"bad,yes\n")

    preview = unescape(owner.get(path).get_data(as_text=True))
    report = unescape(post_mapping(owner, path, "import").get_data(as_text=True))

    assert re.search(r'<span class="badge rules_rejected">rejected by the page\'s rules'
                     r"</span> rejected by the page's rules: disposable address", preview)
    assert preview.count('class="badge created"') == 1
    cards = dict(re.findall(r'data-outcome="(\w+)"><span class="label">[^<]*</span>'
                            r"<strong>(\d+)</strong>", report))
    assert cards == {"rows": "3", "created": "1", "rules_rejected": "1", "merged": "0",
                     "suppressed": "0", "rejected": "1"}
    assert "1 subscribed · 0 to confirm" in report


def test_a_quote_left_open_is_reported_with_its_line(app, owner, page):
    path = uploaded(owner, b'email,name\nann@example.com,"Ann\nbob@example.com,Bob\n'
                           b"cat@example.com,Cat\n")

    report = unescape(post_mapping(owner, path, "import").get_data(as_text=True))

    assert re.search(r'<td class="num">2</td><td>—</td><td>a quote opened on '
                     r"line 2 is not closed where it should be: lines 2–4", report)
    assert count(app, Lead) == 0


def test_an_encoding_the_form_does_not_offer_is_refused_in_one_sentence(app, owner, page):
    response = upload(owner, encoding="rot13")

    assert response.status_code == 422
    assert "Not a valid choice" in response.get_data(as_text=True)
    assert uploads_folder(app) == []


def test_the_leads_page_links_to_the_import(owner, page):
    html = owner.get("/admin/leads").get_data(as_text=True)

    assert 'href="/admin/leads/import"' in html


def test_the_lead_page_shows_the_import_on_the_timeline(app, owner, page):
    post_mapping(owner, uploaded(owner), "import")

    html = owner.get(f"/admin/leads/{lead_of(app, 'ann@example.com').id}").get_data(as_text=True)

    assert "Imported from <strong>people.csv</strong> (line 2)" in html
    assert "consent column Consent=yes" in html


def test_choosing_another_page_maps_the_columns_again_for_its_fields(app, owner, page):
    create_page(app, slug="b2b", fields=[
        {"name": "email", "label": "Email", "type": "email", "required": True},
        {"name": "company", "label": "Company", "type": "text", "required": False},
    ])
    path = uploaded(owner, b"Email,Company\nann@example.com,Acme\n")
    assert mapping_choices(owner.get(path).get_data(as_text=True))["Company"] == ""

    response = post_mapping(owner, path, "preview", page="b2b")

    assert mapping_choices(response.get_data(as_text=True)) == {
        "Email": "email", "Company": "company"}
    post_mapping(owner, path, "import", page="b2b")
    assert lead_of(app, "ann@example.com").fields == {"company": "Acme"}
