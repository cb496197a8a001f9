from fastapi.testclient import TestClient


def test_channel_roundtrip(client: TestClient, auth: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/channels", json={"kind": "web", "name": "Web", "handle": "web"}, headers=auth
    )
    assert created.status_code == 201, created.text
    got = client.get(f"/api/v1/channels/{created.json()['id']}", headers=auth)
    assert got.json()["handle"] == "web"
