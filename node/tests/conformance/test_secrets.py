"""Conformance of Coffer's secrets API with the official azure-keyvault-secrets SDK.

Every public ``SecretClient`` method is exercised against one Coffer node.

Environment:
    COFFER_VAULT_URL  https://127.0.0.1:PORT of one unsealed node (required)
    COFFER_TOKEN      bearer token with access to the default vault (required)
    COFFER_CACERT     CA certificate (PEM) of the node's API certificate

Run:  pip install -r requirements.txt && pytest -q node/tests/conformance
Names use a per-run prefix; everything created is deleted and purged at the end.
"""

import datetime
import os
import re
import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest
from azure.keyvault.secrets import DeletedSecret, KeyVaultSecret, SecretClient, SecretProperties

try:  # azure-core >= 1.31
    from azure.core.credentials import AccessTokenInfo
except ImportError:  # pragma: no cover - older azure-core
    AccessTokenInfo = None

VAULT_URL = os.environ.get("COFFER_VAULT_URL")
TOKEN = os.environ.get("COFFER_TOKEN")
CACERT = os.environ.get("COFFER_CACERT")

pytestmark = pytest.mark.skipif(
    not (VAULT_URL and TOKEN),
    reason="set COFFER_VAULT_URL and COFFER_TOKEN (and COFFER_CACERT) to run against a node",
)

VERSION_RE = re.compile(r"^[0-9a-f]{32}$")
# The SDK's delete/recover pollers wait 2 s between polls by default.
FAST_POLL = {"_polling_interval": 0.2}


class StaticTokenCredential:
    """A TokenCredential handing out the Coffer token; records the scopes asked for."""

    def __init__(self, token):
        self._token = token
        self.scopes = []

    def _expiry(self):
        return int(time.time()) + 3600

    def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs):
        self.scopes.extend(scopes)
        return AccessToken(self._token, self._expiry())

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    if AccessTokenInfo is not None:

        def get_token_info(self, *scopes, options=None):
            self.scopes.extend(scopes)
            return AccessTokenInfo(self._token, self._expiry())


def utc(seconds_from_now):
    """A whole-second UTC datetime (Key Vault stores Unix seconds)."""
    now = int(time.time()) + seconds_from_now
    return datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)


@pytest.fixture(scope="session")
def credential():
    return StaticTokenCredential(TOKEN)


@pytest.fixture(scope="session")
def client(credential):
    kwargs = {"verify_challenge_resource": False}
    if CACERT:
        kwargs["connection_verify"] = CACERT
    with SecretClient(VAULT_URL, credential, **kwargs) as c:
        yield c


@pytest.fixture(scope="session")
def prefix(client):
    p = "conf-" + uuid.uuid4().hex[:10]
    yield p
    cleanup(client, p)


def cleanup(client, p):
    """Deletes and purges whatever this run left behind (best effort)."""
    for props in client.list_properties_of_secrets():
        if props.name.startswith(p):
            try:
                client.begin_delete_secret(props.name, **FAST_POLL).result()
            except HttpResponseError:
                pass
    for deleted in client.list_deleted_secrets():
        if deleted.name.startswith(p):
            try:
                client.purge_deleted_secret(deleted.name)
            except HttpResponseError:
                pass


_counter = iter(range(1_000_000))


@pytest.fixture
def name(prefix):
    return f"{prefix}-{next(_counter)}"


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def delete(client, name):
    return client.begin_delete_secret(name, **FAST_POLL).result()


# --- set / get ----------------------------------------------------------------


def test_set_secret_with_all_properties_and_get(client, credential, name):
    nbf, exp = utc(-60), utc(86400)
    tags = {"env": "test", "owner": "conformance"}
    secret = client.set_secret(
        name,
        "v1-value",
        enabled=True,
        tags=tags,
        content_type="text/plain",
        not_before=nbf,
        expires_on=exp,
    )
    assert isinstance(secret, KeyVaultSecret)
    assert secret.name == name
    assert secret.value == "v1-value"
    assert VERSION_RE.match(secret.properties.version)
    assert secret.properties.enabled is True
    assert secret.properties.tags == tags
    assert secret.properties.content_type == "text/plain"
    assert secret.properties.not_before == nbf
    assert secret.properties.expires_on == exp
    assert secret.properties.created_on is not None
    assert secret.properties.updated_on is not None
    assert secret.properties.recovery_level
    assert secret.properties.vault_url.rstrip("/") == VAULT_URL.rstrip("/")
    assert secret.id == f"{VAULT_URL.rstrip('/')}/secrets/{name}/{secret.properties.version}"
    assert any(s.endswith("/.default") for s in credential.scopes), credential.scopes

    latest = client.get_secret(name)
    assert latest.value == "v1-value"
    assert latest.properties.version == secret.properties.version
    assert latest.properties.tags == tags

    pinned = client.get_secret(name, secret.properties.version)
    assert pinned.value == "v1-value"


