// Tokenizers: T5's SentencePiece unigram and BERT's WordPiece, id for id with Hugging Face.
