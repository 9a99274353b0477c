# program: sqlite3 -version
set -euo pipefail
cd "$1"
sqlite3 test.db <<'SQL'
PRAGMA journal_mode = DELETE;
CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL, blob BLOB);
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 100000)
INSERT INTO t SELECT i, printf('name-%08d', (i * 7919) % 100003), i % 97, (i * 31 % 1000) / 7.0,
                     zeroblob(i % 300) FROM seq;
CREATE INDEX t_name ON t (name);
CREATE INDEX t_grp_val ON t (grp, val);
SELECT count(*), sum(grp), round(sum(val), 3), sum(length(blob)) FROM t;
SELECT grp, count(*), round(avg(val), 4) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
SELECT name FROM t WHERE name > 'name-0005' ORDER BY name LIMIT 3;
DELETE FROM t WHERE id % 3 = 0;
UPDATE t SET name = name || '-x' WHERE grp = 5;
SELECT count(*), max(name) FROM t;
VACUUM;
PRAGMA integrity_check;
SELECT group_concat(id) FROM (SELECT id FROM t ORDER BY val DESC, id LIMIT 10);
SQL
