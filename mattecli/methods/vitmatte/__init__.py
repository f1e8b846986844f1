"""ViTMatte (``--method vitmatte``): a plain ViT (ViTDet) with a convolutional detail-capture decoder."""
