-- 003_timeline_seqs: each message's place in its sender's and its recipient's timeline (push/timeline.h).
-- magpie-persist writes them from the stream entry (fseq, tseq); messages stored before timelines have
-- NULL. Y serves the part of a timeline that has left Redis from these two indexes: the entries of user U
-- after seq S are (from_uid = U AND from_seq > S) and (to_uid = U AND to_seq > S), merged by seq.
-- Not UNIQUE: the seqs are unique by construction (one Redis script assigns them), and a unique key would
-- make the INSERT's ON DUPLICATE KEY clause skip a row silently instead of storing it.
ALTER TABLE messages
    ADD COLUMN from_seq BIGINT UNSIGNED NULL,
    ADD COLUMN to_seq BIGINT UNSIGNED NULL,
    ADD KEY idx_messages_from_seq (from_uid, from_seq),
    ADD KEY idx_messages_to_seq (to_uid, to_seq);
