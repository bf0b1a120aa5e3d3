-- 001_init: users, friends, orders, messages (SPEC §6).
-- Applied by magpie-migrate, which records it in schema_migrations; IF NOT EXISTS keeps a manual re-run
-- harmless too.

CREATE TABLE IF NOT EXISTS users (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    mobile     VARCHAR(20)     NOT NULL,
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uk_users_mobile (mobile)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per direction: (a, b) and (b, a), so "friends of a" is a primary-key range scan.
CREATE TABLE IF NOT EXISTS friends (
    uid        BIGINT UNSIGNED NOT NULL,
    friend_uid BIGINT UNSIGNED NOT NULL,
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (uid, friend_uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Orders of the delivery app (seed 001): registered by /admin/orders, taken by a courier with T.
CREATE TABLE IF NOT EXISTS orders (
    id         VARCHAR(64)     NOT NULL,
    customer   BIGINT UNSIGNED NOT NULL,
    courier    BIGINT UNSIGNED NULL,
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    taken_at   DATETIME(3)     NULL,
    PRIMARY KEY (id),
    KEY idx_orders_customer (customer),
    KEY idx_orders_courier (courier)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Chat messages, written by magpie-persist from the Redis stream (fields in shared/stream.h).
-- uk_messages_client makes a re-delivered stream entry a no-op (INSERT IGNORE): exactly once stored.
-- History of user U after T is two range scans, idx_messages_from (from_uid = U AND created_ms > T) and
-- idx_messages_to (to_uid = U AND created_ms > T); with one peer P it is two range scans of
-- idx_messages_pair, (U, P) and (P, U).
CREATE TABLE IF NOT EXISTS messages (
    id         BIGINT UNSIGNED NOT NULL,
    client_id  VARCHAR(64)     NOT NULL,
    from_uid   BIGINT UNSIGNED NOT NULL,
    to_uid     BIGINT UNSIGNED NOT NULL,
    type       CHAR(1)         NOT NULL,
    body       TEXT            NOT NULL,
    created_ms BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_messages_client (from_uid, client_id),
    KEY idx_messages_from (from_uid, created_ms),
    KEY idx_messages_to (to_uid, created_ms),
    KEY idx_messages_pair (from_uid, to_uid, created_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
