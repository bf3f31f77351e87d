"""Retrieval-augmented generation: retrievers over document chunks and the fine-tuning vs RAG comparison."""
