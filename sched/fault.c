/* The failure-injection hook of sched/ (fault.h): NULL unless a test sets it. */
#include "fault.h"

_Atomic(ws__fault_fn) ws__fault_hook;
