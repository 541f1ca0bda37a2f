-- Accounts. Runs on MariaDB 10.11 and MySQL 5.7 (no MariaDB-only syntax).
-- Applied by scripts/stack.sh; idempotent.
CREATE TABLE IF NOT EXISTS users (
  id            INT UNSIGNED NOT NULL AUTO_INCREMENT,
  -- [A-Za-z0-9_.-]{1,64}, compared byte-exact (case-sensitive)
  username      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- 1..64 Unicode code points, stored byte-exact
  nickname      VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  -- argon2id PHC string: $argon2id$v=19$m=...,t=...,p=...$salt$hash
  password_hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- file name under the pictures directory; NULL = no picture
  picture       VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
  created_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  updated_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (id),
  UNIQUE KEY uk_users_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Bookkeeping for tools (e.g. how many users the population tool loaded).
CREATE TABLE IF NOT EXISTS schema_meta (
  k VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  v VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  PRIMARY KEY (k)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
