# magpie-persist: the Redis stream to MySQL worker (SPEC §6). Build rules for it and its unit tests.
