// The shape legend every tensor comment in fidq uses.
//
// FiD sizes:   B questions, P passages per question, L passage tokens, T target tokens.
// Model sizes: D model width, H heads, Dh head width, F feed-forward width, V vocab.
// Index sizes: N indexed passages, E embedding width, K top-k.
//
// A comment such as `// (B, P·L, D)` gives a tensor's shape, outermost axis first; storage is
// always row-major and contiguous, so element (i, j) of an (M, N) tensor sits at `i*N + j`.
