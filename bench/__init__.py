"""Scripts that print performance figures against the fakes; the tests never run them."""
