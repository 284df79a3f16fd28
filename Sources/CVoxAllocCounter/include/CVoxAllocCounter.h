#ifndef VOX_ALLOC_COUNTER_H
#define VOX_ALLOC_COUNTER_H
#include <stdint.h>

/// Allocation calls (malloc, calloc, realloc, memalign, posix_memalign,
/// aligned_alloc, valloc) made by the whole process since it started.
/// Linking this target replaces glibc's allocator entry points in the main
/// program with counting wrappers around glibc's own `__libc_*` functions.
uint64_t vox_alloc_count(void);
/// 1 when the wrappers are the process's allocator (they are once linked).
int vox_alloc_counter_active(void);
#endif