def test_names_are_case_insensitive(client, name):
    client.set_secret(name, "x")
    assert client.get_secret(name.upper()).value == "x"


def test_get_specific_version_after_new_version(client, name):
    first = client.set_secret(name, "first")
    second = client.set_secret(name, "second")
    assert first.properties.version != second.properties.version
    assert client.get_secret(name).value == "second"
    assert client.get_secret(name, first.properties.version).value == "first"
    assert client.get_secret(name, second.properties.version).value == "second"


def test_list_properties_of_secret_versions(client, name):
    versions = {client.set_secret(name, f"v{i}").properties.version for i in range(3)}
    listed = list(client.list_properties_of_secret_versions(name))
    assert all(isinstance(p, SecretProperties) for p in listed)
    assert {p.version for p in listed} == versions
    assert all(p.name == name for p in listed)


def test_send_request_raw(client, name):
    client.set_secret(name, "raw")
    # send_request resolves the relative URL against the vault and adds api-version.
    resp = client.send_request(HttpRequest("GET", f"/secrets/{name}"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["value"] == "raw"
    assert body["id"].startswith(f"{VAULT_URL.rstrip('/')}/secrets/{name}/")


# --- update ---------------------------------------------------------------------


def test_update_secret_properties(client, name):
    created = client.set_secret(name, "keep-me", tags={"a": "1"})
    exp = utc(7200)
    updated = client.update_secret_properties(
        name,
        created.properties.version,
        content_type="application/json",
        tags={"b": "2"},
        expires_on=exp,
    )
    assert isinstance(updated, SecretProperties)
    assert updated.version == created.properties.version
    assert updated.content_type == "application/json"
    assert updated.tags == {"b": "2"}
    assert updated.expires_on == exp
    fetched = client.get_secret(name)
    assert fetched.value == "keep-me"
    assert fetched.properties.content_type == "application/json"

    # Without a version the latest version is updated.
    latest = client.update_secret_properties(name, enabled=True, tags={"c": "3"})
    assert latest.version == created.properties.version
    assert latest.tags == {"c": "3"}


def test_disabled_secret_get_is_forbidden(client, name):
    client.set_secret(name, "hidden")
    client.update_secret_properties(name, enabled=False)
    with pytest.raises(HttpResponseError) as err:
        client.get_secret(name)
    assert err.value.status_code == 403
    assert "hidden" not in str(err.value)
    # Metadata is still listed, and re-enabling gives the value back.
    assert any(p.version for p in client.list_properties_of_secret_versions(name))
    client.update_secret_properties(name, enabled=True)
    assert client.get_secret(name).value == "hidden"


def test_secret_created_disabled_is_forbidden(client, name):
    client.set_secret(name, "off", enabled=False)
    with pytest.raises(HttpResponseError) as err:
        client.get_secret(name)
    assert err.value.status_code == 403


# --- list / paging ------------------------------------------------------------------


def test_list_properties_of_secrets_pages_with_next_link(client, prefix):
    page_prefix = f"{prefix}-page"
    created = {f"{page_prefix}-{i:02d}" for i in range(27)}
    for n in sorted(created):
        client.set_secret(n, "paged", tags={"page": "yes"})

    pages = list(client.list_properties_of_secrets().by_page())
    # 27 of ours alone exceed the default page size of 25.
    assert len(pages) >= 2
    seen = [p for page in pages for p in page]
    assert all(isinstance(p, SecretProperties) for p in seen)
    ours = {p.name for p in seen if p.name.startswith(page_prefix)}
    assert ours == created
    assert len({p.name for p in seen}) == len(seen), "no item twice across pages"
    assert all(p.tags == {"page": "yes"} for p in seen if p.name in created)

    # Pages are single-use iterators: materialise each one once.
    small = [list(page) for page in client.list_properties_of_secrets(max_page_size=10).by_page()]
    assert len(small) >= 3
    assert all(len(page) <= 10 for page in small)
    assert {p.name for page in small for p in page if p.name.startswith(page_prefix)} == created


# --- delete / recover / purge -------------------------------------------------------


def test_delete_get_deleted_and_recover(client, name):
    original = client.set_secret(name, "recover-me", tags={"k": "v"})
    poller = client.begin_delete_secret(name, **FAST_POLL)
    deleted = poller.result()
    assert isinstance(deleted, DeletedSecret)
    assert deleted.name == name
    assert deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    assert deleted.deleted_date is not None
    assert deleted.scheduled_purge_date > deleted.deleted_date

    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)

    got = client.get_deleted_secret(name)
    assert got.name == name
    assert got.recovery_id == deleted.recovery_id
    assert got.properties.tags == {"k": "v"}

    assert name in {d.name for d in client.list_deleted_secrets()}

    recovered = client.begin_recover_deleted_secret(name, **FAST_POLL).result()
    assert isinstance(recovered, SecretProperties)
    assert recovered.name == name
    again = client.get_secret(name)
    assert again.value == "recover-me"
    assert again.properties.version == original.properties.version
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)


