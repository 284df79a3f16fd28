#ifndef VOX_ALLOC_COUNTER_H
#define VOX_ALLOC_COUNTER_H
#include <stdint.h>

/// Allocation calls (malloc, calloc, realloc, memalign, posix_memalign,
/// aligned_alloc, valloc) made by the whole process since it started.
/// Linking this target replaces glibc's allocator entry points in the main
/// program with counting wrappers around glibc's own `__libc_*` functions.
uint64_t vox_alloc_count(void);
/// The same, made by the calling thread only (tests running beside others).
uint64_t vox_thread_alloc_count(void);
/// 1 when the wrappers are the process's allocator (they are once linked).
int vox_alloc_counter_active(void);
#endif

#ifndef VOX_CALLGRIND_H
#define VOX_CALLGRIND_H
/// Under `valgrind --tool=callgrind --collect-atstart=no`: toggles instruction collection
/// (around a measured pass), and dumps what was collected as one profile part named
/// `label`. No-ops outside valgrind, or when built without valgrind's headers.
void vox_callgrind_toggle_collect(void);
void vox_callgrind_dump(const char *label);
/// 1 when running under valgrind.
int vox_running_on_valgrind(void);
#endif
