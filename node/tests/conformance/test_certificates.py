"""Conformance of Coffer's certificates API with the official
azure-keyvault-certificates SDK (unchanged), against a 3-node cluster.

Every public ``CertificateClient`` method is exercised: create with issuer
Self through the SDK's real poller, Unknown + merge with a chain signed by a
test CA made with ``cryptography``, imports of PFX (with and without
password) and PEM, the downloaded secret (PFX/PEM) loaded by
``cryptography`` with a key matching the certificate, and the 400s of a
wrong PFX password and of a key that does not match (nothing created).

Environment: COFFER_VAULT_URL, COFFER_TOKEN, COFFER_CACERT (see test_secrets.py).
"""

import base64
import datetime
import hashlib
import os
import subprocess
import time
import uuid

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import (
    AdministratorContact,
    CertificateClient,
    CertificateContact,
    CertificateContentType,
    CertificatePolicy,
    KeyVaultCertificate,
    WellKnownIssuerNames,
)
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

VAULT_URL = os.environ.get("COFFER_VAULT_URL")
COFFER_BIN = os.environ.get("COFFER_BIN")
TOKEN = os.environ.get("COFFER_TOKEN")
CACERT = os.environ.get("COFFER_CACERT")

pytestmark = pytest.mark.skipif(
    not (VAULT_URL and TOKEN),
    reason="set COFFER_VAULT_URL and COFFER_TOKEN (and COFFER_CACERT) to run against a node",
)

FAST_POLL = {"_polling_interval": 0.2}