def test_set_on_soft_deleted_name_conflicts(client, name):
    client.set_secret(name, "x")
    delete(client, name)
    with pytest.raises(ResourceExistsError) as err:
        client.set_secret(name, "y")
    assert err.value.status_code == 409


def test_purge_deleted_secret(client, name):
    client.set_secret(name, "purge-me")
    delete(client, name)
    assert client.purge_deleted_secret(name) is None

    def gone():
        try:
            client.get_deleted_secret(name)
            return False
        except ResourceNotFoundError:
            return True

    assert wait_until(gone)
    assert name not in {d.name for d in client.list_deleted_secrets()}
    # The name is free again: a brand-new secret with one version.
    fresh = client.set_secret(name, "new-life")
    versions = list(client.list_properties_of_secret_versions(name))
    assert [v.version for v in versions] == [fresh.properties.version]


# --- backup / restore ----------------------------------------------------------------


def test_backup_and_restore_after_purge(client, name):
    # Values long enough that finding them in the sealed blob means a leak,
    # not chance: a two-byte value turns up in ~2 KB of ciphertext in about
    # one run in twenty.
    v1, v2 = "backup-value-1-" + "a" * 24, "backup-value-2-" + "b" * 24
    first = client.set_secret(name, v1, content_type="text/plain", tags={"t": "1"})
    second = client.set_secret(name, v2)
    blob = client.backup_secret(name)
    assert isinstance(blob, bytes) and len(blob) > 0
    assert v1.encode() not in blob and v2.encode() not in blob, "backup must be protected"

    delete(client, name)
    client.purge_deleted_secret(name)

    def purged():
        try:
            client.get_deleted_secret(name)
            return False
        except ResourceNotFoundError:
            return True

    assert wait_until(purged)
    restored = client.restore_secret_backup(blob)
    assert isinstance(restored, SecretProperties)
    assert restored.name == name
    assert client.get_secret(name).value == v2
    assert client.get_secret(name, first.properties.version).value == v1
    versions = {v.version for v in client.list_properties_of_secret_versions(name)}
    assert versions == {first.properties.version, second.properties.version}


def test_restore_over_existing_secret_conflicts(client, name):
    client.set_secret(name, "exists")
    blob = client.backup_secret(name)
    with pytest.raises(ResourceExistsError):
        client.restore_secret_backup(blob)


def test_restore_of_garbage_is_bad_request(client):
    with pytest.raises(HttpResponseError) as err:
        client.restore_secret_backup(b"not a backup blob")
    assert err.value.status_code == 400


# --- errors ---------------------------------------------------------------------------


def test_missing_secret_raises_not_found(client, prefix):
    missing = f"{prefix}-missing"
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_secret(missing)
    assert err.value.status_code == 404
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(missing)
    with pytest.raises(ResourceNotFoundError):
        client.backup_secret(missing)
    with pytest.raises(ResourceNotFoundError):
        client.begin_delete_secret(missing, **FAST_POLL).result()


def test_unknown_version_raises_not_found(client, name):
    client.set_secret(name, "x")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name, "0" * 32)
