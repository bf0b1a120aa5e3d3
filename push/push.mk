# magpie-push: the WebSocket daemon (SPEC §4, §5). Build rules for it and its unit tests.
