"""A real IMAP server for the bounce mailbox tests: Debian's dovecot, started on a free
loopback port with a throw-away configuration, one passwd-file user and a maildir in
a temporary folder. It fails with dovecot's log when it cannot start: never skipped."""

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "s3cret pass"

_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = capture-test-{port}
log_path = {root}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dovecot:
    """One running dovecot: its port, a client to append and look, and stop()."""

    def __init__(self, tls: bool = False) -> None:
        # Outside pytest's private folders: dovecot's mail processes run as another
        # user when the tests run as root (dovecot never delivers mail as root).
        self.root = Path(tempfile.mkdtemp(prefix="capture-dovecot-"))
        self.root.chmod(0o755)
        self.port = _free_port()
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        else:
            uid, gid = os.getuid(), os.getgid()
        (self.root / "mail").mkdir()
        os.chown(self.root / "mail", uid, gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        self.config = self.root / "dovecot.conf"
        ssl_lines = "ssl = no"
        if tls:
            # A self-signed certificate for 127.0.0.1: the client trusts this file alone.
            self.certificate = self.root / "cert.pem"
            key = self.root / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", str(key), "-out", str(self.certificate)],
                           check=True, capture_output=True)
            ssl_lines = (f"ssl = yes\nssl_cert = <{self.certificate}\n"
                         f"ssl_key = <{key}")
        self.config.write_text(_CONFIG.format(root=self.root, port=self.port, uid=uid,
                                              gid=gid, ssl=ssl_lines))
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._wait()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else "(no log written)"

    def _wait(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace")
                raise RuntimeError(f"dovecot stopped at once:\n{output}\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on {self.port}:\n{self.log()}")

    def url(self, folder: str = "INBOX", password: str = PASSWORD) -> str:
        from urllib.parse import quote
        return f"imap://{USER}:{quote(password)}@127.0.0.1:{self.port}/{folder}"

    def client(self) -> imaplib.IMAP4:
        connection = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        connection.login(USER, PASSWORD)
        return connection

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        connection = self.client()
        try:
            for message in messages:
                status, data = connection.append(folder, None, None, message)
                assert status == "OK", data
        finally:
            connection.logout()

    def subjects(self, folder: str) -> list[str]:
        """The Subject of each message in a folder ([] when it does not exist)."""
        connection = self.client()
        try:
            status, _ = connection.select(folder, readonly=True)
            if status != "OK":
                return []
            _, data = connection.uid("SEARCH", None, "ALL")
            found = []
            for uid in (data[0] or b"").split():
                _, fetched = connection.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                header = fetched[0][1].decode().strip()
                found.append(header.partition(":")[2].strip())
            return found
        finally:
            connection.logout()

    def flags(self, folder: str = "INBOX") -> list[str]:
        connection = self.client()
        try:
            connection.select(folder, readonly=True)
            _, data = connection.uid("FETCH", "1:*", "(FLAGS)")
            return [item.decode() for item in data if item]
        finally:
            connection.logout()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        shutil.rmtree(self.root, ignore_errors=True)
