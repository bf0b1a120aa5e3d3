-- 004_groups: groups (SPEC §4.2; design: push/group.h). Redis holds the live state (KEY_GROUP, its members
-- hash); magpie-persist keeps this copy from the stream's group state entries (type G), applying one only
-- when its ver is above the row's, so they may arrive in any order. magpie-persist restores Redis from it
-- when Redis lost everything (with the seq counters).
-- `chat_groups`, since GROUPS is a reserved word in MySQL 8.
CREATE TABLE IF NOT EXISTS chat_groups (
    id         BIGINT UNSIGNED NOT NULL,
    name       VARCHAR(64)     NOT NULL,
    owner      BIGINT UNSIGNED NOT NULL,
    created_ms BIGINT UNSIGNED NOT NULL,
    ver        BIGINT UNSIGNED NOT NULL,
    deleted_ms BIGINT UNSIGNED NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- role: o owner, a admin, m member. join_order: the order members joined in (the owner leaving hands the
-- group to the oldest admin, else the oldest member).
CREATE TABLE IF NOT EXISTS group_members (
    group_id   BIGINT UNSIGNED NOT NULL,
    uid        BIGINT UNSIGNED NOT NULL,
    role       CHAR(1)         NOT NULL,
    join_order BIGINT UNSIGNED NOT NULL,
    joined_ms  BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (group_id, uid),
    KEY idx_group_members_uid (uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A group message (g) or group event (s) is one messages row: to_uid = group_id = the group, from_seq = the
-- sender's seq (g; NULL for an event, whose from_uid is 0), group_seq = a g message's number in its group.
-- 1:1 history (H) skips rows with a group_id.
ALTER TABLE messages
    ADD COLUMN group_id BIGINT UNSIGNED NULL,
    ADD COLUMN group_seq BIGINT UNSIGNED NULL,
    ADD KEY idx_messages_group (group_id, group_seq);

-- Where a group entry sits in each member's timeline (all but the sender's, which is messages.from_seq):
-- one row per member per magpie-persist batch, entries = "<seq>:<mid> <seq>:<mid> ...", all between
-- first_seq and last_seq (push/timeline_chunks.h: a re-delivered batch is appended to the row, so a row may
-- hold a seq twice or out of order; readers sort and keep one). Y reads a timeline's old group entries from
-- here (push/timeline.c).
CREATE TABLE IF NOT EXISTS timeline_chunks (
    uid       BIGINT UNSIGNED NOT NULL,
    first_seq BIGINT UNSIGNED NOT NULL,
    last_seq  BIGINT UNSIGNED NOT NULL,
    entries   MEDIUMTEXT      NOT NULL,
    PRIMARY KEY (uid, first_seq),
    KEY idx_timeline_chunks_last (uid, last_seq)
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;
