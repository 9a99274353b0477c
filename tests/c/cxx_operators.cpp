// C++ operator new and delete, every replaceable form, under the preloaded allocator: each
// of the 20 is exported by the object that defines hakmem_stats (when it does: hakmem) and
// is libstdc++'s name too; the allocations count in hakmem_stats; every form allocates
// and frees (sizes 0 to 1 MiB, alignments 1 to 2 MiB, sized and aligned deletes); and the
// failure paths: std::bad_alloc thrown and caught, the new-handler called until it removes
// itself, a handler's own exception let through, a handler that makes room making the
// retry succeed (an address-space limit it lifts), nothrow forms returning null.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <new>
#include <sys/resource.h>
#include <unistd.h>

#include "../../include/hakmem.h"

#include "check.hpp"

// Keeps the compiler from eliding allocations (new-expressions may be removed in pairs).
static void *volatile sink;

static const char *const OPERATORS[] = {
    "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
    "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
    "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
    "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
    "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t", "_ZdlPvmSt11align_val_t",
    "_ZdaPvmSt11align_val_t", "_ZdlPvSt11align_val_tRKSt9nothrow_t",
    "_ZdaPvSt11align_val_tRKSt9nothrow_t",
};

static const char *object_of(void *addr) {
    Dl_info info;
    if (!addr || !dladdr(addr, &info) || !info.dli_fname) return "(none)";
    return info.dli_fname;
}

// Every operator resolves to the allocator's object (the one defining hakmem_stats), and
// is an operator libstdc++ defines (so the mangled names are the real ones).
static void check_exports(const char *ours) {
    void *libstdcxx = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD);
    CHECK(libstdcxx != nullptr, "libstdc++.so.6 is not loaded: %s", dlerror());
    for (const char *name : OPERATORS) {
        void *f = dlsym(RTLD_DEFAULT, name);
        CHECK(f && std::strcmp(object_of(f), ours) == 0, "%s comes from %s, not %s", name,
              object_of(f), ours);
        if (libstdcxx) CHECK(dlsym(libstdcxx, name) != nullptr, "libstdc++ has no %s", name);
    }
    // What this program's own calls bind to.
    void *(*plain)(std::size_t) = ::operator new;
    void (*del)(void *, std::size_t) noexcept = ::operator delete;
    CHECK(std::strcmp(object_of((void *)plain), ours) == 0, "operator new is %s's",
          object_of((void *)plain));
    CHECK(std::strcmp(object_of((void *)del), ours) == 0, "sized operator delete is %s's",
          object_of((void *)del));
}

static void fill(void *p, std::size_t n, unsigned char v) {
    if (n) {
        static_cast<unsigned char *>(p)[0] = v;
        static_cast<unsigned char *>(p)[n - 1] = v;
        std::memset(p, v, n < 4096 ? n : 4096);
    }
}

