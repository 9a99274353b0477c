/* glibc functions that allocate inside libc, with the program freeing the results (or
 * libc freeing what it allocated), repeated so blocks get reused. */
#include "common.h"
#include <dirent.h>
#include <limits.h>
#include <locale.h>
#include <netdb.h>
#include <pwd.h>
#include <regex.h>
#include <unistd.h>

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(void) {
    for (int it = 0; it < 200; it++) {
        char *s = strdup("hello, allocator");
        CHECK(s && strcmp(s, "hello, allocator") == 0, "strdup");
        char *t = strndup(s, 5);
        CHECK(t && strcmp(t, "hello") == 0, "strndup gave %s", t ? t : "NULL");
        char *a = NULL;
        int len = asprintf(&a, "%s/%d/%0*d", t, it, 3000, 7);
        CHECK(len == 3008 + (it >= 10) + (it >= 100) && a && a[len - 1] == '7', "asprintf: %d", len);
        free(s); free(t); free(a);

        char *buf = NULL; size_t bsize = 0;
        FILE *ms = open_memstream(&buf, &bsize);
        CHECK(ms != NULL, "open_memstream");
        for (int i = 0; i < 1000; i++) fprintf(ms, "line %d\n", i);
        fclose(ms);
        CHECK(buf && bsize > 8000 && strncmp(buf + bsize - 9, "line 999\n", 9) == 0, "open_memstream content (%zu)", bsize);

        FILE *tf = tmpfile();
        CHECK(tf != NULL, "tmpfile");
        fwrite(buf, 1, bsize, tf);
        rewind(tf);
        char *line = NULL; size_t cap = 0; ssize_t n; int lines = 0;
        while ((n = getline(&line, &cap, tf)) > 0) lines++;
        CHECK(lines == 1000, "getline read %d lines", lines);
        free(line); fclose(tf); free(buf);

        regex_t re;
        CHECK(regcomp(&re, "^([a-z]+)-([0-9]{2,})(x|y)*$", REG_EXTENDED) == 0, "regcomp");
        regmatch_t m[4];
        CHECK(regexec(&re, "abc-12345xyxy", 4, m, 0) == 0 && m[2].rm_so == 4, "regexec");
        CHECK(regexec(&re, "abc-1", 4, m, 0) == REG_NOMATCH, "regexec matched a bad string");
        regfree(&re);

        FILE *f = fopen("/proc/self/status", "r");
        CHECK(f != NULL, "fopen");
        if (f) { char l[256]; CHECK(fgets(l, sizeof l, f) != NULL, "fgets"); fclose(f); }

        struct passwd *pw = getpwnam("root");
        CHECK(pw && pw->pw_uid == 0, "getpwnam(root)");

        if (it % 10 == 0) {
            struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
            int rc = getaddrinfo("localhost", "80", &hints, &res);
            CHECK(rc == 0 && res, "getaddrinfo(localhost): %s", gai_strerror(rc));
            if (res) freeaddrinfo(res);
        }

        struct dirent **names;
        int count = scandir("/etc", &names, NULL, alphasort);
        CHECK(count > 2, "scandir(/etc) returned %d", count);
        for (int i = 1; i < count; i++)
            CHECK(strcmp(names[i - 1]->d_name, names[i]->d_name) < 0, "scandir not sorted");
        for (int i = 0; i < count; i++) free(names[i]);
        if (count >= 0) free(names);

        char *rp = realpath("/proc/self/../self/.", NULL);
        CHECK(rp && rp[0] == '/', "realpath");
        free(rp);

        CHECK(setlocale(LC_ALL, it % 2 ? "C.UTF-8" : "C") != NULL, "setlocale");
        locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
        CHECK(loc != (locale_t)0, "newlocale(C.UTF-8)");
        if (loc) { locale_t d = duplocale(loc); freelocale(d); freelocale(loc); }
    }

    /* glibc's qsort uses a malloc'ed buffer for large arrays. */
    size_t n = 2000000;
    uint64_t *v = malloc(n * sizeof *v);
    CHECK(v != NULL, "malloc for qsort");
    for (size_t i = 0; i < n; i++) v[i] = rnd();
    qsort(v, n, sizeof *v, by_value);
    for (size_t i = 1; i < n; i++) if (v[i - 1] > v[i]) { CHECK(0, "qsort: not sorted at %zu", i); break; }
    free(v);
    return finish("glibc_internal");
}
