// PGRELAY_API marks what libpgrelay exports. The library is built with hidden
// visibility, so everything not marked here (the relay's internals, Boost,
// libpqxx inlines) stays out of its dynamic symbol table and may change freely.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define PGRELAY_API __attribute__((visibility("default")))
#else
#define PGRELAY_API
#endif
