# Real-program benchmark for python3 (cargo xtask bench --real).
# Models a Python data-processing service: builds records as objects and dicts, serialises
# them with json.dumps and parses them back with json.loads, groups and aggregates them in
# dicts of lists, sorts lists of objects, formats text and keeps an LRU-like cache of
# dicts under churn. Small objects come from pymalloc's arenas; large strings, lists and dict
# tables from malloc. Prints "ok <checksum>"; the checksum is the same under any correct
# allocator.
import json
import zlib

seed = 12345


def rnd(n):
    global seed
    seed = (seed * 1103515245 + 12345) % 2147483648
    return (seed >> 8) % n


checksum = 0


def mix(x):
    global checksum
    checksum = (checksum * 31 + x) % 2147483647


class Event:
    __slots__ = ("id", "user", "kind", "tags", "payload", "score")

    def __init__(self, id, user, kind, tags, payload, score):
        self.id, self.user, self.kind = id, user, kind
        self.tags, self.payload, self.score = tags, payload, score

    def to_dict(self):
        return {"id": self.id, "user": self.user, "kind": self.kind, "tags": self.tags,
                "payload": self.payload, "score": self.score}


KINDS = ["click", "view", "purchase", "signup", "logout", "search", "share"]
TAGS = ["red", "green", "blue", "mobile", "desktop", "eu", "us", "asia", "beta", "pro"]

for round_ in range(2):
    events = []
    for i in range(30000):
        payload = {"path": "/p/%d/%s" % (rnd(500), "x" * rnd(80)),
                   "items": [rnd(1000) for _ in range(rnd(12))],
                   "meta": {"ref": "r%d" % rnd(100), "ab": rnd(2) == 0}}
        events.append(Event(i, "user%05d" % rnd(8000), KINDS[rnd(7)],
                            [TAGS[rnd(10)] for _ in range(rnd(4))], payload, rnd(10000) / 7.0))

    # JSON round trips: one big document and many small ones.
    doc = json.dumps([e.to_dict() for e in events])
    back = json.loads(doc)
    if json.dumps(back) != doc:
        raise SystemExit("json round trip differs")
    mix(len(doc))
    lines = [json.dumps(e.to_dict(), sort_keys=True) for e in events[:15000]]
    mix(sum(len(json.loads(l)["payload"]["items"]) for l in lines))

    # Group and aggregate.
    by_user = {}
    for e in events:
        by_user.setdefault(e.user, []).append(e)
    stats = {}
    for user, evs in by_user.items():
        kinds = {}
        for e in evs:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        stats[user] = {"n": len(evs), "score": round(sum(e.score for e in evs), 3),
                       "kinds": sorted(kinds.items()),
                       "tags": sorted({t for e in evs for t in e.tags})}
    top = sorted(stats.items(), key=lambda kv: (-kv[1]["score"], kv[0]))[:200]
    report = "\n".join("%s %d %.3f %s %s" % (u, s["n"], s["score"], s["kinds"], ",".join(s["tags"]))
                       for u, s in top)
    mix(zlib.crc32(report.encode()))

    # Sorting objects several ways.
    events.sort(key=lambda e: (e.kind, -e.score, e.id))
    mix(sum(e.id for e in events[:1000]))
    events.sort(key=lambda e: (len(e.payload["path"]), e.user, e.id))
    mix(sum(e.id for e in events[:1000]))

# A cache of dicts under churn (insertion-ordered dict as an LRU).
cache = {}
for i in range(250000):
    key = "k%d" % rnd(60000)
    v = cache.pop(key, None)
    if v is None:
        v = {"hits": 0, "blob": "y" * (i % 300), "hist": []}
        if len(cache) >= 20000:
            del cache[next(iter(cache))]
    v["hits"] += 1
    v["hist"].append(i)
    if len(v["hist"]) > 16:
        v["hist"] = v["hist"][8:]
    cache[key] = v
mix(len(cache))
mix(sum(v["hits"] for v in cache.values()))

print("ok %d" % checksum)
