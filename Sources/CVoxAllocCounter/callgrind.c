// Callgrind client requests for `voxedge bench micro --callgrind`: instruction counts are
// the one stable way to compare code on these noisy VMs (FINDINGS). The requests are
// inline assembly macros, hence C.
#include "CVoxAllocCounter.h"
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
void vox_callgrind_toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
void vox_callgrind_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
int vox_running_on_valgrind(void) { return RUNNING_ON_VALGRIND ? 1 : 0; }
#else
void vox_callgrind_toggle_collect(void) {}
void vox_callgrind_dump(const char *label) { (void)label; }
int vox_running_on_valgrind(void) { return 0; }
#endif
