"""Face engines: detect faces in a photo and turn each into an embedding that can be matched."""
