"""Key Vault RBAC through the unchanged azure-keyvault-administration SDK.

An administrator application (Key Vault Administrator, granted once with the
root token: break-glass) manages roles with ``KeyVaultAccessControlClient``;
applications holding built-in or custom roles are allowed exactly what those
roles say, on every node.

Environment:
    COFFER_NODE_URLS  comma-separated https://127.0.0.1:PORT of the nodes (3)
    COFFER_TOKEN      root token
    COFFER_CACERT     the cluster CA (PEM)
"""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import struct
import time
import uuid
from urllib.parse import parse_qs, quote, urlparse

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential, DeviceCodeCredential
from azure.keyvault.administration import (
    KeyVaultAccessControlClient,
    KeyVaultBackupClient,
    KeyVaultDataAction,
    KeyVaultPermission,
    KeyVaultRoleScope,
    KeyVaultSetting,
    KeyVaultSettingsClient,
)
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient

NODES = [u for u in os.environ.get("COFFER_NODE_URLS", "").split(",") if u]
TOKEN = os.environ.get("COFFER_TOKEN")
CACERT = os.environ.get("COFFER_CACERT")
BACKUP_DIR = os.environ.get("COFFER_BACKUP_DIR")

pytestmark = pytest.mark.skipif(
    len(NODES) < 3 or not TOKEN,
    reason="set COFFER_NODE_URLS (three nodes) and COFFER_TOKEN",
)

ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


