// libarchive's read and write interfaces (Debian libarchive-dev).
#include <archive.h>
#include <archive_entry.h>
