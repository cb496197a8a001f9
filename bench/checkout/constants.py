"""Constants shared by the checkout benchmark's modules."""

DB_NAME = "seamline_bench_checkout"
API = "/api/v1"
BODY = {"tenders": [{"provider": "test", "token": "tok_test_success"}]}
# A client gives up after this many unexpected answers in a phase (the server is broken).
MAX_ERRORS = 200
