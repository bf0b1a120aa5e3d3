-- 002_messages_client_id_bytes: compare client ids byte for byte.
-- utf8mb4_bin is a PAD SPACE collation: to it 'a' and 'a ' are the same string, so uk_messages_client would
-- take two different messages whose client ids differ only in trailing spaces for one, and magpie-persist
-- would skip the second as a re-delivery. magpie-push tells retries apart byte for byte (mp:dedup), and so
-- must the unique key: VARBINARY compares bytes (in MySQL and MariaDB alike). Client ids are UTF-8 of at
-- most 64 bytes (shared/stream.h), which is what VARBINARY(64) holds.
ALTER TABLE messages MODIFY client_id VARBINARY(64) NOT NULL;
