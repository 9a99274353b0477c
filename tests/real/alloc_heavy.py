"""Allocation-heavy, deterministic: dicts, lists, strings, JSON, sorting, a few hundred
thousand objects. Prints digests that must not depend on the allocator."""
import hashlib
import json
import random

rng = random.Random(2024)
digest = hashlib.sha256()


def emit(label, value):
    text = f"{label}: {value}"
    digest.update(text.encode())
    print(text)


# Many small objects: a dict of lists of tuples and strings.
table = {}
for i in range(200_000):
    key = f"k{rng.randrange(50_000)}"
    table.setdefault(key, []).append((i, str(i) * (i % 7), rng.random()))
emit("keys", len(table))
emit("entries", sum(len(v) for v in table.values()))

# Churn: delete and re-create half of it.
for key in sorted(table)[::2]:
    del table[key]
for i in range(100_000):
    table[f"n{i}"] = [i] * (i % 13)
emit("after churn", len(table))

# Strings: build, split, join, replace.
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randrange(1, 12))) for _ in range(100_000)]
text = " ".join(words)
emit("text length", len(text))
emit("distinct words", len(set(text.split())))
emit("replaced", hashlib.md5(text.replace("a", "AAAA").encode()).hexdigest())

# JSON round trips of nested structures.
docs = [{"id": i, "tags": words[i:i + 5], "n": {"x": i * 1.5, "y": [i, -i, str(i)]}} for i in range(50_000)]
blob = json.dumps(docs, sort_keys=True)
emit("json bytes", len(blob))
back = json.loads(blob)
emit("json equal", back == docs)
emit("json sha", hashlib.sha256(blob.encode()).hexdigest())

# Sorting with keys, big lists of ints and floats, bytearrays.
nums = [rng.randrange(1 << 40) for _ in range(300_000)]
nums.sort()
emit("sorted ok", all(a <= b for a, b in zip(nums, nums[1:])))
emit("median", nums[len(nums) // 2])
by_len = sorted(words, key=lambda w: (len(w), w))
emit("shortest", by_len[:3])
emit("longest", by_len[-3:])
buf = bytearray()
for i in range(20_000):
    buf += bytes([i % 256]) * (i % 100)
emit("bytearray", hashlib.sha1(buf).hexdigest())

# Objects with __dict__ and reference cycles collected by the GC.
import gc


class Node:
    def __init__(self, v):
        self.v = v
        self.peer = None


nodes = [Node(i) for i in range(100_000)]
for a, b in zip(nodes, nodes[1:]):
    a.peer = b
nodes[-1].peer = nodes[0]  # one big cycle: only the GC can free it
del nodes
emit("gc collected", gc.collect() > 0)
print("digest", digest.hexdigest())
