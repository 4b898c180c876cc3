// FiDTests: scaffold; the first real test file replaces this one.