static void every_form_allocates() {
    const std::size_t sizes[] = {0, 1, 24, 100, 1000, 5000, 70000, 300000, 1 << 20};
    for (std::size_t n : sizes) {
        void *a = ::operator new(n), *b = ::operator new[](n);
        void *c = ::operator new(n, std::nothrow), *d = ::operator new[](n, std::nothrow);
        CHECK(a && b && c && d, "a new of %zu bytes returned null", n);
        CHECK(a != b && a != c && a != d && b != c && b != d && c != d,
              "new of %zu bytes returned a block twice", n);
        fill(a, n, 1), fill(b, n, 2), fill(c, n, 3), fill(d, n, 4);
        ::operator delete(a, n);
        ::operator delete[](b, n);
        ::operator delete(c, std::nothrow);
        ::operator delete[](d, std::nothrow);
        a = ::operator new(n), b = ::operator new[](n);
        ::operator delete(a);
        ::operator delete[](b);
        for (std::size_t align = 1; align <= (std::size_t)2 << 20; align *= 4) {
            std::align_val_t al{align};
            void *p[4] = {::operator new(n, al), ::operator new[](n, al),
                          ::operator new(n, al, std::nothrow), ::operator new[](n, al, std::nothrow)};
            for (void *q : p) {
                CHECK(q && (uintptr_t)q % align == 0, "aligned new(%zu, %zu) = %p", n, align, q);
                fill(q, n, 5);
            }
            ::operator delete(p[0], n, al);
            ::operator delete[](p[1], n, al);
            ::operator delete(p[2], al, std::nothrow);
            ::operator delete[](p[3], al, std::nothrow);
            void *e = ::operator new(n, al), *f = ::operator new[](n, al);
            ::operator delete(e, al);
            ::operator delete[](f, al);
        }
    }
    // new of 0 bytes: a unique block each time.
    void *z1 = ::operator new(0), *z2 = ::operator new(0);
    CHECK(z1 && z2 && z1 != z2, "new(0) twice = %p, %p", z1, z2);
    ::operator delete(z1);
    ::operator delete(z2);
    // And through expressions, with the compiler's choice of forms.
    struct alignas(256) Wide { char b[256]; };
    for (int i = 0; i < 1000; i++) {
        sink = new Wide;
        CHECK((uintptr_t)sink % 256 == 0, "new Wide = %p", sink);
        delete static_cast<Wide *>(sink);
        sink = new (std::nothrow) long[i + 1];
        delete[] static_cast<long *>(sink);
    }
}

static void counted_by_hakmem(int (*stats)(hakmem_stats_t *)) {
    hakmem_stats_t before, after;
    stats(&before);
    for (int i = 0; i < 1000; i++) {
        sink = new int(i);
        delete static_cast<int *>(sink);
        sink = ::operator new(48, std::nothrow);
        ::operator delete(sink, 48);
    }
    stats(&after);
    CHECK(after.allocs - before.allocs >= 2000, "2000 news counted as %llu allocations",
          (unsigned long long)(after.allocs - before.allocs));
    CHECK(after.frees - before.frees >= 2000, "2000 deletes counted as %llu frees",
          (unsigned long long)(after.frees - before.frees));
}

static const std::size_t HUGE_SIZE = SIZE_MAX / 2;
static int handler_calls, handler_limit;
static void counting_handler() {
    if (++handler_calls >= handler_limit) std::set_new_handler(nullptr);
}
struct HandlerGaveUp {};
static void throwing_handler() {
    handler_calls++;
    throw HandlerGaveUp{};
}
static void bad_alloc_handler() {
    handler_calls++;
    throw std::bad_alloc();
}

// Each throwing form: no handler → bad_alloc; a handler that removes itself on its 3rd
// call → 3 calls, then bad_alloc; a handler that throws its own exception → that one.
template <typename New> static void throwing_form(const char *name, New attempt) {
    for (int handler = 0; handler < 3; handler++) {
        handler_calls = 0;
        handler_limit = 3;
        std::set_new_handler(handler == 0 ? nullptr
                             : handler == 1 ? counting_handler
                                            : throwing_handler);
        int caught = 0;
        try {
            sink = attempt();
            std::fprintf(stderr, "%s of %zu bytes returned %p\n", name, HUGE_SIZE, sink);
        } catch (const std::bad_alloc &) {
            caught = 1;
        } catch (const HandlerGaveUp &) {
            caught = 2;
        }
        std::set_new_handler(nullptr);
        int want_calls = handler == 0 ? 0 : handler == 1 ? 3 : 1;
        int want_caught = handler == 2 ? 2 : 1;
        CHECK(caught == want_caught, "%s, handler %d: caught %d, want %d", name, handler, caught,
              want_caught);
        CHECK(handler_calls == want_calls, "%s, handler %d: %d handler calls, want %d", name,
              handler, handler_calls, want_calls);
    }
}

