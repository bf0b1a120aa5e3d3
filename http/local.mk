# magpie-http: the HTTP API (SPEC §3). Build rules for http/ and its unit tests.
