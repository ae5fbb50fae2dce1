"""The data wing: corpora, your own files, tokenizers, the encoded cache and the batches."""
