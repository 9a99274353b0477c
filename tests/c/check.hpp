// Failure reporting of the C++ test programs (tests/c/common.h's, for C++): CHECK prints the
// condition and a message, counts it, and stops the program after 20 failures.
#pragma once
#include <cstdio>
#include <cstdlib>

static int failures;
#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                    \
            std::fputc('\n', stderr);                                             \
            if (++failures >= 20) std::exit(1);                                   \
        }                                                                         \
    } while (0)
