def test_x(client, auth):
    r = client.patch("/api/v1/channels/%2A", json={}, headers=auth)
    print(r.status_code, r.text)
    r = client.patch("/api/v1/channels/%2A", json={}, headers={**auth, "Idempotency-Key": "abc"})
    print(r.status_code, r.text)
    r = client.patch("/api/v1/channels/x", json={"name": None}, headers=auth)
    print(r.status_code, r.text)
