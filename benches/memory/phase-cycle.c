/* Phase cycling: four times over, a busy program builds a tree of 80 000 JSON-like records
 * (a few hundred MiB of objects of 8 B - 2 KiB) as a JSON parser builds one, walks it and
 * drops it whole; no pause between the phases, so memory given back after a drop is faulted
 * in again by the next build. Objects are arrays of key-value members, arrays and objects
 * grow by doubling with realloc, every key and string is a block of its own, numbers are
 * inline; dropped depth first, as Rust drops a serde_json::Value. `idle: settled` after the
 * last drop. Its Rust twin, through serde_json itself: phase-cycle-rust/. */
#include "memory.h"

#define PHASES 4
#define RECORDS scaled(80000)

enum kind { NUM, STR, ARR, OBJ };
typedef struct value value_t;
typedef struct member member_t;
struct value {
    enum kind kind;
    size_t len, cap; /* STR: bytes; ARR: items; OBJ: members */
    union {
        double num;
        char *str;
        value_t *items;
        member_t *members;
    } u;
};
struct member {
    char *key;
    value_t v;
};

/* A string of len random lowercase letters (the parser's copy of a JSON string). */
static char *text(rng_t *r, size_t len) {
    char *s = check_alloc(malloc(len + 1), len + 1);
    for (size_t i = 0; i < len; i++) s[i] = (char)('a' + rnd(r) % 26);
    s[len] = 0;
    return s;
}
static value_t num(double x) { return (value_t){ .kind = NUM, .u.num = x }; }
static value_t str(rng_t *r, size_t lo, size_t hi) {
    size_t len = rnd_range(r, lo, hi);
    return (value_t){ .kind = STR, .len = len, .u.str = text(r, len) };
}
static value_t arr(void) { return (value_t){ .kind = ARR }; }
static value_t obj(void) { return (value_t){ .kind = OBJ }; }

/* Room for one more element of `size` bytes in a vector of `cap`: doubled from 4 when full. */
static void *grow(void *p, size_t len, size_t *cap, size_t size) {
    if (len < *cap) return p;
    *cap = *cap ? *cap * 2 : 4;
    return check_alloc(realloc(p, *cap * size), *cap * size);
}
static void push(value_t *a, value_t v) {
    a->u.items = grow(a->u.items, a->len, &a->cap, sizeof(value_t));
    a->u.items[a->len++] = v;
}
static void put(value_t *o, const char *key, value_t v) {
    o->u.members = grow(o->u.members, o->len, &o->cap, sizeof(member_t));
    size_t n = strlen(key) + 1;
    member_t *m = &o->u.members[o->len++];
    m->key = memcpy(check_alloc(malloc(n), n), key, n);
    m->v = v;
}

static value_t record(rng_t *r, size_t id) {
    value_t rec = obj();
    put(&rec, "id", num((double)id));
    put(&rec, "name", str(r, 6, 24));
    put(&rec, "email", str(r, 12, 40));
    put(&rec, "active", num((double)(rnd(r) % 2)));
    value_t tags = arr();
    for (size_t i = rnd_range(r, 0, 8); i > 0; i--) push(&tags, str(r, 3, 12));
    put(&rec, "tags", tags);
    value_t scores = arr();
    for (size_t i = rnd_range(r, 0, 16); i > 0; i--) push(&scores, num((double)(rnd(r) % 1000) / 8));
    put(&rec, "scores", scores);
    value_t address = obj();
    put(&address, "street", str(r, 10, 40));
    put(&address, "city", str(r, 4, 16));
    put(&address, "zip", str(r, 5, 5));
    put(&address, "country", str(r, 2, 2));
    put(&rec, "address", address);
    put(&rec, "bio", str(r, 0, rnd(r) % 4 ? 120 : 2000));
    value_t history = arr();
    for (size_t i = rnd_range(r, 0, 10); i > 0; i--) {
        value_t event = obj();
        put(&event, "at", num((double)(rnd(r) % 100000)));
        put(&event, "event", str(r, 4, 16));
        put(&event, "amount", num((double)(rnd(r) % 100000) / 100));
        push(&history, event);
    }
    put(&rec, "history", history);
    return rec;
}

/* FNV-1a over the tree's kinds, keys, strings and numbers, in order. */
static uint64_t hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001B3ull;
    return h;
}
static uint64_t walk(uint64_t h, const value_t *v) {
    h = hash(h, &v->kind, 1);
    switch (v->kind) {
    case NUM: return hash(h, &v->u.num, sizeof v->u.num);
    case STR: return hash(h, v->u.str, v->len);
    case ARR:
        for (size_t i = 0; i < v->len; i++) h = walk(h, &v->u.items[i]);
        return h;
    case OBJ:
        for (size_t i = 0; i < v->len; i++) {
            h = hash(h, v->u.members[i].key, strlen(v->u.members[i].key));
            h = walk(h, &v->u.members[i].v);
        }
        return h;
    }
    return h;
}
static void drop(value_t *v) {
    switch (v->kind) {
    case NUM: break;
    case STR: free(v->u.str); break;
    case ARR:
        for (size_t i = 0; i < v->len; i++) drop(&v->u.items[i]);
        free(v->u.items);
        break;
    case OBJ:
        for (size_t i = 0; i < v->len; i++) {
            free(v->u.members[i].key);
            drop(&v->u.members[i].v);
        }
        free(v->u.members);
        break;
    }
}

int main(void) {
    char name[32];
    for (int p = 1; p <= PHASES; p++) {
        rng_t r = rng_seed((uint64_t)p);
        snprintf(name, sizeof name, "build-%d", p);
        phase(name);
        value_t doc = arr();
        for (size_t i = 0; i < RECORDS; i++) push(&doc, record(&r, i));
        snprintf(name, sizeof name, "walk-%d", p);
        phase(name);
        sum_add(walk(0xcbf29ce484222325ull, &doc));
        snprintf(name, sizeof name, "drop-%d", p);
        phase(name);
        drop(&doc);
    }
    idle("settled");
    finish();
    return 0;
}
