/* fork in a loop while 3 threads hammer malloc; every child must be able to allocate
   heavily and exit 0 within a time bound (a deadlocked child is killed by alarm).
   Also fork+exec, posix_spawn and popen. */
#include "common.h"
#include <spawn.h>
#include <sys/wait.h>
extern char **environ;
static volatile int stop;
static void *hammer(void *arg) {
    uint64_t s = (uintptr_t)arg * 7919 + 1;
    void *keep[64] = {0};
    while (!stop) {
        int i = rng(&s) % 64;
        free(keep[i]);
        size_t n = rng(&s) % 4096 + 1;
        if (rng(&s) % 100 == 0) n = 300000;
        keep[i] = malloc(n);
        memset(keep[i], i, n < 64 ? n : 64);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return 0;
}
static void child_work(void) {
    alarm(10);
    uint64_t s = 42;
    void *p[1000];
    for (int r = 0; r < 50; r++) {
        for (int i = 0; i < 1000; i++) { size_t n = rng(&s) % 2000 + 1; p[i] = malloc(n); fill(p[i], n, i); }
        for (int i = 0; i < 1000; i++) free(p[i]);
    }
    pthread_t t;
    if (pthread_create(&t, 0, (void *(*)(void *))malloc, (void *)100) || pthread_join(t, 0)) _exit(5);
    _exit(0);
}
int main(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, hammer, (void *)(uintptr_t)(i + 1));
    for (int k = 0; k < 150; k++) {
        pid_t c = fork();
        if (c < 0) FAIL("fork failed");
        if (c == 0) child_work();
        int st;
        waitpid(c, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("child %d ended badly (status %d)", k, st);
    }
    for (int k = 0; k < 20; k++) {
        pid_t c = fork();
        if (c == 0) { execl("/bin/true", "true", (char *)0); _exit(9); }
        int st;
        waitpid(c, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) FAIL("fork+exec failed");
        char *argv[] = {"echo", "spawned", 0};
        pid_t sp;
        if (posix_spawn(&sp, "/bin/echo", 0, 0, argv, environ)) FAIL("posix_spawn failed");
        waitpid(sp, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) FAIL("posix_spawn child failed");
        FILE *f = popen("echo popen-ok", "r");
        char line[64] = {0};
        if (!f || !fgets(line, sizeof line, f) || strcmp(line, "popen-ok\n")) FAIL("popen failed");
        pclose(f);
    }
    stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    puts("fork_under_load ok");
    return 0;
}
