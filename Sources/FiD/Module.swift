// FiD: module scaffold; the first real source file replaces this one.
