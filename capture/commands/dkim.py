"""The `flask --app wsgi dkim …` commands: make the DKIM signing key."""

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from capture.mail import dkim

dkim_cli = AppGroup("dkim", help="Make the key that signs every email (DKIM).")

# DNS zone files take at most 255 characters per quoted string of a TXT record.
_ZONE_STRING = 255


@dkim_cli.command("keygen")
@click.option("--domain", required=True, help="The signing domain (d=): the From domain "
              "or a parent of it.")
@click.option("--selector", required=True, help="The selector (s=), e.g. capture2026.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the key (default: instance/dkim-SELECTOR.DOMAIN.pem).")
@click.option("--force", is_flag=True, help="Replace a file that exists already.")
def keygen_command(domain: str, selector: str, out: Path | None, force: bool) -> None:
    """Write a new RSA 2048 private key (PEM, mode 0600) and print the DNS TXT record
    to publish; refuses to replace an existing file unless --force."""
    try:
        domain, selector = dkim.checked_domain(domain), dkim.checked_selector(selector)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    path = out or Path(current_app.instance_path) / f"dkim-{selector}.{domain}.pem"
    try:
        pem = dkim.generate_key(path, force=force)
    except FileExistsError:
        raise click.ClickException(f"{path} exists already: choose another --out, or "
                                   "--force to replace it (mail signed with the old key "
                                   "then fails to verify once its DNS record changes)") from None
    except (RuntimeError, OSError) as error:
        raise click.ClickException(f"no key written: {error}") from None
    name, value = f"{selector}._domainkey.{domain}", dkim.record_value(pem)
    pieces = " ".join(f'"{value[i:i + _ZONE_STRING]}"'
                      for i in range(0, len(value), _ZONE_STRING))
    click.echo(f"Wrote the private key to {path.resolve()} (mode 0600).\n\n"
               "Publish this DNS TXT record:\n"
               f"  name:  {name}\n"
               f"  value: {value}\n\n"
               f"In a zone file: {name}. IN TXT ( {pieces} )\n\n"
               "Then set:\n"
               f"  CAPTURE_DKIM_DOMAIN={domain}\n"
               f"  CAPTURE_DKIM_SELECTOR={selector}\n"
               f"  CAPTURE_DKIM_KEY_FILE={path.resolve()}")
