"""Webhook signatures: the scheme, its edge cases, and the documented verifiers."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from seamline.events.signing import SignatureError, compute, header, verify
from seamline.events.worker import Worker
from tests.webhooks.support import (
    API,
    SIGNATURE,
    Receiver,
    create_channel,
    create_endpoint,
)

# -- 1. signatures -----------------------------------------------------------------------------
BODY = b'{"id":"evt_1","type":"channel.created"}'
SECRET = "whsec_current"
T0 = 1_750_000_000


def test_correct_signature_verifies() -> None:
    signed = header(BODY, [SECRET], T0)
    assert SIGNATURE.match(signed)
    assert verify(BODY, signed, SECRET, now=T0 + 10) == T0


def test_wrong_secret_is_rejected() -> None:
    signed = header(BODY, [SECRET], T0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(BODY, signed, "whsec_other", now=T0)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_timestamp_outside_tolerance_is_rejected(offset: int) -> None:
    signed = header(BODY, [SECRET], T0)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(BODY, signed, SECRET, now=T0 + offset)
    # ...and right at the edge of the window it still verifies.
    assert verify(BODY, signed, SECRET, now=T0 + (300 if offset > 0 else -300)) == T0


def test_tampered_body_is_rejected() -> None:
    signed = header(BODY, [SECRET], T0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(BODY.replace(b"created", b"deleted"), signed, SECRET, now=T0)


def test_a_signature_for_another_timestamp_is_rejected() -> None:
    """Replaying a captured body with a fresh ``t`` fails: the timestamp is signed too."""
    digest = compute(BODY, SECRET, T0)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(BODY, f"t={T0 + 60},v1={digest}", SECRET, now=T0 + 60)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        f"t={T0}",
        f"v1={'a' * 64}",
        f"t=abc,v1={'a' * 64}",
        f"t=,v1={'a' * 64}",
        f"t={T0},v1=",
        f"t={T0},v1=nothex",
        f"t={T0},v1={'é' * 64}",  # non-ASCII: used to escape as TypeError from compare_digest
        f"t={chr(0xFF11) * 10},v1={'a' * 64}",  # full-width digits pass str.isdigit()
        f"t={T0};v1={'a' * 64}",
    ],
)
def test_malformed_header_is_rejected(bad: str) -> None:
    with pytest.raises(SignatureError, match="malformed"):
        verify(BODY, bad, SECRET, now=T0)


def test_unknown_schemes_and_spaces_are_tolerated() -> None:
    signed = f"t={T0}, v0=deadbeef, v1={compute(BODY, SECRET, T0)}"
    assert verify(BODY, signed, SECRET, now=T0) == T0


def test_during_rotation_old_and_new_secret_both_verify() -> None:
    signed = header(BODY, ["whsec_new", "whsec_old"], T0)
    assert signed.count("v1=") == 2
    assert verify(BODY, signed, "whsec_new", now=T0) == T0
    assert verify(BODY, signed, "whsec_old", now=T0) == T0
    with pytest.raises(SignatureError):
        verify(BODY, signed, "whsec_neither", now=T0)


# -- docs: the verification snippets in docs/webhooks.md work on a real delivery ---------------
DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"

NODE_MAIN = """
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const verdicts = cases.map((c) =>
  verifySeamline(Buffer.from(c.body, "base64"), c.header, c.secret, c.now));
console.log(JSON.stringify(verdicts));
"""

RUBY_MAIN = """
require "json"
cases = JSON.parse($stdin.read)
puts JSON.generate(cases.map { |c|
  verify_seamline(c["body"].unpack1("m0"), c["header"], c["secret"], now: c["now"])
})
"""

GO_MAIN = """package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

func main() {
	var cases []struct {
		Body   string `json:"body"`
		Header string `json:"header"`
		Secret string `json:"secret"`
		Now    int64  `json:"now"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	verdicts := []bool{}
	for _, c := range cases {
		body, err := base64.StdEncoding.DecodeString(c.Body)
		if err != nil {
			panic(err)
		}
		err = VerifySeamline(body, c.Header, c.Secret, time.Unix(c.Now, 0))
		verdicts = append(verdicts, err == nil)
	}
	out, _ := json.Marshal(verdicts)
	fmt.Println(string(out))
}
"""


def doc_snippet(language: str) -> str:
    """The first ``language`` block of the "Verifying the signature" section of the docs."""
    text = DOCS.read_text()
    section = text[text.index("## Verifying the signature") :]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} snippet in {DOCS}"
    return match.group(1)


def run_snippet(language: str, cases: list[dict[str, Any]], workdir: Path) -> list[bool]:
    code = doc_snippet(language)
    if language == "python":
        namespace: dict[str, Any] = {}
        exec(compile(code, str(DOCS), "exec"), namespace)  # the documented function, as is
        verify_fn = namespace["verify_seamline"]
        return [
            verify_fn(base64.b64decode(c["body"]), c["header"], c["secret"], now=c["now"])
            for c in cases
        ]
    if language == "js":
        (workdir / "verify.js").write_text(code + NODE_MAIN)
        command = ["node", "verify.js"]
    elif language == "ruby":
        (workdir / "verify.rb").write_text(code + RUBY_MAIN)
        command = ["ruby", "verify.rb"]
    else:
        (workdir / "verify.go").write_text(code.replace("package webhooks", "package main", 1))
        (workdir / "main.go").write_text(GO_MAIN)
        command = ["go", "run", "verify.go", "main.go"]
    done = subprocess.run(
        command, input=json.dumps(cases), capture_output=True, text=True, cwd=workdir, timeout=120
    )
    assert done.returncode == 0, done.stderr
    verdicts: list[bool] = json.loads(done.stdout)
    return verdicts


@pytest.mark.parametrize(
    ("language", "binary"),
    [("python", None), ("js", "node"), ("go", "go"), ("ruby", "ruby")],
)
def test_documented_verification_snippets_work(
    language: str,
    binary: str | None,
    client: TestClient,
    auth: dict[str, str],
    worker: Worker,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    if binary and shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")
    endpoint = create_endpoint(client, auth, receiver.url(), ["channel.*"])
    rotated = client.post(f"{API}/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=auth)
    old, new = endpoint["secret"], rotated.json()["secret"]
    create_channel(client, auth, "web")
    worker.drain()
    hit = receiver.requests[0]
    signature = hit.headers["seamline-signature"]
    t = int(signature.split(",")[0].removeprefix("t="))

    def case(
        body: bytes = hit.body, sig: str = signature, secret: str = new, now: int = t + 5
    ) -> dict[str, Any]:
        return {
            "body": base64.b64encode(body).decode(),
            "header": sig,
            "secret": secret,
            "now": now,
        }

    cases = {
        "new secret": (case(), True),
        "old secret during rotation": (case(secret=old), True),
        "edge of tolerance": (case(now=t - 300), True),
        "wrong secret": (case(secret=new + "x"), False),
        "tampered body": (case(body=hit.body.replace(b"web", b"wob")), False),
        "stale": (case(now=t + 301), False),
        "from the future": (case(now=t - 301), False),
        "malformed": (case(sig="garbage"), False),
        "no signature": (case(sig=f"t={t}"), False),
        "non-hex signature": (case(sig=f"t={t},v1={'é' * 64}"), False),
        "re-timestamped": (case(sig=signature.replace(f"t={t}", f"t={t + 1}")), False),
    }
    verdicts = run_snippet(language, [c for c, _ in cases.values()], tmp_path)
    assert dict(zip(cases, verdicts, strict=True)) == {k: v for k, (_, v) in cases.items()}
