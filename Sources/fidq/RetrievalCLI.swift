// RetrievalCLI: `fidq embed`, `fidq retrieve`, `fidq index-bm25`, `fidq evaluate-retrieval`: the retrieval job kinds as subcommands with FiD's flag names.

/// `fidq embed --model_path M --passages psgs.tsv --output_path emb/passages --shard_id 0 --num_shards 8`
enum EmbedCLI: KindCLI {
    static let kind = "embed"
    static let abstract = "Embed one shard of a DPR passages TSV with a retriever (FiD's generate_passage_embeddings.py)."
}

/// `fidq retrieve --model_path M --passages psgs.tsv --passages_embeddings 'emb/passages_*' --data q.json --output_path out.json`
enum RetrieveCLI: KindCLI {
    static let kind = "retrieve"
    static let abstract = "Retrieve the top n_docs passages per question, dense (flat, sq8, pq) or BM25, with recall@k (FiD's passage_retrieval.py)."
}

/// `fidq index-bm25 --passages psgs.tsv --output_path bm25.index`
enum IndexBM25CLI: KindCLI {
    static let kind = "index_bm25"
    static let abstract = "Build the BM25 index of a DPR passages TSV (Lucene BM25, k1 0.9, b 0.4) for `retrieve --method bm25`."
}

/// `fidq evaluate-retrieval --data retrieved.json` (`--sort_by_score` to count a scored file's passages by their scores)
enum EvaluateRetrievalCLI: KindCLI {
    static let kind = "evaluate_retrieval"
    static let abstract = "Answer recall@k of the passages a FiD data file holds, by DPR's has_answer (FiD's evaluate_retrieved_passages.py)."
}
