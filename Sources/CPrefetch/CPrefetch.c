// CPrefetch is header-only (static inline); SwiftPM wants a C target to have a source file.
#include "CPrefetch.h"
