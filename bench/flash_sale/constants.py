"""Constants shared by the flash-sale modules."""

DB_NAME = "seamline_flash"
TTL_SECONDS = 900
API = "/api/v1"
# A buyer gives up after this many unexpected answers in a phase (the server is broken).
MAX_ERRORS = 200
