// C++ allocation through the preloaded malloc: new/delete, arrays, over-aligned types,
// container churn, bad_alloc on an impossible size, and deletes on other threads.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "check.hpp"

struct alignas(64) Line { unsigned char b[64]; };
struct alignas(4096) Page { unsigned char b[4096]; };

static uint64_t state = 12345;
static uint64_t rnd() { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }

int main() {
    for (int i = 0; i < 10000; i++) {
        auto *x = new uint64_t(i);
        auto *a = new int[i % 500 + 1];
        for (int k = 0; k <= i % 500; k++) a[k] = k;
        CHECK(*x == (uint64_t)i && a[i % 500] == i % 500, "new/new[] lost data");
        delete x;
        delete[] a;
    }
    for (int i = 0; i < 2000; i++) {
        auto *l = new Line[i % 7 + 1];
        auto *p = new Page;
        CHECK((uintptr_t)l % 64 == 0, "new Line[] = %p is not 64-aligned", (void *)l);
        CHECK((uintptr_t)p % 4096 == 0, "new Page = %p is not 4096-aligned", (void *)p);
        p->b[4095] = 1;
        l[i % 7].b[63] = 2;
        delete p;
        delete[] l;
    }

    std::map<uint64_t, std::string> m;
    std::unordered_map<std::string, std::vector<int>> um;
    std::vector<std::string> v;
    for (int op = 0; op < 300000; op++) {
        uint64_t r = rnd(), key = r % 5000;
        std::string s(r % 200, char('a' + r % 26));
        switch (op % 4) {
        case 0: m[key] = s; break;
        case 1: m.erase(key); break;
        case 2: um[s].push_back(op); if (um.size() > 3000) um.erase(um.begin()); break;
        case 3: v.push_back(s); if (v.size() > 10000) v.erase(v.begin(), v.begin() + 5000); break;
        }
    }
    for (auto &kv : m) CHECK(kv.second.empty() || kv.second.find_first_not_of(kv.second[0]) == std::string::npos, "map string corrupted");
    for (auto &s : v) CHECK(s.empty() || s.find_first_not_of(s[0]) == std::string::npos, "vector string corrupted");

    bool caught = false;
    try {
        volatile size_t huge = (size_t)1 << 62;
        char *p = new char[huge];
        p[0] = 1;
        delete[] p;
    } catch (const std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught, "new char[1 << 62] did not throw std::bad_alloc");
    auto *nt = new (std::nothrow) char[(size_t)1 << 62];
    CHECK(nt == nullptr, "nothrow new of an impossible size returned %p", (void *)nt);

    // Blocks made on one thread, deleted on another.
    std::mutex lock;
    std::vector<std::string *> handoff;
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&, t] {
            for (int i = 0; i < 50000; i++) {
                auto *s = new std::string(size_t(16 + (i * 7 + t) % 300), char('A' + t));
                std::string *theirs = nullptr;
                {
                    std::lock_guard<std::mutex> g(lock);
                    handoff.push_back(s);
                    if (handoff.size() > 64) { theirs = handoff.front(); handoff.erase(handoff.begin()); }
                }
                if (theirs) {
                    CHECK(!theirs->empty() && theirs->find_first_not_of((*theirs)[0]) == std::string::npos, "string corrupted");
                    delete theirs;
                }
            }
        });
    for (auto &t : ts) t.join();
    for (auto *s : handoff) delete s;

    if (failures) { std::fprintf(stderr, "cxx: %d checks failed\n", failures); return 1; }
    std::printf("cxx: all checks passed\n");
    return 0;
}
