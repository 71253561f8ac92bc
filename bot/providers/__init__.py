"""LLM providers: the adapter contract, stream decoders, adapters and the routing service."""
