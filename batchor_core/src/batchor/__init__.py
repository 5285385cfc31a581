"""batchor: durable, typed runs of large LLM jobs through the OpenAI Batch API."""
