// Counting allocator entry points. glibc lets the main program replace malloc and
// friends ("Replacing malloc" in its manual); these forward to glibc's own
// implementation, so memory from either side may be freed by the other.
#include "CVoxAllocCounter.h"
#include <errno.h>
#include <stddef.h>
#include <stdatomic.h>

// Built out under a sanitizer (scripts/sanitize): ASan and TSan replace malloc themselves,
// and wrappers forwarding to glibc's own would hide every heap allocation from them. Then
// nothing is counted and vox_alloc_counter_active() says so. VOX_NO_ALLOC_COUNTER does the
// same on request; the normal build defines neither.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define VOX_NO_ALLOC_COUNTER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VOX_NO_ALLOC_COUNTER 1
#endif

#ifdef VOX_NO_ALLOC_COUNTER
uint64_t vox_thread_alloc_count(void) { return 0; }
uint64_t vox_alloc_count(void) { return 0; }
int vox_alloc_counter_active(void) { return 0; }
#else

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Atomic uint64_t vox_allocs;
static _Atomic int vox_seen;
// Initial-exec TLS in the main program: reading it never allocates (no recursion here).
static _Thread_local uint64_t vox_thread_allocs __attribute__((tls_model("initial-exec")));

static inline void vox_count(void) {
    vox_thread_allocs++;
    atomic_fetch_add_explicit(&vox_allocs, 1, memory_order_relaxed);
    atomic_store_explicit(&vox_seen, 1, memory_order_relaxed);
}

void *malloc(size_t n) { vox_count(); return __libc_malloc(n); }
void *calloc(size_t n, size_t s) { vox_count(); return __libc_calloc(n, s); }
void *realloc(void *p, size_t n) { vox_count(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { vox_count(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { vox_count(); return __libc_memalign(a, n); }
void *valloc(size_t n) { vox_count(); return __libc_memalign(4096, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    if (a < sizeof(void *) || (a & (a - 1)) != 0) return EINVAL;
    vox_count();
    void *p = __libc_memalign(a, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

uint64_t vox_thread_alloc_count(void) { return vox_thread_allocs; }

uint64_t vox_alloc_count(void) { return atomic_load_explicit(&vox_allocs, memory_order_relaxed); }

int vox_alloc_counter_active(void) {
    // Prove the wrappers are live: an allocation made now must move the counter.
    uint64_t before = vox_alloc_count();
    void *volatile p = malloc(16);
    free(p);
    return vox_alloc_count() != before && atomic_load_explicit(&vox_seen, memory_order_relaxed);
}
#endif
