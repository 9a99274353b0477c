-- Real-program benchmark for sqlite3 (cargo xtask bench --real), read on stdin by
-- `sqlite3 :memory:`.
-- Models an application's database session: an in-memory database of customers, products
-- and 300 000 orders filled in transactions, indexes built, then reporting queries (joins,
-- GROUP BY, ORDER BY, window functions, JSON documents, a sorted copy), updates and deletes.
-- SQLite's page cache, B-tree cursors, sorter and string results come from malloc.
-- Prints "ok|<numbers>"; the numbers are the same under any correct allocator.
.bail on

CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, tier INT);
CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INT NOT NULL, product INT NOT NULL,
                    qty INT NOT NULL, day INT NOT NULL, note TEXT);

BEGIN;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000)
INSERT INTO customers
SELECT x, printf('customer-%05d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', x % 26 + 1, x % 11 + 1)),
       printf('city-%d', (x * 7) % 97), x % 4 FROM n;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000)
INSERT INTO products
SELECT x, printf('product %d %s', x, hex(x * 2654435761)), printf('cat-%d', x % 40),
       ((x * 7919) % 10000) / 100.0 FROM n;
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300000)
INSERT INTO orders
SELECT x, (x * 7919) % 20000 + 1, (x * 104729) % 5000 + 1, x % 9 + 1, x % 365,
       CASE WHEN x % 3 = 0 THEN printf('note %d: %s', x, substr(hex(x * 40503), 1, x % 15 + 1)) END
FROM n;
COMMIT;

CREATE INDEX orders_customer ON orders(customer);
CREATE INDEX orders_product_day ON orders(product, day);
CREATE INDEX customers_city ON customers(city, tier);
CREATE INDEX products_category ON products(category, price);

CREATE TEMP TABLE results(step TEXT, value INT);

-- Revenue per city and category: a three-way join, grouped and sorted.
INSERT INTO results
SELECT 'city-category', sum(n) FROM (
  SELECT c.city, p.category, count(*) AS n, sum(o.qty * p.price) AS revenue
  FROM orders o JOIN customers c ON c.id = o.customer JOIN products p ON p.id = o.product
  GROUP BY c.city, p.category ORDER BY revenue DESC);

-- Best customers with a window function over their monthly totals.
INSERT INTO results
SELECT 'ranked', sum(customer * rank % 1000003) FROM (
  SELECT customer, month, rank() OVER (PARTITION BY month ORDER BY total DESC, customer) AS rank
  FROM (SELECT o.customer, o.day / 30 AS month, sum(o.qty * p.price) AS total
        FROM orders o JOIN products p ON p.id = o.product GROUP BY 1, 2))
WHERE rank <= 50;

-- Text work: notes grouped by prefix, names sorted.
INSERT INTO results
SELECT 'notes', count(*) + sum(length(g)) FROM (
  SELECT substr(note, 1, 8) AS k, group_concat(id, ',') AS g FROM orders
  WHERE note IS NOT NULL GROUP BY k ORDER BY k);
INSERT INTO results
SELECT 'names', sum(length(name) * rn) % 1000003 FROM (
  SELECT name, row_number() OVER (ORDER BY upper(name) DESC, id) AS rn FROM customers);

-- JSON documents per customer, built and read back.
INSERT INTO results
SELECT 'json', sum(json_array_length(doc, '$.orders')) + sum(length(doc)) FROM (
  SELECT json_object('customer', c.name, 'city', c.city,
                     'orders', json_group_array(json_object('id', o.id, 'qty', o.qty, 'note', o.note))) AS doc
  FROM customers c JOIN orders o ON o.customer = c.id GROUP BY c.id);

-- A copy of the orders sorted into a new table, then joined back.
CREATE TABLE orders_by_day AS
SELECT o.day, o.id, c.name, p.name AS product, o.qty FROM orders o
JOIN customers c ON c.id = o.customer JOIN products p ON p.id = o.product ORDER BY o.day, p.name, o.id;
INSERT INTO results
SELECT 'by-day', count(*) + sum(length(name) + length(product)) FROM orders_by_day
WHERE id IN (SELECT id FROM orders WHERE qty > 5);
DROP TABLE orders_by_day;

-- Updates and deletes through the indexes, then the aggregates again.
BEGIN;
UPDATE orders SET qty = qty + 1, note = coalesce(note, '') || ' updated' WHERE day % 7 = 0;
DELETE FROM orders WHERE customer % 13 = 0;
UPDATE customers SET tier = (tier + 1) % 4, name = name || '*' WHERE city IN ('city-1', 'city-2', 'city-3');
COMMIT;
INSERT INTO results
SELECT 'after-update', count(*) + sum(qty) FROM orders o JOIN customers c ON c.id = o.customer WHERE c.tier >= 2;
INSERT INTO results
SELECT 'distinct', count(DISTINCT note) FROM orders;

SELECT 'ok', group_concat(step || '=' || value, ' ') FROM results;
