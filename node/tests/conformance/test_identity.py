"""Unchanged azure-identity credentials against Coffer's built-in issuer.

Each credential gets its token from one node (the authority) and reads a
secret with ``SecretClient`` on another node.

Environment:
    COFFER_NODE_URLS  comma-separated https://127.0.0.1:PORT of the nodes (>= 2)
    COFFER_TOKEN      root token (creates the apps through /v1/sys/identity)
    REQUESTS_CA_BUNDLE / COFFER_CACERT  the cluster CA (PEM)
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess
import time
import uuid
from urllib.parse import parse_qs, quote, urlparse

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CertificateCredential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    WorkloadIdentityCredential,
)
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

NODES = [u for u in os.environ.get("COFFER_NODE_URLS", "").split(",") if u]
TOKEN = os.environ.get("COFFER_TOKEN")
CACERT = os.environ.get("COFFER_CACERT")
COFFER_BIN = os.environ.get("COFFER_BIN")

pytestmark = pytest.mark.skipif(
    len(NODES) < 2 or not TOKEN,
    reason="set COFFER_NODE_URLS (two nodes or more) and COFFER_TOKEN",
)

ISSUER = "https://issuer.test.invalid"
SUBJECT = "system:serviceaccount:default:workload"
EXCHANGE_AUD = "api://AzureADTokenExchange"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def admin(method, path, body=None):
    r = requests.request(
        method,
        f"{NODES[0]}/v1/sys/identity{path}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json=body,
        verify=CACERT,
        timeout=30,
    )
    assert r.ok, f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def grant_secrets_user(object_id):
    """A principal opens nothing by identity alone: grant it Key Vault
    Secrets User on the vault (with the root token: break-glass)."""
    r = requests.put(
        f"{NODES[0]}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?api-version=7.4",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"properties": {"roleDefinitionId": SECRETS_USER, "principalId": object_id}},
        verify=CACERT,
        timeout=30,
    )
    assert r.status_code == 201, f"{r.status_code} {r.text}"


def new_app(prefix):
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    app = admin("POST", "/apps", {"name": name})
    grant_secrets_user(app["object_id"])
    return name, app["app"]["client_id"]


@pytest.fixture(scope="module")
def tenant_id():
    return admin("GET", "/tenant")["id"]


@pytest.fixture(scope="module")
def secret_name():
    """A secret written with the root token, read by every credential."""
    name = f"identity-{uuid.uuid4().hex[:8]}"
    r = requests.put(
        f"{NODES[0]}/secrets/{name}?api-version=7.4",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"value": "opened-by-an-identity"},
        verify=CACERT,
        timeout=30,
    )
    assert r.ok, r.text
    return name


def read_with(credential, secret_name, node=1):
    """Reads the secret on node `node` (the token came from node 0)."""
    client = SecretClient(
        NODES[node],
        credential,
        verify_challenge_resource=False,
        connection_verify=CACERT,
    )
    assert client.get_secret(secret_name).value == "opened-by-an-identity"


def test_client_secret_credential(tenant_id, secret_name):
    name, client_id = new_app("secret")
    secret = admin("POST", f"/apps/{name}/secrets", {"valid_days": 1})["secret"]
    cred = ClientSecretCredential(
        tenant_id,
        client_id,
        secret,
        authority=NODES[0],
        disable_instance_discovery=True,
        connection_verify=CACERT,
    )
    read_with(cred, secret_name)
    token = cred.get_token("https://vault.azure.net/.default")
    assert token.expires_on - time.time() > 3000
    # A wrong secret is an authentication error, not a crash.
    bad = ClientSecretCredential(
        tenant_id,
        client_id,
        "cfs.wrong",
        authority=NODES[0],
        disable_instance_discovery=True,
        connection_verify=CACERT,
    )
    with pytest.raises(ClientAuthenticationError) as e:
        bad.get_token("https://vault.azure.net/.default")
    assert "invalid client secret" in str(e.value)


def self_signed():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coffer-test-app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def test_certificate_credential(tenant_id, secret_name, tmp_path):
    name, client_id = new_app("cert")
    key, cert = self_signed()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    thumb = admin("POST", f"/apps/{name}/certificates", {"certificate": cert_pem.decode()})
    assert thumb["thumbprint"] == cert.fingerprint(hashes.SHA1()).hex().upper()
    path = tmp_path / "app.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert_pem
    )
    cred = CertificateCredential(
        tenant_id,
        client_id,
        certificate_path=str(path),
        authority=NODES[0],
        disable_instance_discovery=True,
        connection_verify=CACERT,
    )
    read_with(cred, secret_name, node=2 if len(NODES) > 2 else 1)


class ExternalIssuer:
    """An external OIDC issuer (a Kubernetes API server, a CI system)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-issuer-1"

    def jwks(self):
        pub = self.key.public_key().public_numbers()
        as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "n": b64url(as_bytes(pub.n)),
                    "e": b64url(as_bytes(pub.e)),
                }
            ]
        }

    def token(self, subject=SUBJECT, audience=EXCHANGE_AUD):
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {"iss": ISSUER, "sub": subject, "aud": audience, "iat": now, "exp": now + 3600}
        signing_input = (
            b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        )
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)


@pytest.fixture(scope="module")
def federated_app():
    issuer = ExternalIssuer()
    name, client_id = new_app("workload")
    admin(
        "POST",
        f"/apps/{name}/federated",
        {"name": "k8s", "issuer": ISSUER, "subject": SUBJECT, "jwks": issuer.jwks()},
    )
    return issuer, client_id