// Each nothrow form: null without a handler, with one that removes itself (2 calls) and with
// one that throws bad_alloc (1 call).
template <typename New> static void nothrow_form(const char *name, New attempt) {
    void (*handlers[])() = {nullptr, counting_handler, bad_alloc_handler};
    const int want_calls[] = {0, 2, 1};
    for (int h = 0; h < 3; h++) {
        handler_calls = 0;
        handler_limit = 2;
        std::set_new_handler(handlers[h]);
        void *p = attempt();
        std::set_new_handler(nullptr);
        CHECK(p == nullptr, "%s, handler %d: returned %p", name, h, p);
        CHECK(handler_calls == want_calls[h], "%s, handler %d: %d handler calls, want %d", name,
              h, handler_calls, want_calls[h]);
    }
}

// A handler that makes room: the address space is limited so that a 256 MiB block cannot
// be mapped; the handler lifts the limit and the retry must succeed.
static struct rlimit saved_limit;
static void lifting_handler() {
    handler_calls++;
    setrlimit(RLIMIT_AS, &saved_limit);
}
template <typename New, typename Delete>
static void retry_succeeds(const char *name, New attempt, Delete release) {
    const std::size_t size = (std::size_t)256 << 20;
    long pages = 0;
    FILE *statm = std::fopen("/proc/self/statm", "r");
    if (!statm || std::fscanf(statm, "%ld", &pages) != 1) {
        CHECK(false, "cannot read /proc/self/statm");
        if (statm) std::fclose(statm);
        return;
    }
    std::fclose(statm);
    getrlimit(RLIMIT_AS, &saved_limit);
    struct rlimit tight = saved_limit;
    tight.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)64 << 20);
    handler_calls = 0;
    std::set_new_handler(lifting_handler);
    CHECK(setrlimit(RLIMIT_AS, &tight) == 0, "setrlimit: %s", std::strerror(errno));
    void *p = nullptr;
    try {
        p = attempt(size);
    } catch (const std::bad_alloc &) {
        CHECK(false, "%s: bad_alloc although the handler made room", name);
    }
    setrlimit(RLIMIT_AS, &saved_limit);
    std::set_new_handler(nullptr);
    CHECK(p != nullptr, "%s: null although the handler made room", name);
    CHECK(handler_calls == 1, "%s: %d handler calls, want 1", name, handler_calls);
    if (p) {
        fill(p, size, 7);
        release(p);
    }
}

int main() {
    auto stats = (int (*)(hakmem_stats_t *))dlsym(RTLD_DEFAULT, "hakmem_stats");
    if (stats) {
        const char *ours = object_of((void *)stats);
        check_exports(ours);
        counted_by_hakmem(stats);
    } else {
        std::printf("cxx_operators: no hakmem_stats: not checking whose operators these are\n");
    }
    every_form_allocates();

    volatile std::size_t huge = HUGE_SIZE;
    std::align_val_t al{64};
    throwing_form("new", [&] { return ::operator new(huge); });
    throwing_form("new[]", [&] { return ::operator new[](huge); });
    throwing_form("aligned new", [&] { return ::operator new(huge, al); });
    throwing_form("aligned new[]", [&] { return ::operator new[](huge, al); });
    throwing_form("new char[]", [&] { return (void *)new char[huge]; });
    nothrow_form("nothrow new", [&] { return ::operator new(huge, std::nothrow); });
    nothrow_form("nothrow new[]", [&] { return ::operator new[](huge, std::nothrow); });
    nothrow_form("nothrow aligned new", [&] { return ::operator new(huge, al, std::nothrow); });
    nothrow_form("nothrow aligned new[]",
                 [&] { return ::operator new[](huge, al, std::nothrow); });
    retry_succeeds("new", [](std::size_t n) { return ::operator new(n); },
                   [](void *p) { ::operator delete(p); });
    retry_succeeds("aligned new[]", [&](std::size_t n) { return ::operator new[](n, al); },
                   [&](void *p) { ::operator delete[](p, al); });
    retry_succeeds("nothrow new", [](std::size_t n) { return ::operator new(n, std::nothrow); },
                   [](void *p) { ::operator delete(p, std::nothrow); });

    if (failures) {
        std::fprintf(stderr, "cxx_operators: %d checks failed\n", failures);
        return 1;
    }
    std::printf("cxx_operators: all checks passed\n");
    return 0;
}