class StaticTokenCredential:
    """A TokenCredential handing out the Coffer token."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self):
        pass


def _kwargs():
    kwargs = {"verify_challenge_resource": False}
    if CACERT:
        kwargs["connection_verify"] = CACERT
    return kwargs


@pytest.fixture(scope="session")
def client():
    with CertificateClient(VAULT_URL, StaticTokenCredential(TOKEN), **_kwargs()) as c:
        yield c


@pytest.fixture(scope="session")
def secrets():
    with SecretClient(VAULT_URL, StaticTokenCredential(TOKEN), **_kwargs()) as c:
        yield c


@pytest.fixture(scope="session")
def keys():
    with KeyClient(VAULT_URL, StaticTokenCredential(TOKEN), **_kwargs()) as c:
        yield c


@pytest.fixture(scope="session")
def prefix(client):
    p = "cert-" + uuid.uuid4().hex[:10]
    yield p
    for props in client.list_properties_of_certificates():
        if props.name.startswith(p):
            try:
                client.begin_delete_certificate(props.name, **FAST_POLL).result()
            except HttpResponseError:
                pass
    for deleted in client.list_deleted_certificates():
        if deleted.name.startswith(p):
            try:
                client.purge_deleted_certificate(deleted.name)
            except HttpResponseError:
                pass


_counter = iter(range(1_000_000))


@pytest.fixture
def name(prefix):
    return f"{prefix}-{next(_counter)}"


def self_policy(subject="CN=app.coffer.test", **kwargs):
    return CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self,
        subject=subject,
        san_dns_names=["app.coffer.test", "www.coffer.test"],
        validity_in_months=6,
        **kwargs,
    )


def create_self(client, name, tags=None, **policy_kwargs):
    poller = client.begin_create_certificate(name, self_policy(**policy_kwargs), tags=tags)
    cert = poller.result()
    assert isinstance(cert, KeyVaultCertificate), cert
    return cert


def public_der(key):
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_create_self_signed_through_the_real_poller(client, secrets, keys, name):
    cert = create_self(client, name, tags={"team": "platform"})
    assert cert.name == name
    assert cert.policy.issuer_name == "Self"
    x = x509.load_der_x509_certificate(bytes(cert.cer))
    assert x.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "app.coffer.test"
    sans = x.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["app.coffer.test", "www.coffer.test"]
    # x5t is the SHA-1 thumbprint of the DER.
    assert bytes(cert.properties.x509_thumbprint) == hashlib.sha1(bytes(cert.cer)).digest()
    assert cert.properties.tags == {"team": "platform"}
    # The key and secret share the certificate's version.
    assert cert.key_id.endswith(f"/keys/{name}/{cert.properties.version}")
    assert cert.secret_id.endswith(f"/secrets/{name}/{cert.properties.version}")
    key = keys.get_key(name, cert.properties.version)
    assert key.properties.managed is True
    # The downloaded secret is a PFX without password whose key matches.
    secret = secrets.get_secret(name)
    assert secret.properties.content_type == "application/x-pkcs12"
    assert secret.properties.managed is True
    assert secret.properties.key_id == cert.key_id
    pkey, leaf, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
    assert leaf.public_bytes(serialization.Encoding.DER) == bytes(cert.cer)
    assert public_der(pkey) == public_der(leaf)
    op = client.get_certificate_operation(name)
    assert op.status.lower() == "completed"
    assert op.target.endswith(f"/certificates/{name}")


def test_pem_secret_and_out_content_type(client, secrets, name):
    cert = create_self(client, name, content_type=CertificateContentType.pem)
    secret = secrets.get_secret(name)
    assert secret.value.startswith("-----BEGIN PRIVATE KEY-----\n")
    pkey = serialization.load_pem_private_key(secret.value.encode(), None)
    leaf = x509.load_pem_x509_certificate(secret.value.encode())
    assert leaf.public_bytes(serialization.Encoding.DER) == bytes(cert.cer)
    assert public_der(pkey) == public_der(leaf)


def test_managed_secret_and_key_refuse_direct_writes(client, secrets, keys, name):
    create_self(client, name)
    with pytest.raises(HttpResponseError) as e:
        secrets.set_secret(name, "overwrite")
    assert e.value.status_code == 403
    assert "managed by Key Vault" in e.value.message
    with pytest.raises(HttpResponseError) as e:
        keys.begin_delete_key(name).result()
    assert e.value.status_code == 403


def test_get_versions_update_and_policy(client, name):
    first = create_self(client, name)
    second = create_self(client, name)
    assert first.properties.version != second.properties.version
    assert client.get_certificate(name).properties.version == second.properties.version
    old = client.get_certificate_version(name, first.properties.version)
    assert bytes(old.cer) == bytes(first.cer)
    versions = {p.version for p in client.list_properties_of_certificate_versions(name)}
    assert versions == {first.properties.version, second.properties.version}
    names = [p.name for p in client.list_properties_of_certificates()]
    assert name in names

    updated = client.update_certificate_properties(name, enabled=False, tags={"a": "b"})
    assert updated.properties.enabled is False
    assert updated.properties.tags == {"a": "b"}

    policy = client.get_certificate_policy(name)
    assert policy.validity_in_months == 6
    assert policy.key_type == "RSA"
    assert policy.key_size == 2048
    # Members not sent stay as they were.
    changed = client.update_certificate_policy(name, CertificatePolicy(validity_in_months=3))
    assert changed.validity_in_months == 3
    assert changed.subject == "CN=app.coffer.test"
    assert client.get_certificate_policy(name).validity_in_months == 3


def test_delete_recover_purge_act_on_key_and_secret(client, secrets, keys, name):
    create_self(client, name)
    deleted = client.begin_delete_certificate(name, **FAST_POLL).result()
    assert deleted.name == name and deleted.recovery_id
    assert client.get_deleted_certificate(name).name == name
    assert name in [d.name for d in client.list_deleted_certificates()]
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret(name)
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name)
    recovered = client.begin_recover_deleted_certificate(name, **FAST_POLL).result()
    assert recovered.name == name
    assert secrets.get_secret(name).value
    assert keys.get_key(name).name == name
    client.begin_delete_certificate(name, **FAST_POLL).result()
    client.purge_deleted_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        secrets.get_deleted_secret(name)


def test_backup_and_restore(client, name):
    cert = create_self(client, name)
    blob = client.backup_certificate(name)
    client.begin_delete_certificate(name, **FAST_POLL).result()
    client.purge_deleted_certificate(name)
    restored = client.restore_certificate_backup(blob)
    assert restored.name == name
    assert restored.properties.version == cert.properties.version
    assert bytes(restored.cer) == bytes(cert.cer)


def make_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Coffer Test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def sign(ca_key, ca_cert, public_key, subject):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=10))
        .sign(ca_key, hashes.SHA256())
    )


def test_unknown_issuer_and_merge_with_a_ca_chain(client, secrets, name):
    policy = CertificatePolicy(issuer_name=WellKnownIssuerNames.unknown, subject="CN=merged.coffer.test")
    op = client.begin_create_certificate(name, policy).result()
    assert op.status.lower() == "inprogress"
    assert "Perform Merge" in op.status_details
    csr = x509.load_der_x509_csr(bytes(op.csr))
    assert csr.is_signature_valid
    assert client.get_certificate_operation(name).csr == op.csr
    ca_key, ca_cert = make_ca()
    # A certificate for another key is refused and changes nothing.
    stranger = sign(ca_key, ca_cert, ec.generate_private_key(ec.SECP256R1()).public_key(), csr.subject)
    with pytest.raises(HttpResponseError) as e:
        client.merge_certificate(name, [stranger.public_bytes(serialization.Encoding.DER)])
    assert e.value.status_code == 400
    assert client.get_certificate_operation(name).status.lower() == "inprogress"

    leaf = sign(ca_key, ca_cert, csr.public_key(), csr.subject)
    chain = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, ca_cert)]
    merged = client.merge_certificate(name, chain)
    assert bytes(merged.cer) == chain[0]
    assert client.get_certificate_operation(name).status.lower() == "completed"
    pkey, got_leaf, extra = pkcs12.load_key_and_certificates(
        base64.b64decode(secrets.get_secret(name).value), None
    )
    assert got_leaf.public_bytes(serialization.Encoding.DER) == chain[0]
    assert [c.public_bytes(serialization.Encoding.DER) for c in extra] == chain[1:]
    assert public_der(pkey) == public_der(leaf)
    ca_cert.public_key().verify(
        got_leaf.signature, got_leaf.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
    )


def test_cancel_and_delete_operation(client, name):
    policy = CertificatePolicy(issuer_name=WellKnownIssuerNames.unknown, subject="CN=cancel.coffer.test")
    client.begin_create_certificate(name, policy).result()
    cancelled = client.cancel_certificate_operation(name)
    assert cancelled.cancellation_requested is True
    assert cancelled.status.lower() == "cancelled"
    deleted = client.delete_certificate_operation(name)
    assert deleted.status.lower() == "cancelled"
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate_operation(name)


def self_signed_rsa(cn):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.mark.parametrize("password", [b"correct horse", None])
def test_import_pfx(client, secrets, name, password):
    key, cert = self_signed_rsa("imported.coffer.test")
    enc = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    pfx = pkcs12.serialize_key_and_certificates(b"imported", key, cert, None, enc)
    imported = client.import_certificate(
        name, pfx, password=password.decode() if password else None, tags={"src": "pfx"}
    )
    assert bytes(imported.cer) == cert.public_bytes(serialization.Encoding.DER)
    assert imported.policy.issuer_name == "Unknown"
    assert imported.policy.san_dns_names == ["imported.coffer.test"]
    pkey, leaf, _ = pkcs12.load_key_and_certificates(base64.b64decode(secrets.get_secret(name).value), None)
    assert public_der(pkey) == public_der(key)


def test_import_pem(client, secrets, name):
    key, cert = self_signed_rsa("pem.coffer.test")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    policy = CertificatePolicy.get_default()
    policy._content_type = CertificateContentType.pem
    imported = client.import_certificate(name, pem, policy=policy)
    assert bytes(imported.cer) == cert.public_bytes(serialization.Encoding.DER)
    value = secrets.get_secret(name).value
    assert public_der(serialization.load_pem_private_key(value.encode(), None)) == public_der(key)


def test_wrong_password_and_mismatched_key_are_400_and_create_nothing(client, name):
    key, cert = self_signed_rsa("bad.coffer.test")
    pfx = pkcs12.serialize_key_and_certificates(
        b"x", key, cert, None, serialization.BestAvailableEncryption(b"right")
    )
    with pytest.raises(HttpResponseError) as e:
        client.import_certificate(name, pfx, password="wrong")
    assert e.value.status_code == 400
    assert "PKCS#12" in e.value.message
    other, _ = self_signed_rsa("other.coffer.test")
    mismatched = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)
    policy = CertificatePolicy.get_default()
    policy._content_type = CertificateContentType.pem
    with pytest.raises(HttpResponseError) as e:
        client.import_certificate(name, mismatched, policy=policy)
    assert e.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate(name)


def test_create_while_pending_is_conflict(client, name):
    policy = CertificatePolicy(issuer_name=WellKnownIssuerNames.unknown, subject="CN=p.coffer.test")
    client.begin_create_certificate(name, policy).result()
    with pytest.raises(HttpResponseError) as e:
        client.begin_create_certificate(name, policy)
    assert e.value.status_code == 409
    client.delete_certificate_operation(name)


def test_contacts(client):
    contacts = [
        CertificateContact(email="ops@coffer.test", name="Ops", phone="+1 555 0100"),
        CertificateContact(email="sec@coffer.test", name="Security"),
    ]
    set_ = client.set_contacts(contacts)
    assert [c.email for c in set_] == ["ops@coffer.test", "sec@coffer.test"]
    got = client.get_contacts()
    assert [(c.email, c.name) for c in got] == [("ops@coffer.test", "Ops"), ("sec@coffer.test", "Security")]
    removed = client.delete_contacts()
    assert len(removed) == 2
    with pytest.raises(ResourceNotFoundError):
        client.get_contacts()


def test_issuers(client, prefix):
    iname = f"{prefix}-issuer"
    admin = AdministratorContact(first_name="Ada", last_name="Lovelace", email="ada@coffer.test", phone="1")
    created = client.create_issuer(
        iname, "Test", account_id="acct-1", password="never-returned", organization_id="org-1", admin_contacts=[admin]
    )
    assert created.provider == "Test"
    assert created.account_id == "acct-1"
    assert created.password is None
    assert created.admin_contacts[0].email == "ada@coffer.test"
    updated = client.update_issuer(iname, enabled=False)
    assert updated.enabled is False
    assert updated.account_id == "acct-1"
    assert iname in [i.name for i in client.list_properties_of_issuers()]
    assert client.get_issuer(iname).organization_id == "org-1"
    client.delete_issuer(iname)
    with pytest.raises(ResourceNotFoundError):
        client.get_issuer(iname)


@pytest.mark.skipif(not COFFER_BIN, reason="needs the coffer CLI (COFFER_BIN)")
def test_coffer_issuer_issues_through_the_real_poller(client, secrets, prefix):
    """A private CA made by `coffer cert ca create`, named by a Coffer
    issuer: the SDK's poller completes a create with that issuer, the leaf
    is signed by the CA with its OCSP responder and CRL embedded, and the
    PEM secret carries key, leaf and CA."""
    ca_name, issuer, leaf_name = f"{prefix}-root", f"{prefix}-ca", f"{prefix}-svc"
    subprocess.run(
        [COFFER_BIN, "cert", "ca", "create", ca_name, "--subject", "CN=Coffer SDK Root",
         "--issuer", issuer, "--addr", VAULT_URL, "--ca-cert", CACERT],
        env={**os.environ, "COFFER_TOKEN": TOKEN},
        check=True,
        capture_output=True,
    )
    got = client.get_issuer(issuer)
    assert got.provider == "Coffer"
    policy = CertificatePolicy(
        issuer_name=issuer,
        subject="CN=svc.coffer.test",
        san_dns_names=["svc.coffer.test"],
        validity_in_months=3,
        content_type=CertificateContentType.pem,
    )
    cert = client.begin_create_certificate(leaf_name, policy).result()
    assert isinstance(cert, KeyVaultCertificate), cert
    assert cert.policy.issuer_name == issuer
    root = x509.load_der_x509_certificate(bytes(client.get_certificate(ca_name).cer))
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = x509.load_der_x509_certificate(bytes(cert.cer))
    leaf.verify_directly_issued_by(root)
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp = [d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP]
    assert ocsp and ocsp[0].endswith(f"/{issuer.lower()}/ocsp"), ocsp
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value.endswith(f"/{issuer.lower()}/crl")
    secret = secrets.get_secret(leaf_name)
    chain = x509.load_pem_x509_certificates(secret.value.encode())
    assert [c.public_bytes(serialization.Encoding.DER) for c in chain] == [
        bytes(cert.cer), root.public_bytes(serialization.Encoding.DER)]
    key = serialization.load_pem_private_key(secret.value.encode(), None)
    assert public_der(key) == public_der(leaf)
    op = client.get_certificate_operation(leaf_name)
    assert op.status.lower() == "completed"
    assert op.issuer_name == issuer