def test_client_assertion_credential(tenant_id, secret_name, federated_app):
    issuer, client_id = federated_app
    cred = ClientAssertionCredential(
        tenant_id,
        client_id,
        lambda: issuer.token(),
        authority=NODES[0],
        connection_verify=CACERT,
    )
    read_with(cred, secret_name)
    wrong = ClientAssertionCredential(
        tenant_id,
        client_id,
        lambda: issuer.token(subject="system:serviceaccount:default:intruder"),
        authority=NODES[0],
        connection_verify=CACERT,
    )
    with pytest.raises(ClientAuthenticationError):
        wrong.get_token("https://vault.azure.net/.default")


def test_workload_identity_credential(tenant_id, secret_name, federated_app, tmp_path):
    issuer, client_id = federated_app
    token_file = tmp_path / "token"
    # As a kubelet writes it: with a trailing newline.
    token_file.write_text(issuer.token() + "\n")
    cred = WorkloadIdentityCredential(
        tenant_id=tenant_id,
        client_id=client_id,
        token_file_path=str(token_file),
        authority=NODES[0],
        connection_verify=CACERT,
    )
    read_with(cred, secret_name)


def test_default_azure_credential_from_environment_alone(secret_name, monkeypatch):
    name, client_id = new_app("default")
    secret = admin("POST", f"/apps/{name}/secrets", {})["secret"]
    # Tenant `adfs`: the SDKs skip instance discovery and the tenant check.
    monkeypatch.setenv("AZURE_TENANT_ID", "adfs")
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", NODES[0])
    read_with(DefaultAzureCredential(), secret_name)


def totp_code(secret_b32, at=None):
    """RFC 6238 (SHA-1, 6 digits, 30 s), as an authenticator app computes it."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def headless_chromium():
    """Debian's chromium + chromedriver (scripts/test.sh installs them)."""
    from selenium import webdriver

    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "install chromium and chromium-driver (scripts/test.sh does)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # The nodes' certificates come from the test cluster's own CA.
        "--ignore-certificate-errors",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_device_code_credential_with_password_and_totp_in_a_browser(tenant_id, secret_name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, client_id = new_app("device")
    user = f"dev-{uuid.uuid4().hex[:8]}@contoso"
    password = "correct horse battery staple"
    grant_secrets_user(admin("POST", "/users", {"name": user, "password": password})["object_id"])
    enrolment = admin("POST", f"/users/{quote(user)}/mfa")
    secret = parse_qs(urlparse(enrolment["otpauth_uri"]).query)["secret"][0]

    browser = headless_chromium()
    shown = {}

    def play_the_user(verification_uri, user_code, expires_on):
        shown["uri"] = verification_uri
        browser.get(verification_uri)
        browser.find_element(By.ID, "user_code").send_keys(user_code)
        browser.find_element(By.ID, "username").send_keys(user)
        browser.find_element(By.ID, "password").send_keys(password)
        browser.find_element(By.ID, "otp").send_keys(totp_code(secret))
        browser.find_element(By.ID, "submit").click()
        # The answer is a new page: wait for it, success or error.
        WebDriverWait(browser, 20).until(
            lambda b: b.find_elements(By.ID, "done") or b.find_elements(By.ID, "error")
        )
        errors = browser.find_elements(By.ID, "error")
        assert not errors, errors[0].text
        assert "signed in" in browser.find_element(By.ID, "done").text

    try:
        cred = DeviceCodeCredential(
            client_id=client_id,
            tenant_id=tenant_id,
            authority=NODES[0],
            disable_instance_discovery=True,
            prompt_callback=play_the_user,
            connection_verify=CACERT,
        )
        read_with(cred, secret_name)
    finally:
        browser.quit()
    assert shown["uri"] == f"{NODES[0]}/device"


def test_managed_identity_credential_through_coffer_agent(tenant_id, secret_name, tmp_path, monkeypatch):
    assert COFFER_BIN, "COFFER_BIN must name the coffer binary"
    # The host's machine identity: an app with the machine certificate.
    name, client_id = new_app("host")
    key, cert = self_signed()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    admin("POST", f"/apps/{name}/certificates", {"certificate": cert_pem.decode()})
    (tmp_path / "machine.pem").write_bytes(cert_pem)
    (tmp_path / "machine-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    header_file = tmp_path / "identity-header"
    agent = subprocess.Popen(
        [
            COFFER_BIN, "agent",
            "--addr", NODES[0], "--ca-cert", CACERT,
            "--tenant", tenant_id, "--client-id", client_id,
            "--cert", str(tmp_path / "machine.pem"),
            "--key", str(tmp_path / "machine-key.pem"),
            "--header-file", str(header_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = None
        deadline = time.time() + 30
        while endpoint is None and time.time() < deadline:
            line = agent.stdout.readline()
            assert line, f"the agent exited: {agent.wait()}"
            if line.startswith("IDENTITY_ENDPOINT="):
                endpoint = line.strip().split("=", 1)[1]
        assert endpoint and endpoint.startswith("http://127.0.0.1:")
        header = header_file.read_text()
        assert oct(header_file.stat().st_mode & 0o777) == "0o600"
        # Without the header value the agent refuses.
        r = requests.get(endpoint, params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"}, timeout=10)
        assert r.status_code == 401 and "access_token" not in r.json()
        monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", header)
        # The workload's code: no secret, no configuration.
        read_with(ManagedIdentityCredential(), secret_name)
    finally:
        agent.terminate()
        agent.wait(timeout=10)
