"""Products, variants, barcodes, prices, channel listings and collections."""