class RootToken:
    """The root token as an azure-core credential (break-glass bootstrap)."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken(TOKEN, int(time.time()) + 3600)


def sdk(cls, credential, node=0):
    return cls(NODES[node], credential, verify_challenge_resource=False, connection_verify=CACERT)


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


class App:
    """An application principal with a client secret and its credential."""

    def __init__(self, tenant_id, prefix):
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        app = admin("POST", "/apps", {"name": self.name})
        self.object_id = app["object_id"]
        secret = admin("POST", f"/apps/{self.name}/secrets", {})["secret"]
        self.credential = ClientSecretCredential(
            tenant_id,
            app["app"]["client_id"],
            secret,
            authority=NODES[0],
            disable_instance_discovery=True,
            connection_verify=CACERT,
        )


@pytest.fixture(scope="module")
def tenant_id():
    return admin("GET", "/tenant")["id"]


@pytest.fixture(scope="module")
def administrator(tenant_id):
    """An app holding Key Vault Administrator, granted with the root token."""
    app = App(tenant_id, "kv-admin")
    root = sdk(KeyVaultAccessControlClient, RootToken())
    a = root.create_role_assignment(KeyVaultRoleScope.GLOBAL, ADMINISTRATOR, app.object_id)
    assert a.properties.principal_id == app.object_id
    return app


@pytest.fixture(scope="module")
def access(administrator):
    return sdk(KeyVaultAccessControlClient, administrator.credential)


def forbidden(call):
    with pytest.raises(HttpResponseError) as e:
        call()
    assert e.value.status_code == 403, e.value
    assert "ForbiddenByRbac" in str(e.value.message) or "Forbidden" in str(e.value), e.value
    return e.value


def test_built_in_roles_are_listed_with_their_real_ids(access):
    roles = {d.name: d for d in access.list_role_definitions(KeyVaultRoleScope.GLOBAL)}
    assert roles[SECRETS_USER].role_name == "Key Vault Secrets User"
    assert roles[ADMINISTRATOR].role_type == "AKVBuiltInRole"
    assert "Microsoft.KeyVault/vaults/secrets/getSecret/action" in roles[SECRETS_USER].permissions[0].data_actions
    assert roles["a290e904-7015-4bba-90c8-60543313cdb4"].role_name == "Managed HSM Administrator"


def test_custom_role_assign_list_with_filters_and_delete(tenant_id, access, administrator):
    reader = App(tenant_id, "custom")
    role_id = uuid.uuid4()
    definition = access.set_role_definition(
        KeyVaultRoleScope.GLOBAL,
        name=role_id,
        role_name=f"secret-metadata-{role_id.hex[:6]}",
        description="reads secret metadata and values, nothing else",
        permissions=[
            KeyVaultPermission(
                data_actions=["Microsoft.KeyVault/vaults/secrets/*"],
                not_data_actions=[
                    "Microsoft.KeyVault/vaults/secrets/setSecret/action",
                    "Microsoft.KeyVault/vaults/secrets/delete",
                    "Microsoft.KeyVault/vaults/secrets/purge/action",
                ],
            )
        ],
    )
    assert definition.name == str(role_id)
    assert definition.role_type == "CustomRole"
    got = access.get_role_definition(KeyVaultRoleScope.GLOBAL, role_id)
    assert got.permissions[0].not_data_actions[0].endswith("setSecret/action")

    assignment = access.create_role_assignment("/secrets", definition.id, reader.object_id)
    assert assignment.properties.scope == "/secrets"
    mine = list(
        access.list_role_assignments(
            KeyVaultRoleScope.GLOBAL, filter=f"principalId eq '{reader.object_id}'"
        )
    )
    assert [a.name for a in mine] == [assignment.name]
    # atScope() at the vault root: only assignments at / (the administrator's).
    at_root = list(access.list_role_assignments(KeyVaultRoleScope.GLOBAL, filter="atScope()"))
    assert administrator.object_id in {a.properties.principal_id for a in at_root}
    assert assignment.name not in {a.name for a in at_root}
    at_secrets = list(access.list_role_assignments("/secrets", filter="atScope()"))
    assert assignment.name in {a.name for a in at_secrets}

    name = f"custom-{uuid.uuid4().hex[:8]}"
    sdk(SecretClient, administrator.credential).set_secret(name, "x" * 20000)
    client = sdk(SecretClient, reader.credential, node=1)
    assert client.get_secret(name).value == "x" * 20000
    forbidden(lambda: client.set_secret(name, "overwritten"))
    forbidden(lambda: client.begin_delete_secret(name))

    # A role still assigned cannot be deleted; after unassigning it can.
    with pytest.raises(HttpResponseError) as e:
        access.delete_role_definition(KeyVaultRoleScope.GLOBAL, role_id)
    assert e.value.status_code == 409
    access.delete_role_assignment("/secrets", assignment.name)
    access.delete_role_definition(KeyVaultRoleScope.GLOBAL, role_id)
    forbidden(lambda: sdk(SecretClient, reader.credential, node=2).get_secret(name))


def test_secrets_user_reads_but_cannot_set(tenant_id, access, administrator):
    name = f"su-{uuid.uuid4().hex[:8]}"
    sdk(SecretClient, administrator.credential).set_secret(name, "opened")
    user = App(tenant_id, "secrets-user")
    access.create_role_assignment(KeyVaultRoleScope.GLOBAL, SECRETS_USER, user.object_id)
    client = sdk(SecretClient, user.credential, node=2)
    assert client.get_secret(name).value == "opened"
    err = forbidden(lambda: client.set_secret(name, "changed"))
    assert "secrets/setSecret/action" in str(err)
    assert sdk(SecretClient, administrator.credential).get_secret(name).value == "opened"
    # No keys at all.
    forbidden(lambda: sdk(KeyClient, user.credential).get_key("anything"))


def test_crypto_user_signs_but_cannot_delete(tenant_id, access, administrator):
    name = f"cu-{uuid.uuid4().hex[:8]}"
    key = sdk(KeyClient, administrator.credential).create_ec_key(name, curve="P-256")
    user = App(tenant_id, "crypto-user")
    access.create_role_assignment(f"/keys/{name}", CRYPTO_USER, user.object_id)
    crypto = CryptographyClient(
        key.id, user.credential, verify_challenge_resource=False, connection_verify=CACERT
    )
    digest = bytes(range(32))
    signed = crypto.sign(SignatureAlgorithm.es256, digest)
    assert crypto.verify(SignatureAlgorithm.es256, digest, signed.signature).is_valid
    keys = sdk(KeyClient, user.credential, node=1)
    forbidden(lambda: keys.begin_delete_key(name))
    # The assignment is on this key only.
    other = f"cu-other-{uuid.uuid4().hex[:8]}"
    sdk(KeyClient, administrator.credential).create_ec_key(other, curve="P-256")
    forbidden(lambda: keys.get_key(other))
    assert keys.get_key(name).name == name


def test_revoking_through_node_1_denies_the_next_request_on_node_3(tenant_id, access, administrator):
    name = f"rv-{uuid.uuid4().hex[:8]}"
    sdk(SecretClient, administrator.credential).set_secret(name, "v")
    user = App(tenant_id, "revoked")
    a = access.create_role_assignment(KeyVaultRoleScope.GLOBAL, SECRETS_USER, user.object_id)
    on_node_3 = sdk(SecretClient, user.credential, node=2)
    assert on_node_3.get_secret(name).value == "v"
    sdk(KeyVaultAccessControlClient, administrator.credential, node=0).delete_role_assignment(
        KeyVaultRoleScope.GLOBAL, a.name
    )
    forbidden(lambda: on_node_3.get_secret(name))


def test_separation_of_duties(tenant_id, access):
    officer = App(tenant_id, "officer")
    access.create_role_assignment(KeyVaultRoleScope.GLOBAL, SECRETS_OFFICER, officer.object_id)
    as_officer = sdk(KeyVaultAccessControlClient, officer.credential, node=1)
    victim = App(tenant_id, "victim")
    # A Secrets Officer cannot hand out roles, not even the ones it holds.
    forbidden(
        lambda: as_officer.create_role_assignment(
            KeyVaultRoleScope.GLOBAL, SECRETS_USER, victim.object_id
        )
    )
    forbidden(lambda: list(as_officer.list_role_assignments(KeyVaultRoleScope.GLOBAL)))


def totp_code(secret_b32):
    """RFC 6238 (SHA-1, 6 digits, 30 s), as an authenticator app computes it."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(time.time() // 30)), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def jwt_claims(token):
    """The payload of a JWT (read, not verified: the test's own token)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def approve_device_code(user_code, user, password, otp=""):
    """What the user does on the approval page (/device), as its form posts it."""
    r = requests.post(
        f"{NODES[0]}/device",
        data={"user_code": user_code, "username": user, "password": password, "otp": otp},
        verify=CACERT,
        timeout=30,
    )
    assert r.status_code == 200 and 'id="done"' in r.text, r.text


def test_mfa_conditioned_assignment_works_only_after_step_up(tenant_id, administrator):
    name = f"mfa-{uuid.uuid4().hex[:8]}"
    sdk(SecretClient, administrator.credential).set_secret(name, "behind a second factor")
    client_id = admin("POST", "/apps", {"name": f"mfa-cli-{uuid.uuid4().hex[:8]}"})["app"]["client_id"]
    user, password = f"mfa-{uuid.uuid4().hex[:8]}@contoso", "correct horse battery staple"
    oid = admin("POST", "/users", {"name": user, "password": password})["object_id"]
    # Secrets User only with a second factor: `requireMfa` is Coffer's
    # condition on an assignment (the SDK's model has no field for it), put
    # by the administrator through the same API.
    admin_token = administrator.credential.get_token("https://vault.azure.net/.default").token
    r = requests.put(
        f"{NODES[0]}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
        params={"api-version": "7.6"},
        headers={"Authorization": f"Bearer {admin_token}"},
        json={"properties": {"roleDefinitionId": SECRETS_USER, "principalId": oid, "requireMfa": True}},
        verify=CACERT,
        timeout=30,
    )
    assert r.status_code == 201 and r.json()["properties"]["requireMfa"] is True, r.text

    prompts = []

    def play_the_user(verification_uri, user_code, expires_on):
        prompts.append(user_code)
        if len(prompts) == 1:
            # First sign-in: password only (no authenticator enrolled yet).
            approve_device_code(user_code, user, password)
        else:
            # Asked again for the step-up: the user enrols an authenticator
            # and signs in with its code.
            otpauth = admin("POST", f"/users/{quote(user)}/mfa")["otpauth_uri"]
            secret = parse_qs(urlparse(otpauth).query)["secret"][0]
            approve_device_code(user_code, user, password, totp_code(secret))

    credential = DeviceCodeCredential(
        client_id=client_id,
        tenant_id=tenant_id,
        authority=NODES[0],
        disable_instance_discovery=True,
        prompt_callback=play_the_user,
        connection_verify=CACERT,
    )
    # The password-only token, requested as the SDKs' challenge policy does:
    # `enable_cae=True` is what makes azure-identity declare the cp1
    # capability (without it the token has no `xms_cc` and the vault, which
    # must not send a claims challenge to a client that cannot take one,
    # answers 403 naming the missing factor). The vault answers with the
    # claims challenge, not with the secret.
    first = credential.get_token("https://vault.azure.net/.default", enable_cae=True)
    assert "cp1" in jwt_claims(first.token).get("xms_cc", []), jwt_claims(first.token)
    r = requests.get(
        f"{NODES[2]}/secrets/{name}",
        params={"api-version": "7.4"},
        headers={"Authorization": f"Bearer {first.token}"},
        verify=CACERT,
        timeout=30,
    )
    assert r.status_code == 401, r.text
    challenge = r.headers["WWW-Authenticate"]
    assert 'error="insufficient_claims"' in challenge, challenge
    assert len(prompts) == 1
    # The unchanged SDK: challenge -> token request with the claims -> the
    # refresh token is refused (interaction_required) -> device sign-in again,
    # now with the second factor -> the retried request gets the secret.
    client = sdk(SecretClient, credential, node=1)
    assert client.get_secret(name).value == "behind a second factor"
    assert len(prompts) == 2, prompts
    # The factor does not widen the role: still no write.
    forbidden(lambda: client.set_secret(name, "changed"))


ARM_SETTING = "AllowKeyManagementOperationsThroughARM"


def test_settings_client_reads_and_changes_a_setting_on_every_node(tenant_id, administrator):
    settings = sdk(KeyVaultSettingsClient, administrator.credential)
    listed = {x.name: x for x in settings.list_settings()}
    assert listed[ARM_SETTING].setting_type == "boolean"
    assert settings.get_setting(ARM_SETTING).getboolean() is False
    updated = settings.update_setting(KeyVaultSetting(name=ARM_SETTING, value="true"))
    assert (updated.name, updated.getboolean()) == (ARM_SETTING, True)
    # Replicated: the other nodes answer the new value.
    for node in (1, 2):
        assert sdk(KeyVaultSettingsClient, administrator.credential, node=node).get_setting(ARM_SETTING).getboolean()
    with pytest.raises(HttpResponseError) as e:
        settings.update_setting(KeyVaultSetting(name=ARM_SETTING, value="maybe"))
    assert e.value.status_code == 400
    # Settings are administration: a Secrets User may neither read nor change them.
    user = App(tenant_id, "settings-user")
    sdk(KeyVaultAccessControlClient, administrator.credential).create_role_assignment(
        KeyVaultRoleScope.GLOBAL, SECRETS_USER, user.object_id
    )
    as_user = sdk(KeyVaultSettingsClient, user.credential, node=1)
    forbidden(lambda: as_user.get_setting(ARM_SETTING))
    forbidden(lambda: as_user.update_setting(KeyVaultSetting(name=ARM_SETTING, value="false")))
    settings.update_setting(KeyVaultSetting(name=ARM_SETTING, value="false"))


def vault_digest(credential):
    """Every live object of the vault, every version, as one SHA-256:
    secret values, keys' public material and operations, certificates' DER."""
    secrets = sdk(SecretClient, credential)
    keys = sdk(KeyClient, credential)
    certs = sdk(CertificateClient, credential)
    state = {"secrets": {}, "keys": {}, "certificates": {}}
    for p in secrets.list_properties_of_secrets():
        state["secrets"][p.name] = sorted(
            (v.version, secrets.get_secret(p.name, v.version).value)
            for v in secrets.list_properties_of_secret_versions(p.name)
        )
    for p in keys.list_properties_of_keys():
        versions = []
        for v in keys.list_properties_of_key_versions(p.name):
            k = keys.get_key(p.name, v.version)
            jwk = {f: getattr(k.key, f) for f in ("kty", "n", "e", "x", "y", "crv")}
            jwk = {f: (x.hex() if isinstance(x, bytes) else str(x)) for f, x in jwk.items() if x}
            versions.append((v.version, json.dumps(jwk, sort_keys=True), sorted(k.key_operations or [])))
        state["keys"][p.name] = sorted(versions)
    for p in certs.list_properties_of_certificates():
        state["certificates"][p.name] = sorted(
            (v.version, certs.get_certificate_version(p.name, v.version).cer.hex())
            for v in certs.list_properties_of_certificate_versions(p.name)
        )
    blob = json.dumps(state, sort_keys=True).encode()
    counts = {kind: sum(len(v) for v in objs.values()) for kind, objs in state.items()}
    return hashlib.sha256(blob).hexdigest(), counts


def purge_everything(credential):
    secrets = sdk(SecretClient, credential)
    keys = sdk(KeyClient, credential)
    certs = sdk(CertificateClient, credential)
    for p in list(certs.list_properties_of_certificates()):
        certs.begin_delete_certificate(p.name).wait()
    for p in list(secrets.list_properties_of_secrets()):
        if not p.managed:
            secrets.begin_delete_secret(p.name).wait()
    for p in list(keys.list_properties_of_keys()):
        if not p.managed:
            keys.begin_delete_key(p.name).wait()
    for d in list(certs.list_deleted_certificates()):
        certs.purge_deleted_certificate(d.name)
    for d in list(secrets.list_deleted_secrets()):
        secrets.purge_deleted_secret(d.name)
    for d in list(keys.list_deleted_keys()):
        keys.purge_deleted_key(d.name)
    assert not list(secrets.list_properties_of_secrets())
    assert not list(keys.list_properties_of_keys())
    assert not list(certs.list_properties_of_certificates())


def test_full_backup_purge_everything_full_restore_equal_digests(administrator):
    assert BACKUP_DIR, "COFFER_BACKUP_DIR must name the nodes' [server] backup_dir"
    cred = administrator.credential
    secrets = sdk(SecretClient, cred)
    keys = sdk(KeyClient, cred)
    secrets.set_secret("bk-db", "first value")
    secrets.set_secret("bk-db", "second value: sensitive")
    keys.create_ec_key("bk-ec", curve="P-256")
    keys.create_rsa_key("bk-rsa", size=2048)
    keys.rotate_key("bk-rsa")
    certs = sdk(CertificateClient, cred)
    certs.begin_create_certificate("bk-cert", CertificatePolicy.get_default()).result()
    before, counts = vault_digest(cred)
    assert counts["certificates"] >= 1 and counts["keys"] >= 4 and counts["secrets"] >= 3, counts

    backup = sdk(KeyVaultBackupClient, cred)
    result = backup.begin_backup(f"file://{BACKUP_DIR}", use_managed_identity=True).result()
    folder_url = result.folder_url
    assert folder_url.startswith(f"file://{BACKUP_DIR}/"), folder_url
    folder = pathlib.Path(folder_url[len("file://"):])
    files = [f for f in folder.rglob("*") if f.is_file()]
    assert (folder / "manifest.json") in files
    # Sealed blobs: no secret value on disk in clear.
    assert not any(b"sensitive" in f.read_bytes() for f in files)

    purge_everything(cred)
    assert vault_digest(cred)[0] != before
    backup.begin_restore(folder_url, use_managed_identity=True).wait()
    after, after_counts = vault_digest(cred)
    assert (after, after_counts) == (before, counts)

    # Selective key restore: one key back from the same folder.
    keys.begin_delete_key("bk-rsa").wait()
    keys.purge_deleted_key("bk-rsa")
    backup.begin_restore(folder_url, key_name="bk-rsa", use_managed_identity=True).wait()
    assert vault_digest(cred)[0] == before
    # A folder outside the node's backup directory is refused.
    with pytest.raises(HttpResponseError) as e:
        backup.begin_backup("file:///etc", use_managed_identity=True)
    assert e.value.status_code == 400
