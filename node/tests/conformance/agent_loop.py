"""An unchanged Azure SDK application pointed at `coffer agent` only.

Runs set_secret + get_secret in a loop until STOP_FILE exists, with the
SDK's own retries switched off (retry_total=0): every error the agent lets
through counts as a failed operation. Writes one JSON line per operation to
OUT_FILE: {"t": unix start, "op", "ms", "ok", "err"}.

Environment:
    AGENT_URL     https://127.0.0.1:PORT of the agent (the vault URL)
    AGENT_CA      the agent's host-local CA (PEM)
    AGENT_KEY     this application's key (header x-coffer-agent-key)
    MODE          "token": the app brings a bearer token (COFFER_TOKEN);
                  "msi": no credential, ManagedIdentityCredential() with
                  IDENTITY_ENDPOINT / IDENTITY_HEADER from the agent
    PREFIX        secret name prefix
    STOP_FILE, OUT_FILE
"""

import json
import os
import time
import uuid

from azure.core.credentials import AccessToken
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient


class StaticTokenCredential:
    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self):
        pass


def main():
    mode = os.environ["MODE"]
    if mode == "token":
        credential = StaticTokenCredential(os.environ["COFFER_TOKEN"])
    else:
        credential = ManagedIdentityCredential()
    client = SecretClient(
        os.environ["AGENT_URL"],
        credential,
        verify_challenge_resource=False,
        connection_verify=os.environ["AGENT_CA"],
        headers={"x-coffer-agent-key": os.environ["AGENT_KEY"]},
        retry_total=0,
    )
    prefix = os.environ["PREFIX"]
    stop = os.environ["STOP_FILE"]
    i = 0
    with open(os.environ["OUT_FILE"], "w") as out:

        def record(op, t0, ok, err=""):
            out.write(json.dumps({"t": t0, "op": op, "ms": (time.time() - t0) * 1000, "ok": ok, "err": err}) + "\n")
            out.flush()

        while not os.path.exists(stop):
            i += 1
            name = f"{prefix}-{i % 4}"
            value = f"{mode}-{i}-{uuid.uuid4().hex}"
            t0 = time.time()
            try:
                client.set_secret(name, value)
                record("set", t0, True)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                record("set", t0, False, f"{type(e).__name__}: {e}"[:300])
                continue
            t0 = time.time()
            try:
                got = client.get_secret(name).value
                if got == value:
                    record("get", t0, True)
                else:
                    record("get", t0, False, "read an older value than the one just written")
            except Exception as e:  # noqa: BLE001
                record("get", t0, False, f"{type(e).__name__}: {e}"[:300])


if __name__ == "__main__":
    main()
